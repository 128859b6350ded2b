"""The server's side of generation: admission, a first-come-first-served queue, and choices
delivered as events that stop when their client goes away.

A route turns its body into a `GenerationRequest`, `Scheduler.prepare` refuses what the model
cannot do (before any work), and `Scheduler.submit` queues it and returns a `Generation` at
once: an event stream of `Delta(choice, text)` and `Done(choice, sample)` the route reads
(`async for event in generation.events()`, or `iter_events()` from a thread) and cancels
(`generation.cancel()`) when its client leaves. A full queue raises `Overloaded`.

Two ways to run the choices, picked from the backend:
- a backend with `continuous_batching` (codekiln's own decoding) gets one running decode batch
  that sequences join and leave at token boundaries (`codekiln.serve.batching`);
- any other backend (transformers, an HTTP endpoint, CTranslate2) gets `max_batch` worker
  threads, each streaming one choice at a time through `Backend.stream`, taken from one
  FIFO queue.

Either way a cancelled choice stops within one token, greedy choices of one prompt are
generated once (they are all the same), and the metrics follow the queue, the batch, time
to first token and tokens generated.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from codekiln.errors import UserError
from codekiln.serve.api import ApiError, GenerationRequest
from codekiln.serve.config import ServeConfig
from codekiln.serve.generation import (
    Generation,
    Overloaded,
    Sample,
    choice_params,
    fitted_prompt_ids,
)
from codekiln.serve.metrics import Metrics

if TYPE_CHECKING:
    from codekiln.serve.batching import BatchRunner


class Scheduler:
    """A backend shared by every request (see the module docstring)."""

    def __init__(self, backend: Any, config: ServeConfig, metrics: Metrics) -> None:
        self.backend = backend
        self.config = config
        self.metrics = metrics
        self._runner: BatchRunner | ThreadRunner
        if getattr(backend, "continuous_batching", False):
            from codekiln.serve.batching import BatchRunner  # torch: for codekiln's backend only

            self._runner = BatchRunner(backend, config, metrics)
        else:
            self._runner = ThreadRunner(self)

    @property
    def context_length(self) -> int:
        return int(getattr(self.backend, "context_length", 0) or 0)

    def prompt_tokens(self, prompt: str, suffix: str | None = None) -> int | None:
        """Tokens the prompt (or FIM layout) takes, where the backend can count them."""
        prompt_ids = getattr(self.backend, "prompt_ids", None)
        if prompt_ids is None:
            return None
        return len(prompt_ids(prompt, suffix))

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        """Refuse, before any work, what the model cannot do (ApiError 400); with
        `truncate` off, also a prompt that does not fit the context."""
        if request.suffix is not None and not self.backend.supports_fim:
            raise ApiError(
                400,
                f"model {self.backend.name} cannot fill in the middle (its tokenizer has no "
                "FIM tokens): send no suffix",
                "suffix",
                "fim_not_supported",
            )
        context = self.context_length
        if not context:
            return request
        if request.params.max_new_tokens >= context:
            raise ApiError(
                400,
                f"this model's context is {context} tokens; "
                f"{request.params.max_new_tokens} new tokens leave no room for a prompt",
                "max_tokens",
                "context_length_exceeded",
            )
        if self.config.truncate:
            return request  # the runner trims the prompt's tokens to fit
        for prompt in request.prompts:
            tokens = self.prompt_tokens(prompt, request.suffix)
            if tokens is not None and request.truncate is not None:
                tokens = min(tokens, request.truncate)
            limit = context - request.params.max_new_tokens
            if tokens is not None and tokens > limit:
                raise ApiError(
                    400,
                    f"this model's context is {context} tokens: a prompt of {tokens} tokens "
                    f"leaves no room for {request.params.max_new_tokens} new tokens; shorten "
                    "it, or ask for fewer",
                    "prompt",
                    "context_length_exceeded",
                )
        return request

    def submit(
        self, request: GenerationRequest, loop: asyncio.AbstractEventLoop | None = None
    ) -> Generation:
        """Queue the request (Overloaded when the queue is full); never blocks."""
        generation = Generation(request, loop)
        self._runner.submit(generation)
        return generation

    def close(self, timeout: float = 30.0) -> bool:
        """Start no new generation and wait (up to `timeout`) for the running ones to end.
        True if they did."""
        return self._runner.close(timeout)


class ThreadRunner:
    """`max_batch` worker threads over one FIFO queue of choices, for backends that decode
    one sequence per call (see the module docstring)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.backend = scheduler.backend
        self.config = scheduler.config
        self.metrics = scheduler.metrics
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0  # requests none of whose choices has started
        self._running = 0
        self._closed = False
        self._workers = [
            threading.Thread(target=self._work, name=f"codekiln-gen-{i}", daemon=True)
            for i in range(self.config.max_batch)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, generation: Generation) -> None:
        with self._lock:
            if self._closed or self._waiting >= self.config.max_queue + self._idle():
                self.metrics.add("generations_rejected")
                raise Overloaded
            self._waiting += 1
            self.metrics.set("queue_length", self._waiting)
        request = generation.request
        started = threading.Event()  # the first choice of the request has a worker
        # Greedy choices of one prompt are all the same: one stream serves them all.
        draws = 1 if request.params.is_greedy else request.n
        for index, prompt in enumerate(request.prompts):
            for draw in range(draws):
                self._queue.put((generation, index, draw, prompt, started))

    def _idle(self) -> int:
        return self.config.max_batch - self._running

    def close(self, timeout: float) -> bool:
        with self._lock:
            self._closed = True
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        return not any(worker.is_alive() for worker in self._workers)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            generation, index, draw, prompt, started = item
            with self._lock:
                if not started.is_set():
                    started.set()
                    self._waiting -= 1
                    self.metrics.set("queue_length", self._waiting)
                self._running += 1
                self.metrics.set("batch_occupancy", self._running)
            try:
                self._choice(generation, index, draw, prompt)
            except ApiError as error:
                generation.fail(error)
            except Exception as exc:  # a backend failure ends this request, not the worker
                generation.fail(ApiError(500, f"generation failed: {exc}", kind="server_error"))
            finally:
                with self._lock:
                    self._running -= 1
                    self.metrics.set("batch_occupancy", self._running)

    def _choice(self, generation: Generation, index: int, draw: int, prompt: str) -> None:
        request = generation.request
        choice = index * request.n + draw
        choices = range(choice, choice + request.n) if request.params.is_greedy else [choice]
        if generation.cancelled or generation.finished:
            if not generation.finished:
                generation.fail(ApiError(499, "the client went away"))
            return
        params = choice_params(request.params, index, draw)
        try:
            ids = fitted_prompt_ids(self.backend, self.config, request, prompt)
            if ids is None:
                stream = self.backend.stream(prompt, params, request.suffix)
            else:
                stream = self.backend.stream_ids(ids, params)
        except UserError as exc:
            raise ApiError(400, str(exc), "prompt") from None
        try:
            for delta in stream:
                for each in choices:
                    generation.emit_delta(each, delta)
                if generation.cancelled:
                    self.metrics.add("generations_cancelled")
                    generation.fail(ApiError(499, "the client went away"))
                    return
        finally:
            stream.close()
        completion = stream.completion
        assert completion is not None, "a finished stream holds its completion"
        if generation.first_token is not None and choice == 0:
            waited = generation.first_token - generation.submitted
            self.metrics.observe("time_to_first_token_seconds", waited)
        self.metrics.add("generated_tokens", completion.tokens)
        self.metrics.add("prompt_tokens", completion.prompt_tokens)
        sample = Sample(
            completion.text, completion.finish_reason, completion.tokens, completion.prompt_tokens
        )
        for each in choices:
            generation.emit_done(each, sample)
