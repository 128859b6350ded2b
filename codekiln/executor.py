"""Executors run a stage's tasks: in this process, or in worker processes.

Results come back as tasks finish (for progress); callers order them by task index, so the
output never depends on the executor or the number of workers.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def run_tasks(fn: Callable[..., R], tasks: Iterable[T], workers: int, *args: Any) -> Iterator[R]:
    """Yield fn(task, *args) for every task, in completion order. A failed task re-raises."""
    tasks = list(tasks)
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield fn(task, *args)
        return
    # spawn, not fork: the parent runs a progress thread, and forking threads is unsafe.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = set()
        queue = iter(tasks)
        # Keep a bounded number of tasks in flight so memory does not grow with the corpus.
        for task in queue:
            pending.add(pool.submit(fn, task, *args))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.add(pool.submit(fn, nxt, *args))
