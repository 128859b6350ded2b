"""Executors run a stage's tasks: in this process, or in worker processes.

Results come back as tasks finish (for progress); callers order them by task index, so the
output never depends on the executor or the number of workers.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any


def _ready() -> bool:
    return True


class LocalExecutor:
    """Worker processes on this machine (or none, with one worker).

    On Linux the workers are forked when the executor is entered, before the caller starts
    any thread (a progress bar), so they start at once with every module already imported;
    elsewhere they are spawned.
    """

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalExecutor:
        if self.workers > 1:
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context(method)
            )
            # With fork, the first submit starts every worker: do it now, while single-threaded.
            self._pool.submit(_ready).result()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def map_unordered(self, fn: Callable[..., Any], tasks: Iterable[Any]) -> Iterator[Any]:
        """Yield fn(task) for every task as it finishes. A failed task re-raises here."""
        if self._pool is None:
            for task in tasks:
                yield fn(task)
            return
        queue = iter(tasks)
        pending = set()
        # A bounded number of tasks in flight, so memory does not grow with the corpus.
        for task in queue:
            pending.add(self._pool.submit(fn, task))
            if len(pending) >= 2 * self.workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                task = next(queue, None)
                if task is not None:
                    pending.add(self._pool.submit(fn, task))
