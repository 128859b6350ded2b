"""Batches made ahead in a thread: the saved position is the consumer's, a failure in the
thread surfaces in the caller, and closing stops the thread."""

from __future__ import annotations

import itertools
import threading

import pytest

from codekiln.train.prefetch import Prefetcher


class Counting:
    """A loader of batches 0, 1, 2, ... whose state is the next batch; `fail_at` raises."""

    def __init__(self, fail_at: int | None = None):
        self.next = 0
        self.fail_at = fail_at
        self.made = 0

    def __iter__(self):
        while True:
            if self.next == self.fail_at:
                raise ValueError(f"batch {self.next} is damaged")
            batch = self.next
            self.next += 1
            self.made += 1
            yield batch

    def state_dict(self) -> dict:
        return {"next": self.next}

    def load_state_dict(self, state: dict) -> None:
        self.next = state["next"]


def wait_until(condition, seconds: float = 5.0) -> None:
    event = threading.Event()
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        event.wait(0.01)
    raise AssertionError("timed out")


@pytest.mark.parametrize("depth", [0, 1, 4])
def test_the_state_is_the_next_batch_the_caller_takes(depth):
    loader = Counting()
    with Prefetcher(loader, depth, convert=lambda b: b * 10) as prefetch:
        batches = iter(prefetch)
        assert list(itertools.islice(batches, 3)) == [0, 10, 20]
        if depth:  # the thread has run ahead of the caller
            wait_until(lambda: loader.made == 3 + depth + 1)
        assert prefetch.state_dict() == {"next": 3}
        state = prefetch.state_dict()
    resumed = Prefetcher(Counting(), depth)
    resumed.load_state_dict(state)
    with resumed:
        assert next(iter(resumed)) == 3  # the batch that came next, not the thread's


def test_a_failure_in_the_thread_is_raised_in_the_caller_at_that_batch():
    with Prefetcher(Counting(fail_at=2), depth=3) as prefetch:
        batches = iter(prefetch)
        assert [next(batches), next(batches)] == [0, 1]
        with pytest.raises(ValueError, match="batch 2 is damaged"):
            next(batches)
        assert prefetch.state_dict() == {"next": 2}
        assert prefetch._thread is None  # stopped and joined


def test_close_stops_a_thread_waiting_for_room():
    loader = Counting()
    prefetch = Prefetcher(loader, depth=2)
    next(iter(prefetch))
    wait_until(lambda: loader.made == 4)  # one taken, two queued, one waiting for room
    thread = prefetch._thread
    prefetch.close()
    assert not thread.is_alive() and loader.made == 4


def test_the_position_cannot_move_once_iteration_started():
    prefetch = Prefetcher(Counting(), depth=1)
    next(iter(prefetch))
    with pytest.raises(RuntimeError):
        prefetch.load_state_dict({"next": 0})
    prefetch.close()
