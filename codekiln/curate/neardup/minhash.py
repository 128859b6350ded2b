"""MinHash signatures and LSH band hashes of code, and the settings that shape them.

A document is the set of its n-token shingles; tokens are the runs of `[A-Za-z0-9_]` in the
code after its leading license header. MinHash keeps, per permutation, the smallest permuted
shingle hash; LSH cuts the signature into b bands of r rows, and two documents that agree on
a whole band become a candidate pair.

The hash scheme, exactly:

The hash scheme, exactly:

    token hash    t = blake2b(token UTF-8, digest_size=8), little-endian uint64
    shingle hash  x = fmix64(((t1*K + t2)*K + t3)*K ... + tn)  mod 2^64, K = 0x9E3779B97F4A7C15,
                  fmix64 = MurmurHash3's 64-bit finaliser
    permutation   h_i(x) = ((a_i*x + b_i) mod 2^64) >> 32, a uint32, with a_i odd and b_i
                  uniform 64-bit, drawn by np.random.default_rng(seed) (multiply-add-shift
                  hashing: the top half of a product depends on every bit of x, and numpy's
                  uint64 arithmetic wraps mod 2^64 natively, so there is no remainder to compute)
    signature     sig_i = min over the document's shingles of h_i(x), capped at 2^32 - 2 so
                  that EMPTY (2^32 - 1, the row of a document without tokens) never matches
    band hash     fmix64 of the band's r signature values combined with K as above
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import numpy as np

from codekiln.errors import UserError
from codekiln.hashing import GOLDEN64, fmix64

# Tokens are runs of [A-Za-z0-9_]. They are cut from the UTF-8 bytes: every other byte (any
# byte of a non-ASCII character included) becomes a space, and bytes.split() cuts on spaces, in
# C, about twice as fast as re.findall; the tokens come out as the bytes blake2b hashes.
_SEPARATORS = bytes(
    c if chr(c).isascii() and (chr(c).isalnum() or chr(c) == "_") else ord(" ") for c in range(256)
)

# The signature value of a document without tokens: above any real value, so it never matches.
EMPTY = np.uint32(0xFFFFFFFF)
_TOP = np.uint32(0xFFFFFFFE)  # the largest real signature value

# Odd 64-bit multiplier for combining hashes in sequence (then mixed by `fmix64`).
_STEP = np.uint64(GOLDEN64)

# Shingles of the documents permuted at once, one permutation at a time: 2^16 uint64 values
# (512 KiB) stay in L2 cache across the multiply, the add and the per-document minimum. On the
# standard library this ran 2.3x faster than all permutations of 2^13 shingles at once (a 16 MiB
# block that every pass read back from memory).
_CHUNK_SHINGLES = 1 << 16
# Token hashes of this process, kept across signature tasks (cleared past the limit: ~100 MB).
TOKEN_CACHE: dict[bytes, int] = {}
_TOKEN_CACHE_LIMIT = 1 << 20


@dataclass
class MinHash:
    """How near-duplicates are found. `bands` x `rows` default to `optimal_bands(threshold,
    num_perm)`; give one or both to override (a missing one is num_perm // the other)."""

    ngram: int = 5
    num_perm: int = 256
    threshold: float = 0.7
    bands: int | None = None
    rows: int | None = None
    seed: int = 42
    partitions: int | None = None  # None: `partition_count` of the band rows

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise UserError(f"ngram must be at least 1 (got {self.ngram}); StarCoder uses 5")
        if not 1 <= self.num_perm <= 65535:
            raise UserError(f"num_perm must be in 1..65535 (got {self.num_perm}); try 256")
        if not 0.0 < self.threshold < 1.0:
            raise UserError(f"threshold must be between 0 and 1 (got {self.threshold}); try 0.7")
        for name in ("bands", "rows"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"{name} must be at least 1 (got {value}), or None to choose it")
        bands, rows = self.band_rows()
        if bands * rows > self.num_perm:
            raise UserError(
                f"bands x rows = {bands} x {rows} = {bands * rows} exceeds num_perm "
                f"{self.num_perm}; lower bands or rows, or raise num_perm"
            )
        if self.seed < 0:
            raise UserError(f"seed must be a non-negative integer (got {self.seed})")
        if self.partitions is not None and not 1 <= self.partitions <= 4096:
            raise UserError(f"partitions must be in 1..4096 (got {self.partitions}); try 16")

    def band_rows(self) -> tuple[int, int]:
        """The (bands, rows) in force: the ones given, else the optimum for the threshold."""
        if self.bands is None and self.rows is None:
            return optimal_bands(self.threshold, self.num_perm)
        if self.rows is None:
            return self.bands, max(1, self.num_perm // self.bands)
        if self.bands is None:
            return max(1, self.num_perm // self.rows), self.rows
        return self.bands, self.rows


@lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """The LSH bands b and rows r (b * r <= num_perm) that best separate pairs above and
    below a Jaccard threshold.

    A pair of Jaccard s becomes a candidate with probability 1 - (1 - s^r)^b. The false
    positive area is the integral of that S-curve over [0, threshold], the false negative area
    the integral of its complement over [threshold, 1]; we minimise their equally weighted sum
    over every (b, r). For (0.7, 256) this gives 25 x 10: the curve's midpoint
    (1/25)^(1/10) = 0.72 sits just above 0.7, with a false positive area of 0.038 and a false
    negative area of 0.026. A pair of Jaccard 0.85 is then found with probability 0.996, one
    of 0.5 with probability 0.024. Six of the 256 permutations go unused by the bands (they
    still sharpen `estimated_jaccard`).

    >>> optimal_bands(0.7, 256)
    (25, 10)
    >>> optimal_bands(0.85, 256)
    (13, 19)
    """
    grid = np.linspace(0.0, 1.0, 2001)
    below, above = grid[grid <= threshold], grid[grid >= threshold]
    best: tuple[float, int, int] | None = None
    for rows in range(1, num_perm + 1):
        bands = np.arange(1, num_perm // rows + 1)[:, None]  # every b with b * rows <= num_perm
        false_pos = np.trapezoid(1.0 - (1.0 - below**rows) ** bands, below, axis=1)
        false_neg = np.trapezoid((1.0 - above**rows) ** bands, above, axis=1)
        error = 0.5 * false_pos + 0.5 * false_neg
        i = int(np.argmin(error))
        # Strictly smaller only, so ties keep the smaller r (then the smaller b): deterministic.
        if best is None or error[i] < best[0]:
            best = (float(error[i]), i + 1, rows)
    assert best is not None
    return best[1], best[2]


def _token_hashes(tokens: list[bytes], cache: dict[bytes, int]) -> np.ndarray:
    # blake2b is stable across processes and runs (unlike hash()); each distinct token is
    # hashed once per worker process (`TOKEN_CACHE`), and the lookups below run in C.
    new = list(set(tokens).difference(cache))
    if new:
        digests = b"".join([hashlib.blake2b(t, digest_size=8).digest() for t in new])
        cache.update(zip(new, np.frombuffer(digests, dtype="<u8").tolist(), strict=True))
    return np.fromiter(map(cache.__getitem__, tokens), dtype=np.uint64, count=len(tokens))


def shingle_set(text: str | None, ngram: int, cache: dict[bytes, int]) -> np.ndarray:
    """The distinct shingle hashes of a text, sorted."""
    if not text:
        return np.empty(0, dtype=np.uint64)
    # surrogatepass: a lone surrogate encodes to bytes above 127, a separator like any non-ASCII.
    tokens = text.encode("utf-8", "surrogatepass").translate(_SEPARATORS).split()
    if not tokens:
        return np.empty(0, dtype=np.uint64)
    if len(cache) > _TOKEN_CACHE_LIMIT:
        cache.clear()
    token_h = _token_hashes(tokens, cache)
    # A document shorter than one n-gram is one shingle of all its tokens: two such documents
    # match only when their token sequences are equal (Jaccard 1 or 0).
    width = min(ngram, len(token_h))
    count = len(token_h) - width + 1
    shingle = token_h[:count].copy()
    for offset in range(1, width):
        shingle *= _STEP
        shingle += token_h[offset : offset + count]
    # Sort and drop repeats: several times faster than np.unique's hash table on these sizes.
    shingle = np.sort(fmix64(shingle, in_place=True))
    return shingle[np.r_[True, shingle[1:] != shingle[:-1]]]


def shingle_hashes(text: str, ngram: int = 5) -> np.ndarray:
    """The set of a text's n-token shingles, as sorted distinct uint64 hashes.

    Tokens are the runs of [A-Za-z0-9_]; everything else separates them. A text with fewer
    than `ngram` tokens is one shingle of all its tokens; a text with no token has none.

    >>> shingle_hashes("def add(a, b): return a + b")  # 7 tokens -> 3 shingles
    array([ 7056104557163250583,  8692616625661504003, 10581007423234642881],
          dtype=uint64)
    >>> len(shingle_hashes("x = 1")), len(shingle_hashes("+= -> ..."))
    (1, 0)
    """
    return shingle_set(text, ngram, {})


@lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per permutation an odd multiplier a and an offset b, both uniform 64-bit, seeded."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 64, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 1 << 64, size=num_perm, dtype=np.uint64)
    return a, b


def min_hashes(sets: Sequence[np.ndarray], num_perm: int, seed: int) -> np.ndarray:
    """Signatures of shingle sets, (len(sets), num_perm) uint32; EMPTY rows for empty sets."""
    out = np.full((len(sets), num_perm), EMPTY, dtype=np.uint32)
    sizes = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
    docs = np.flatnonzero(sizes)
    if len(docs) == 0:
        return out
    a, b = _permutations(num_perm, seed)
    a_b = list(zip(a, b, strict=True))  # numpy scalars: no conversion per call
    # All documents' shingles end to end, so small documents share one numpy call.
    x = np.concatenate([sets[i] for i in docs])
    ends = np.cumsum(sizes[docs])
    starts = ends - sizes[docs]
    # Chunks of whole documents holding at most _CHUNK_SHINGLES shingles (a larger document
    # is a chunk of its own).
    cuts = [0]
    while cuts[-1] < len(docs):
        limit = starts[cuts[-1]] + _CHUNK_SHINGLES
        cuts.append(max(cuts[-1] + 1, int(np.searchsorted(ends, limit, side="right"))))
    buffer = np.empty(int(max(ends[hi - 1] - starts[lo] for lo, hi in pairwise(cuts))), np.uint64)
    for lo, hi in pairwise(cuts):
        chunk = x[starts[lo] : ends[hi - 1]]
        firsts = starts[lo:hi] - starts[lo]
        values = buffer[: len(chunk)]
        mins = np.empty((num_perm, hi - lo), dtype=np.uint64)
        for i, (a_i, b_i) in enumerate(a_b):
            # The products wrap mod 2^64; the shift by 32 is monotone, so it is applied to the
            # minima only.
            np.multiply(chunk, a_i, out=values)
            values += b_i
            np.minimum.reduceat(values, firsts, out=mins[i])
        mins >>= np.uint64(32)
        # EMPTY stays above every real value: 2^32 - 1, the one value it could meet, is
        # lowered to 2^32 - 2.
        np.minimum(mins, np.uint64(_TOP), out=mins)
        out[docs[lo:hi]] = mins.T
    return out


def minhash_signatures(texts: Sequence[str], params: MinHash) -> np.ndarray:
    """MinHash signatures, (len(texts), num_perm) uint32: per permutation ((a*x + b) mod 2^64)
    >> 32 with odd a, seeded by params.seed, the minimum over the text's shingle hashes x.

    A text without tokens gets a row of EMPTY (2^32 - 1), which is never a real value.

    >>> sig = minhash_signatures(["a b c d e f g", "a b c d e f h", "+"], MinHash())
    >>> sig.shape, sig.dtype, bool((sig[2] == EMPTY).all())
    ((3, 256), dtype('uint32'), True)
    >>> round(estimated_jaccard(sig[0], sig[1]), 2)  # shingle sets share 2 of 4: J = 0.5
    0.52
    """
    cache: dict[bytes, int] = {}
    sets = [shingle_set(text, params.ngram, cache) for text in texts]
    return min_hashes(sets, params.num_perm, params.seed)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The fraction of permutations on which two signatures agree: an unbiased estimate of
    the Jaccard similarity of the two shingle sets (standard error sqrt(J(1-J)/num_perm)).

    >>> estimated_jaccard(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0]))
    0.5
    """
    return float(np.mean(np.asarray(sig_a) == np.asarray(sig_b)))


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 per band per document, (N, bands): the hash of that band's `rows` values.

    Two documents share a band hash when they agree on all rows of that band, which is what
    makes them an LSH candidate pair (up to 64-bit collisions).

    >>> sig = np.array([[1, 2, 3, 4], [1, 2, 3, 5]], dtype=np.uint32)
    >>> h = band_hashes(sig, bands=2, rows=2)
    >>> h.shape, bool(h[0, 0] == h[1, 0]), bool(h[0, 1] == h[1, 1])
    ((2, 2), True, False)
    """
    grouped = signatures[:, : bands * rows].reshape(len(signatures), bands, rows)
    out = np.zeros((len(signatures), bands), dtype=np.uint64)
    for row in range(rows):
        out *= _STEP
        out += grouped[:, :, row]
    return fmix64(out, in_place=True)
