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


def _ray_call(fn: Callable[..., Any], task: Any) -> tuple[str, Any]:
    import ray

    return ray.get_runtime_context().get_node_id(), fn(task)


class RayExecutor:
    """The same tasks on a Ray cluster. Task files are paths: every node must see the output
    directory (one machine, or a shared filesystem)."""

    def __init__(self, workers: int, address: str | None = None) -> None:
        self.workers = max(1, workers)
        self.address = address
        self._started = False
        self.nodes: dict[str, int] = {}  # tasks run per Ray node id

    def __enter__(self) -> RayExecutor:
        try:
            import ray
        except ImportError:
            from codekiln.errors import UserError

            raise UserError("--executor ray needs Ray: pip install 'codekiln[ray]'") from None
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers, log_to_driver=False, include_dashboard=False)
            self._started = True
        self._remote = ray.remote(_ray_call)
        if self.address:
            # On a cluster, spread the tasks over the nodes rather than filling one first:
            # the work is I/O on shared storage as much as CPU.
            self._remote = self._remote.options(scheduling_strategy="SPREAD")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def map_unordered(self, fn: Callable[..., Any], tasks: Iterable[Any]) -> Iterator[Any]:
        import ray

        queue = iter(tasks)
        pending = []
        limit = 2 * self.workers if not self.address else 4 * self.workers
        for task in queue:
            pending.append(self._remote.remote(fn, task))
            if len(pending) >= limit:
                break
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                node, result = ray.get(ref)
                self.nodes[node] = self.nodes.get(node, 0) + 1
                yield result
                task = next(queue, None)
                if task is not None:
                    pending.append(self._remote.remote(fn, task))


def make_executor(kind: str, workers: int, address: str | None = None):
    """'local' (processes on this machine) or 'ray' (a Ray cluster, or a local Ray instance)."""
    if kind == "local":
        if address:
            from codekiln.errors import UserError

            raise UserError("--ray-address needs --executor ray")
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(workers, address)
    from codekiln.errors import UserError

    raise UserError(f"unknown executor '{kind}'; use 'local' or 'ray'")
