"""The server's side of generation: admission, context checks, and samples that stop when
their client goes away.

Every sample is generated through `Backend.stream`, token by token, even for a request that
wants one JSON answer at the end: between two deltas the server can look at the socket, and
a client that hung up (an editor that moved the cursor on) costs at most one more token, not
a whole completion. Greedy samples of the same prompt are all the same, so the n of a greedy
request are generated once.

At most `max_concurrent` samples hold a generation slot at a time; requests beyond that
wait in line (up to `max_queue` of them, else `Overloaded`), and a waiting request whose
client leaves gives up its place (`ClientGone`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from codekiln.errors import UserError
from codekiln.generate.params import SamplingParams, sample_seed
from codekiln.serve.api import ApiError, GenerationRequest
from codekiln.serve.config import ServeConfig
from codekiln.serve.metrics import Metrics

SLOT_POLL_SECONDS = 0.05


class Overloaded(Exception):
    """Every slot is busy and the line is full: answer 503."""


class ClientGone(Exception):
    """The client closed the connection; nothing more can be sent."""


@dataclass(frozen=True)
class Sample:
    """One finished sample; `finish_reason` is the backend's ("stop", "eos" or "length")."""

    text: str
    finish_reason: str
    tokens: int
    prompt_tokens: int


class Engine:
    """A backend shared by every request thread, behind a bounded set of slots."""

    def __init__(self, backend: Any, config: ServeConfig, metrics: Metrics) -> None:
        self.backend = backend
        self.config = config
        self.metrics = metrics
        self._slots = threading.BoundedSemaphore(config.max_concurrent)
        self._lock = threading.Lock()
        self._waiting = 0
        self._closed = False

    @property
    def context_length(self) -> int:
        return int(getattr(self.backend, "context_length", 0) or 0)

    def prompt_tokens(self, prompt: str, suffix: str | None = None) -> int | None:
        """Tokens the prompt (or FIM layout) takes, where the backend can count them."""
        prompt_ids = getattr(self.backend, "prompt_ids", None)
        if prompt_ids is None:
            return None
        return len(prompt_ids(prompt, suffix))

    def check(self, request: GenerationRequest) -> None:
        """Refuse, before any work, what the model cannot do (ApiError 400)."""
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
            return
        if request.params.max_new_tokens > context:
            raise ApiError(
                400,
                f"this model's context is {context} tokens; "
                f"{request.params.max_new_tokens} new tokens cannot fit",
                "max_tokens",
                "context_length_exceeded",
            )
        for prompt in request.prompts:
            tokens = self.prompt_tokens(prompt, request.suffix)
            if tokens is not None and tokens >= context:
                raise ApiError(
                    400,
                    f"this model's context is {context} tokens, but the prompt has {tokens}: "
                    "shorten the prompt to leave room for the completion",
                    "prompt",
                    "context_length_exceeded",
                )

    def close(self, timeout: float = 30.0) -> bool:
        """Start no new generation and wait (up to `timeout`) for the running ones to end,
        so no request thread is inside the model when the process exits. True if they did."""
        self._closed = True
        deadline = time.monotonic() + timeout
        taken = 0
        for _ in range(self.config.max_concurrent):
            if self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                taken += 1
        for _ in range(taken):
            self._slots.release()
        return taken == self.config.max_concurrent

    @contextmanager
    def slot(self, gone: Callable[[], bool]) -> Iterator[None]:
        """Hold a generation slot for the block; wait in line for one if need be."""
        if not self._slots.acquire(blocking=False):
            with self._lock:
                if self._waiting >= self.config.max_queue:
                    self.metrics.add("generations_rejected")
                    raise Overloaded
                self._waiting += 1
            try:
                with self.metrics.gauge("generations_queued"):
                    while not self._slots.acquire(timeout=SLOT_POLL_SECONDS):
                        if gone():
                            raise ClientGone
            finally:
                with self._lock:
                    self._waiting -= 1
        if self._closed:  # shutting down: no new generation starts
            self._slots.release()
            raise Overloaded
        try:
            with self.metrics.gauge("generations_running"):
                yield
        finally:
            self._slots.release()

    def samples(
        self,
        request: GenerationRequest,
        on_delta: Callable[[int, str], None],
        gone: Callable[[], bool],
    ) -> list[Sample]:
        """Every choice of the request, in OpenAI's order (prompt by prompt, n each).

        `on_delta(choice, text)` receives the text as it is generated; raising ClientGone
        from it (a failed write), or `gone()` turning true, stops generation and re-raises.
        """
        samples: list[Sample] = []
        for index, prompt in enumerate(request.prompts):
            first: Sample | None = None
            for draw in range(request.n):
                choice = index * request.n + draw
                if first is not None and request.params.is_greedy:
                    on_delta(choice, first.text)  # the same greedy text again
                    samples.append(first)
                    continue
                params = _choice_params(request.params, index, draw)
                sample = self.sample(prompt, request.suffix, params, gone, choice, on_delta)
                first = first or sample
                samples.append(sample)
        return samples

    def sample(
        self,
        prompt: str,
        suffix: str | None,
        params: SamplingParams,
        gone: Callable[[], bool],
        choice: int = 0,
        on_delta: Callable[[int, str], None] | None = None,
    ) -> Sample:
        """One sample through the backend's stream, stopped between tokens if the client
        leaves (ClientGone)."""
        with self.slot(gone):
            try:
                stream = self.backend.stream(prompt, params, suffix)
            except UserError as exc:
                raise ApiError(400, str(exc), "prompt") from None
            parts: list[str] = []
            try:
                for delta in stream:
                    parts.append(delta)
                    if on_delta is not None:
                        on_delta(choice, delta)
                    if gone():
                        raise ClientGone
            except ClientGone:
                self.metrics.add("generations_cancelled")
                raise
            finally:
                stream.close()
        completion = stream.completion
        assert completion is not None, "a finished stream holds its completion"
        self.metrics.add("generated_tokens", completion.tokens)
        self.metrics.add("prompt_tokens", completion.prompt_tokens)
        return Sample(
            "".join(parts), completion.finish_reason, completion.tokens, completion.prompt_tokens
        )


def _choice_params(params: SamplingParams, prompt: int, draw: int) -> SamplingParams:
    """The first choice keeps the request's seed, so a one-sample request draws what
    `backend.complete([prompt], params)` draws; the others get seeds of their own."""
    if prompt == 0 and draw == 0:
        return params
    return replace(params, seed=sample_seed(params.seed, prompt, draw))
