"""Normalised text, its fixed-width character grams, and their 64-bit hashes, all in numpy.

Text is handled as an array of Unicode code points (`codes`, uint32), so offsets are Python
`str` indices. Normalisation drops or folds characters and keeps, for every code point it
keeps, the index it came from in the original text (`origin`): a gram found at normalised
position i covers original characters `origin[i]` to `origin[i + width - 1]` inclusive.

Modes (`whitespace`):

- `remove` (the default): every character `str.isspace()` accepts is dropped, so re-indented,
  re-wrapped or re-formatted code (`a=b` against `a = b`, tabs against spaces) still matches.
  50 non-space characters of Python are about 70 characters of source.
- `collapse`: each run of whitespace becomes one space (Data Portraits' choice for prose).
- `keep`: the text as it is.

`lowercase` folds ASCII A-Z only: full Unicode lowercasing can change a string's length
('İ'.lower() is two characters), which would break the offset mapping, and code rarely
changes case when it is copied, so it is off by default.

A gram's hash is a polynomial over mixed code points, sum_t g(c[i + t]) * B^t mod 2^64, with
g = fmix64 (MurmurHash3's finaliser, a bijection, so strings that differ in one character
never collide) and B odd. Prefix sums S[k] = sum_{j<k} g(c[j]) * B^j give every window's hash
in O(n) whatever the width: (S[i + w] - S[i]) * B^-i, B^-1 existing because B is odd. The
result goes through fmix64 once more so that every bit is usable by the Bloom filter.
uint64 arithmetic in numpy wraps, which is exactly arithmetic mod 2^64.
"""

from __future__ import annotations

import numpy as np

from codekiln.hashing import fmix64

WHITESPACE_MODES = ("remove", "collapse", "keep")

# Every code point for which str.isspace() is true (tests/test_attribution.py checks the list).
SPACES = np.array(
    [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0, 0x1680]
    + list(range(0x2000, 0x200B))
    + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000],
    dtype=np.uint32,
)

_BASE = 0x9E3779B97F4A7C15  # odd: invertible mod 2^64
_BASE_INVERSE = pow(_BASE, -1, 1 << 64)
_CHAR_SEED = np.uint64(0x243F6A8885A308D3)


def code_points(text: str) -> np.ndarray:
    """The text as uint32 code points; lone surrogates pass through as their own values.

    >>> code_points("a€").tolist()
    [97, 8364]
    """
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.uint32)


def normalise_codes(
    codes: np.ndarray,
    whitespace: str = "remove",
    lowercase: bool = False,
    breaks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalise code points; return (normalised codes, origin index of each one).

    `breaks` are indices where a new document starts inside `codes` (a batch of documents
    laid end to end): a whitespace run never continues across one, so each document
    normalises exactly as it would alone.

    >>> codes, origin = normalise_codes(code_points("if x:\\n    y = 1"))
    >>> "".join(map(chr, codes)), origin.tolist()
    ('ifx:y=1', [0, 1, 3, 4, 10, 12, 14])
    >>> codes, origin = normalise_codes(code_points("A  b\\n"), "collapse", lowercase=True)
    >>> "".join(map(chr, codes)), origin.tolist()
    ('a b ', [0, 1, 3, 4])
    """
    if whitespace not in WHITESPACE_MODES:
        raise ValueError(f"whitespace must be one of {WHITESPACE_MODES}, got {whitespace!r}")
    codes = np.asarray(codes, dtype=np.uint32)
    if whitespace == "keep":
        keep = np.ones(len(codes), dtype=bool)
    else:
        space = _is_space(codes)
        if whitespace == "remove":
            keep = ~space
        else:
            # The first character of each whitespace run survives, as one plain space.
            continues = np.zeros(len(codes), dtype=bool)
            continues[1:] = space[1:] & space[:-1]
            if breaks is not None and len(breaks):
                continues[np.asarray(breaks)] = False
            keep = ~continues
            codes = np.where(space, np.uint32(0x20), codes)
    origin = np.flatnonzero(keep)
    out = codes[origin]
    if lowercase:
        upper = (out >= 0x41) & (out <= 0x5A)
        out = np.where(upper, out + np.uint32(0x20), out)
    return out.astype(np.uint32, copy=False), origin


def _is_space(codes: np.ndarray) -> np.ndarray:
    # A table lookup, several times faster than np.isin; every code point above the last
    # space shares the table's final, non-space entry.
    table = np.zeros(int(SPACES.max()) + 2, dtype=bool)
    table[SPACES] = True
    return table[np.minimum(codes, len(table) - 1)]


def window_hashes(codes: np.ndarray, width: int, starts: np.ndarray | None = None) -> np.ndarray:
    """The 64-bit hash of the `width` code points beginning at each of `starts` (default: every
    position where a whole window fits). A window's hash depends only on its code points.

    >>> h = window_hashes(code_points("abcabc"), 3)
    >>> len(h), h[0] == h[3], h[0] == h[1]
    (4, np.True_, np.False_)
    >>> bool(window_hashes(code_points("xxabc"), 3, np.array([2]))[0] == h[0])
    True
    """
    n = len(codes)
    if starts is None:
        starts = np.arange(max(n - width + 1, 0), dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    if len(starts) == 0:
        return np.zeros(0, dtype=np.uint64)
    assert starts.min() >= 0 and starts.max() + width <= n, "window outside the text"
    prefix = np.zeros(n + 1, dtype=np.uint64)  # S[k] = sum_{j<k} g(c_j) B^j
    np.cumsum(fmix64(codes.astype(np.uint64) + _CHAR_SEED) * _powers(_BASE, n), out=prefix[1:])
    inverse = _powers(_BASE_INVERSE, int(starts.max()) + 1)[starts]  # B^-i
    return fmix64((prefix[starts + width] - prefix[starts]) * inverse + np.uint64(width))


def _powers(base: int, count: int) -> np.ndarray:
    """base^0, base^1, ... base^(count - 1) mod 2^64."""
    powers = np.full(count, base, dtype=np.uint64)
    powers[:1] = 1
    return np.cumprod(powers, out=powers)


def stored_starts(lengths: np.ndarray, width: int, stride: int) -> np.ndarray:
    """The start of every gram stored for documents of `lengths` (normalised) laid end to end:
    offsets 0, stride, 2 * stride, ... within each document while a whole gram fits.

    >>> stored_starts(np.array([5, 2, 4]), 2, 2).tolist()
    [0, 2, 5, 7, 9]
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = np.where(lengths >= width, (lengths - width) // stride + 1, 0)
    total = int(counts.sum())
    doc_starts = np.cumsum(lengths) - lengths
    first = np.repeat(doc_starts, counts)
    # Position of each gram within its document: 0, 1, 2, ... restarting per document.
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return first + within * stride
