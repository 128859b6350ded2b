"""Integer hashing shared by near-deduplication and attribution."""

from __future__ import annotations

import numpy as np

# Odd 64-bit multiplier (2^64 / golden ratio) for combining hashes in sequence: odd, so
# multiplying by it is invertible mod 2^64.
GOLDEN64 = 0x9E3779B97F4A7C15

_MIX1 = np.uint64(0xFF51AFD7ED558CCD)
_MIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_SHIFT = np.uint64(33)


def fmix64(x: np.ndarray, in_place: bool = False) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, elementwise (wrapping uint64 arithmetic): a bijection
    that mixes every input bit into every output bit. With `in_place`, `x` (a uint64 array)
    is overwritten and returned, saving the copies on large arrays.

    >>> [hex(v) for v in fmix64(np.array([0, 1], dtype=np.uint64))]
    ['0x0', '0xb456bcfc34c2cb2c']
    """
    if not in_place:
        x = np.array(x, dtype=np.uint64)
    x ^= x >> _SHIFT
    x *= _MIX1
    x ^= x >> _SHIFT
    x *= _MIX2
    x ^= x >> _SHIFT
    return x
