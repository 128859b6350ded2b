"""The source table: which documents each stored gram came from, as one sorted uint64 array.

Each entry packs a gram's hash and a document row into one word: the hash's top
64 - doc_bits bits (its fingerprint), then the row in the low doc_bits bits, where doc_bits is
just enough for the number of documents. Sorted, the entries of one gram sit together, so a
lookup is two binary searches, and the table costs 8 bytes per stored (gram, document) pair.
A query gram matches another gram's fingerprint with probability about
entries / 2^(64 - doc_bits): 2e-10 for the standard library, still below 1e-4 at 10^9 grams
in 10^7 files (build_index records the figure in the manifest).
"""

from __future__ import annotations

import numpy as np


def doc_bits_for(documents: int) -> int:
    """Bits that hold every row number below `documents`.

    >>> doc_bits_for(1), doc_bits_for(2), doc_bits_for(1000), doc_bits_for(1024)
    (1, 1, 10, 10)
    """
    return max(1, (documents - 1).bit_length())


def source_keys(hashes: np.ndarray, rows: np.ndarray, doc_bits: int) -> np.ndarray:
    """The sorted, distinct entries for grams `hashes` found in document `rows`.

    >>> keys = source_keys(np.array([0xFF00, 0x0100, 0xFF00], np.uint64), np.array([2, 1, 2]), 8)
    >>> [hex(k) for k in keys]
    ['0x101', '0xff02']
    """
    fingerprints = np.asarray(hashes, dtype=np.uint64) >> np.uint64(doc_bits)
    keys = (fingerprints << np.uint64(doc_bits)) | np.asarray(rows, dtype=np.uint64)
    return np.unique(keys)


def lookup(keys: np.ndarray, hashes: np.ndarray, doc_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """For each gram hash, the range [lo, hi) of `keys` that hold its documents (empty if the
    gram is not in the table).

    >>> keys = source_keys(np.array([0xFF00, 0xFF00, 0x0100], np.uint64), np.array([1, 2, 1]), 8)
    >>> lo, hi = lookup(keys, np.array([0xFF00, 0x0200], np.uint64), 8)
    >>> lo.tolist(), hi.tolist()
    ([1, 1], [3, 1])
    """
    shift, low = np.uint64(doc_bits), np.uint64((1 << doc_bits) - 1)
    first = (np.asarray(hashes, dtype=np.uint64) >> shift) << shift
    return np.searchsorted(keys, first, "left"), np.searchsorted(keys, first | low, "right")


def rows_of(
    keys: np.ndarray, lo: np.ndarray, hi: np.ndarray, doc_bits: int, cap: int
) -> np.ndarray:
    """The document rows in the ranges [lo, hi) of `keys`, at most `cap` per range, in order.

    >>> keys = np.array([0x101, 0x102, 0x205], np.uint64)
    >>> rows_of(keys, np.array([0, 2]), np.array([2, 3]), 8, cap=1).tolist()
    [1, 5]
    """
    counts = np.minimum(hi - lo, cap)
    starts = np.repeat(lo, counts)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return (keys[starts + within] & np.uint64((1 << doc_bits) - 1)).astype(np.int64)
