"""What exact and near deduplication share: files sorted by a uint64 hash, read a window
of the hash range at a time, and the record of what a stage's files were made from."""

from __future__ import annotations

import bisect
import json
from pathlib import Path
from typing import Any

import numpy as np


def hash_windows(rows: int, max_rows: int) -> list[int]:
    """Upper bounds (exclusive) of the equal ranges of uint64 hash values that cut `rows`
    uniformly spread hashes into windows of about `max_rows`; the last bound is 2^64.

    >>> hash_windows(10, 4) == [2**64 // 3, 2 * 2**64 // 3, 2**64]
    True
    """
    count = max(1, -(-rows // max(1, max_rows)))
    return [(k + 1) * 2**64 // count for k in range(count)]


def sorted_slice(keys: Any, start: int, upper: int) -> int:
    """The end of the slice of sorted uint64 `keys`, from `start`, of the values below
    `upper` (a `hash_windows` bound): a binary search that reads a few values of a mapped
    file, never the whole column (numpy's searchsorted would copy a strided view).

    >>> sorted_slice(np.array([1, 5, 9], dtype=np.uint64), 1, 9), sorted_slice([1], 0, 2**64)
    (2, 1)
    """
    if upper >= 2**64:
        return len(keys)
    return bisect.bisect_left(keys, np.uint64(upper), lo=start)


def input_stamps(inputs: list[Path]) -> list[list[Any]]:
    """What a stage's files were made from: each input's path, size and modification time."""
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in inputs]


def stage_is_current(marker: Path, state: dict[str, Any]) -> bool:
    """Whether `marker` records `state`: earlier stage files may then be reused. When it does
    not, the caller clears them, and `marker` is written anew with `state`."""
    try:
        previous = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        previous = None
    return previous == json.loads(json.dumps(state))
