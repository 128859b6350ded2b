"""Batches made ahead in a background thread, with the loader's position kept exact.

Making a batch is numpy and tokenizer work (FIM decodes and re-encodes text: ~60 ms per
4 x 8,192 batch); a training step spends most of its time in torch kernels that release the
GIL, so one thread making the next batches takes that work off the step's critical path.

`Prefetcher` wraps a loader (`TokenLoader`, `SftLoader`: endless iteration, `state_dict`,
`load_state_dict`). The thread runs ahead by up to `depth` batches, so the wrapped loader's
own position is the producer's; `state_dict()` is instead the position after the last batch
the training loop took, recorded by the thread with each batch: a checkpoint resumes at the
next batch the loop would have consumed, as without prefetching. An exception in the thread
is raised again in the loop, at the batch that failed; `close()` (or leaving a `with` block) stops
the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

_DONE = object()


class Prefetcher:
    """Iterates `loader`'s batches, `depth` of them made ahead by a thread (0: made when
    asked, in the caller's thread); `convert` is applied to each batch in the thread (e.g.
    numpy -> pinned tensors)."""

    def __init__(self, loader, depth: int = 2, convert: Callable[[Any], Any] | None = None):
        if depth < 0:
            raise ValueError(f"prefetch depth must be >= 0, not {depth}")
        self.loader = loader
        self.depth = depth
        self.convert = convert or (lambda batch: batch)
        self._state = loader.state_dict()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._queue: queue.Queue | None = None
        self._started = False

    def state_dict(self) -> dict:
        """The position after the last batch handed to the caller."""
        return self._state

    def load_state_dict(self, state: dict) -> None:
        """Continue at `state`; only before iteration starts (the thread owns the loader)."""
        if self._started:
            raise RuntimeError("load_state_dict after iteration started")
        self.loader.load_state_dict(state)
        self._state = self.loader.state_dict()

    def __iter__(self) -> Iterator[Any]:
        if self._started:
            raise RuntimeError("a Prefetcher is iterated once")
        self._started = True
        if self.depth == 0:
            return self._inline()
        self._queue = queue.Queue(maxsize=self.depth)
        self._thread = threading.Thread(target=self._produce, name="codekiln-prefetch", daemon=True)
        self._thread.start()
        return self._consume()

    def _inline(self) -> Iterator[Any]:
        for batch in self.loader:
            converted = self.convert(batch)
            self._state = self.loader.state_dict()
            yield converted

    def _produce(self) -> None:
        try:
            for batch in self.loader:
                item = (self.convert(batch), self.loader.state_dict())
                if not self._put(item):
                    return
        except BaseException as error:  # handed to the loop, which raises it
            self._put((_DONE, error))

    def _put(self, item) -> bool:
        """Queue `item`, waiting for room; False once the consumer has stopped us."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _consume(self) -> Iterator[Any]:
        while True:
            batch, state = self._queue.get()
            if batch is _DONE:  # the thread's exception, with its traceback
                self.close()
                raise state
            self._state = state
            yield batch

    def close(self) -> None:
        """Stop the thread (it may be making a batch: that one is finished, then dropped)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
