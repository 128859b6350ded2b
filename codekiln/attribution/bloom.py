"""A Bloom filter over 64-bit gram hashes, as a numpy array of uint64 words.

Sized for n distinct items and false-positive rate p with the textbook optimum,
m = -n ln p / (ln 2)^2 bits and k = (m / n) ln 2 hash functions. The k bit positions of an item
come from double hashing (Kirsch and Mitzenmacher): (h1 + j * h2) mod m for j < k, with
h1 the item's hash and h2 a second, odd mix of it; two hashes give the same false-positive
rate as k independent ones, asymptotically. The filter has no false negatives: an item that
was added is always reported present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codekiln.attribution.grams import fmix64

_SECOND_SEED = np.uint64(0x5851F42D4C957F2D)
_CHUNK = 1 << 20  # items per vectorised step: k positions each stay a few MB


def bloom_parameters(items: int, false_positive_rate: float) -> tuple[int, int]:
    """(bits, hashes) for `items` distinct items at `false_positive_rate`; bits is rounded up
    to whole 64-bit words.

    >>> bloom_parameters(1000, 0.01)
    (9600, 7)
    >>> bloom_parameters(0, 0.01)
    (64, 1)
    """
    if items <= 0:
        return 64, 1
    bits = math.ceil(-items * math.log(false_positive_rate) / math.log(2) ** 2)
    bits = max(64, -(-bits // 64) * 64)
    return bits, max(1, round(bits / items * math.log(2)))


def expected_false_positive_rate(bits: int, hashes: int, items: int) -> float:
    """The false-positive rate of a filter of `bits` and `hashes` holding `items`.

    >>> round(expected_false_positive_rate(9600, 7, 1000), 4)
    0.01
    """
    return (1.0 - math.exp(-hashes * items / bits)) ** hashes


@dataclass
class BloomFilter:
    words: np.ndarray  # uint64; bit b lives in words[b // 64] at 1 << (b % 64)
    hashes: int

    @classmethod
    def empty(cls, items: int, false_positive_rate: float) -> BloomFilter:
        bits, hashes = bloom_parameters(items, false_positive_rate)
        return cls(np.zeros(bits // 64, dtype=np.uint64), hashes)

    @property
    def bits(self) -> int:
        return len(self.words) * 64

    def _positions(self, items: np.ndarray) -> np.ndarray:
        """(len(items), k) bit positions."""
        first = items[:, None]
        second = fmix64(items ^ _SECOND_SEED)[:, None] | np.uint64(1)
        steps = np.arange(self.hashes, dtype=np.uint64)[None, :]
        return (first + steps * second) % np.uint64(self.bits)

    def add(self, items: np.ndarray) -> None:
        items = np.asarray(items, dtype=np.uint64)
        for lo in range(0, len(items), _CHUNK):
            positions = self._positions(items[lo : lo + _CHUNK]).ravel()
            masks = np.uint64(1) << (positions & np.uint64(63))
            np.bitwise_or.at(self.words, positions >> np.uint64(6), masks)

    def contains(self, items: np.ndarray) -> np.ndarray:
        """A bool per item: True if every one of its k bits is set."""
        items = np.asarray(items, dtype=np.uint64)
        found = np.empty(len(items), dtype=bool)
        for lo in range(0, len(items), _CHUNK):
            positions = self._positions(items[lo : lo + _CHUNK])
            bits = (self.words[positions >> np.uint64(6)] >> (positions & np.uint64(63))) & 1
            found[lo : lo + _CHUNK] = bits.all(axis=1)
        return found

    def fill_ratio(self) -> float:
        """The share of bits set; a filter at its design load is about half full."""
        return float(np.unpackbits(self.words.view(np.uint8)).mean()) if len(self.words) else 0.0

    @classmethod
    def load(cls, path: Path, hashes: int) -> BloomFilter:
        return cls(np.load(path, mmap_mode="r"), hashes)
