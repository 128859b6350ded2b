"""One request's generation as the routes see it: choices delivered as events (`Delta`,
`Done`) that the scheduler's runners emit and a route reads, and cancels when its client
goes away; and what every runner shares to start a choice (its prompt ids, its seed)."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

from codekiln.generate.params import SamplingParams, sample_seed
from codekiln.serve.api import ApiError, GenerationRequest
from codekiln.serve.config import ServeConfig


class Overloaded(Exception):
    """The queue is full: answer 429 (TGI) or 503 (OpenAI), with Retry-After."""


class ClientGone(Exception):
    """The client closed the connection; nothing more can be sent."""


@dataclass(frozen=True)
class Sample:
    """One finished choice; `finish_reason` is the backend's ("stop", "eos" or "length")."""

    text: str
    finish_reason: str
    tokens: int
    prompt_tokens: int


@dataclass(frozen=True)
class Delta:
    """More text of one choice."""

    choice: int
    text: str


@dataclass(frozen=True)
class Done:
    """One choice finished; every Delta of it came before."""

    choice: int
    sample: Sample


_END = object()  # the last item of a generation's event queue


class Generation:
    """One request's choices as they are generated (see the module docstring).

    The scheduler's threads `emit` events; `events()` (asyncio) or `iter_events()` (a thread)
    yield them in order and end after the last choice's Done, or raise the ApiError that
    failed the request. `cancel()` is thread-safe and idempotent.
    """

    def __init__(
        self, request: GenerationRequest, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.request = request
        self.submitted = time.monotonic()
        self.first_token: float | None = None  # monotonic time of the first Delta
        self.samples: list[Sample | None] = [None] * request.choices
        self._cancelled = threading.Event()
        self._loop = loop
        self._async_queue: asyncio.Queue | None = asyncio.Queue() if loop is not None else None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._remaining = request.choices
        self._ended = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    # The scheduler's side.

    def emit_delta(self, choice: int, text: str) -> None:
        if text:
            if self.first_token is None:
                self.first_token = time.monotonic()
            self._put(Delta(choice, text))

    def emit_done(self, choice: int, sample: Sample) -> None:
        with self._lock:
            if self._ended or self.samples[choice] is not None:
                return
            self.samples[choice] = sample
            self._remaining -= 1
            last = self._remaining == 0
            self._ended = last
        self._put(Done(choice, sample))
        if last:
            self._put(_END)

    def fail(self, error: ApiError) -> None:
        """End the request with an error (its route answers it, or reports it in-stream)."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self._put(error)
        self._put(_END)

    @property
    def finished(self) -> bool:
        return self._ended

    def _put(self, item: Any) -> None:
        if self._async_queue is not None:
            try:
                self._loop.call_soon_threadsafe(self._async_queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                self.cancel()
        else:
            self._queue.put(item)

    # The route's side.

    async def events(self) -> AsyncIterator[Delta | Done]:
        assert self._async_queue is not None, "submit(request, loop) for events()"
        while True:
            item = await self._async_queue.get()
            if item is _END:
                return
            if isinstance(item, ApiError):
                raise item
            yield item

    def iter_events(self) -> Iterator[Delta | Done]:
        assert self._async_queue is None, "submit(request) without a loop for iter_events()"
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, ApiError):
                raise item
            yield item

    def result(self) -> list[Sample]:
        """Every choice's sample, blocking (from a thread) until the last is done."""
        for _ in self.iter_events():
            pass
        return [sample for sample in self.samples if sample is not None]


def fitted_prompt_ids(
    backend: Any, config: ServeConfig, request: GenerationRequest, prompt: str
) -> list[int] | None:
    """The token ids one prompt of the request starts from, trimmed (`fit_prompt`) to leave
    room for the tokens asked for when `config.truncate` is on, and to the request's own
    `truncate` (TGI's: its last that many tokens) either way; None for a backend that
    tokenizes elsewhere (an HTTP endpoint), which gets the text."""
    fit = getattr(backend, "fit_prompt", None)
    if fit is None:
        return None
    max_new_tokens = request.params.max_new_tokens if config.truncate else None
    return fit(prompt, request.suffix, max_new_tokens, request.truncate)


def choice_params(params: SamplingParams, prompt: int, draw: int) -> SamplingParams:
    """The first choice keeps the request's seed, so a one-sample request draws what
    `backend.complete([prompt], params)` draws; the others get seeds of their own."""
    if prompt == 0 and draw == 0:
        return params
    return replace(params, seed=sample_seed(params.seed, prompt, draw))
