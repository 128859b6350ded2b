"""Near-deduplication with MinHash and LSH, in StarCoder's setting (5-grams, 256 permutations,
Jaccard threshold 0.7).

A document is the set of its 5-token shingles; tokens are the runs of `[A-Za-z0-9_]` in the
code after its leading license header (`strip_leading_header`). MinHash keeps, per
permutation, the smallest permuted shingle hash; LSH cuts the signature into b bands of r
rows, and two documents that agree on a whole band become a candidate pair.
Candidates are linked into clusters, and each cluster keeps one document: the one with the
smallest `rank`. As in StarCoder, the candidates are not verified against the true Jaccard.

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

The work runs in four stages, each a set of independent tasks on an executor, with files in
`work_dir` between them, so memory follows the candidate pairs rather than the corpus:

    signatures/pNNN/fNNNNNN.npy   stage 1, one task per input file: (band, band_hash, doc) rows,
                                  partitioned by band_hash mod P, sorted by band_hash
    edges/pNNN.npy                stage 2, one task per partition: candidate edges (doc, doc),
                                  found a band_hash range at a time (a slice of each file)
    clusters.npy                  stage 3, in this process: (doc, cluster root) for linked docs
    (the result)                  stage 4, one task per input file with linked docs: their `id`
                                  and `rank` only, to pick survivors

A doc is a global int64, `(input file index << 32) | row index`. A worker holds at most one
input file's rows (stage 1) or one window of WINDOW_ROWS band rows (stage 2), whatever the
corpus; the partition count P grows with the corpus only to share stage 2 among more workers.
This process holds the edges and linked documents, which grow with the duplicates.

Re-running with the same inputs and parameters reuses the finished stage-1 and stage-2 files
(`neardup.json` records what they were made from; anything else clears them).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from codekiln.errors import UserError
from codekiln.hashing import GOLDEN64, fmix64
from codekiln.manifest import atomic_path, write_json

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
_TEXT_BATCH = 1024  # rows of `content` read at once by a signature task
# Token hashes of this process, kept across signature tasks (cleared past the limit: ~100 MB).
_TOKEN_CACHE: dict[bytes, int] = {}
_TOKEN_CACHE_LIMIT = 1 << 20
# Stage 2 sorts at most about this many (band, hash, doc) rows at once (18 bytes each, and a
# few times that while sorting: ~30 MB); band rows per partition beyond which partitions are
# added, for parallel work rather than memory.
WINDOW_ROWS = 1 << 19
PARTITION_ROWS = 1 << 24

BAND_DTYPE = np.dtype([("band", "<u2"), ("hash", "<u8"), ("doc", "<i8")])
CLUSTER_DTYPE = np.dtype([("doc", "<i8"), ("root", "<i8")])
# 3: shingles skip a leading license header; partition files sorted by hash
# 2: multiply-shift permutations (1: mod 2^31 - 1)
_FORMAT_VERSION = 3

# Leading headers are looked for in the first characters only, so the scan costs the same for
# any file size; a header that does not end within them is left in place.
_HEADER_SCAN = 16384
# Block comments, by opener: `/* */` (C family, CSS, Go, Rust, Java...), `<!-- -->` (markup),
# `(* *)` (OCaml, Pascal), `{- -}` (Haskell), `--[[ ]]` (Lua), and Python's module docstrings.
_BLOCK_COMMENTS = (
    ("/*", "*/"),
    ("<!--", "-->"),
    ("(*", "*)"),
    ("{-", "-}"),
    ("--[[", "]]"),
    ('"""', '"""'),
    ("'''", "'''"),
)
# A run of line-comment lines: `#` (shell, Python, Ruby, R...), `//`, `--` (SQL, Haskell,
# Lua, Ada), `;` (Lisp, assembly, INI), `%` (Erlang, MATLAB, TeX). `--`, `;` and `%` need a
# space or a repeat after them (`--i;` and JavaScript's leading `;(function` are code);
# preprocessor lines and Rust attributes start with `#` but are code.
_COMMENT_LINES = re.compile(
    r"(?:(?![ \t]*#(?:!?\[|[ \t]*(?:include|define|undef|if|ifdef|ifndef|elif|else|endif|pragma|"
    r"import|error|warning|line|region|endregion|using)\b))"
    r"[ \t]*(?:#|//|--(?=[-\s])|;(?=[;\s])|%(?=[%\s]))[^\n]*\n)+"
)
_BLANK = re.compile(r"[\s\ufeff]*")
# Phrases of license and copyright notices, lowercase (not the bare word "license", which
# module documentation uses for other things). Substring tests: one case-insensitive regex
# alternation of these ran ~50x slower.
_NOTICE_PHRASES = (
    "copyright",
    "\u00a9",
    "spdx-license-identifier",
    "licensed under",
    "licensed to",
    "permission is hereby granted",
    "all rights reserved",
    "warrant",
    "gnu general",
    "gnu lesser",
    "gnu library",
    "gnu affero",
    "mozilla public",
    "apache license",
    "eclipse public",
    "redistribution and use",
    "is free software",
    "see the license",
)
_C_IN_PARENS = re.compile(r"\(c\)\s*\w")
_TOKEN = re.compile(r"[A-Za-z0-9_]")  # a token begins here: the rest is not all header


def _is_notice(block: str) -> bool:
    low = block.lower()
    return any(p in low for p in _NOTICE_PHRASES) or (
        "(c)" in low and _C_IN_PARENS.search(low) is not None
    )


def _comment_blocks(text: str, limit: int):
    """(start, end) of each leading comment block of `text[:limit]`: a delimited block comment,
    or a run of line-comment lines. Stops at the first code, or at a block that does not end
    before `limit`."""
    pos = 0
    while True:
        pos = _BLANK.match(text, pos, limit).end()
        if pos >= limit:
            return
        for opener, closer in _BLOCK_COMMENTS:
            if text.startswith(opener, pos):
                end = text.find(closer, pos + len(opener), limit)
                if end < 0:
                    return
                start, pos = pos, end + len(closer)
                yield start, pos
                break
        else:
            run = _COMMENT_LINES.match(text, pos, limit)
            if run is None:
                return
            start, pos = pos, run.end()
            if limit < len(text) and _COMMENT_LINES.match(text, pos, pos + 4096):
                return  # the run goes on past the limit
            yield start, pos


def strip_leading_header(text: str) -> str:
    r"""The text without its leading license header, for shingling: two files that differ only
    in their notice stay duplicates, and two short files that share a long notice do not.

    The header is the leading comment blocks (line comments in `#`, `//`, `--`, `;`, `%`, block
    comments in `/* */`, `<!-- -->`, `(* *)`, `{- -}`, `--[[ ]]`, Python module docstrings) up
    to the last one that reads as a license or copyright notice; later comment blocks (module
    documentation) stay. A text with no such notice, or with no code token after it, comes
    back whole. Only the first 16 KB are scanned.

    >>> strip_leading_header("# Copyright 2024 Ann\n# MIT License\n\nimport os\n")
    'import os\n'
    >>> strip_leading_header("# Reads files.\nimport os\n")
    '# Reads files.\nimport os\n'
    """
    cut = 0
    for start, end in _comment_blocks(text, min(len(text), _HEADER_SCAN)):
        if _is_notice(text[start:end]):
            cut = end
    if cut == 0 or _TOKEN.search(text, cut) is None:
        return text
    return text[cut:].lstrip("\r\n")


@dataclass
class MinHashParams:
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


def partition_count(band_rows: int) -> int:
    """Partitions for stage 2: 16 (parallel work), or more so each holds ~PARTITION_ROWS.

    >>> partition_count(25 * 10**6), partition_count(25 * 10**9)
    (16, 1491)
    """
    return min(4096, max(16, -(-band_rows // PARTITION_ROWS)))


def _token_hashes(tokens: list[bytes], cache: dict[bytes, int]) -> np.ndarray:
    # blake2b is stable across processes and runs (unlike hash()); each distinct token is
    # hashed once per worker process (`_TOKEN_CACHE`), and the lookups below run in C.
    new = list(set(tokens).difference(cache))
    if new:
        digests = b"".join([hashlib.blake2b(t, digest_size=8).digest() for t in new])
        cache.update(zip(new, np.frombuffer(digests, dtype="<u8").tolist(), strict=True))
    return np.fromiter(map(cache.__getitem__, tokens), dtype=np.uint64, count=len(tokens))


def _shingles(text: str | None, ngram: int, cache: dict[bytes, int]) -> np.ndarray:
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
    return _shingles(text, ngram, {})


@lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per permutation an odd multiplier a and an offset b, both uniform 64-bit, seeded."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 64, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 1 << 64, size=num_perm, dtype=np.uint64)
    return a, b


def _min_hashes(sets: Sequence[np.ndarray], num_perm: int, seed: int) -> np.ndarray:
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


def minhash_signatures(texts: Sequence[str], params: MinHashParams) -> np.ndarray:
    """MinHash signatures, (len(texts), num_perm) uint32: per permutation ((a*x + b) mod 2^64)
    >> 32 with odd a, seeded by params.seed, the minimum over the text's shingle hashes x.

    A text without tokens gets a row of EMPTY (2^32 - 1), which is never a real value.

    >>> sig = minhash_signatures(["a b c d e f g", "a b c d e f h", "+"], MinHashParams())
    >>> sig.shape, sig.dtype, bool((sig[2] == EMPTY).all())
    ((3, 256), dtype('uint32'), True)
    >>> round(estimated_jaccard(sig[0], sig[1]), 2)  # shingle sets share 2 of 4: J = 0.5
    0.52
    """
    cache: dict[bytes, int] = {}
    sets = [_shingles(text, params.ngram, cache) for text in texts]
    return _min_hashes(sets, params.num_perm, params.seed)


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


@dataclass
class NearDupResult:
    """What near-deduplication decided.

    duplicates: dropped id -> (cluster id, survivor id); the cluster id is the smallest id in
    the cluster, the survivor the member with the smallest (rank, id).
    cluster_sizes: cluster size -> number of clusters of that size (sizes >= 2).
    candidate_pairs: distinct (doc, doc) edges that LSH emitted (each bucket's members linked to
    its first member), before clustering.
    """

    duplicates: dict[str, tuple[str, str]]
    cluster_sizes: dict[int, int]
    candidate_pairs: int


@dataclass(frozen=True)
class SignatureTask:
    """Stage 1 for one input file, into `partitions` partitions (default: params.partitions)."""

    index: int
    path: Path
    work_dir: Path
    params: MinHashParams
    partitions: int | None = None

    def __post_init__(self) -> None:
        if self.partitions is None:
            object.__setattr__(self, "partitions", self.params.partitions or 16)


@dataclass(frozen=True)
class BucketTask:
    """Stage 2 for one partition, over the stage-1 files of `inputs` input files, read in
    windows of at most about `window_rows` rows."""

    partition: int
    inputs: int
    work_dir: Path
    window_rows: int = WINDOW_ROWS


@dataclass(frozen=True, eq=False)
class RankTask:
    """Stage 4 for one input file: read `id` and `rank` of the given (sorted) rows."""

    index: int
    path: Path
    rows: np.ndarray


def _save_npy(path: Path, array: np.ndarray) -> None:
    """np.save to a temporary name, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _partition_file(work_dir: Path, partition: int, index: int) -> Path:
    return work_dir / "signatures" / f"p{partition:03d}" / f"f{index:06d}.npy"


def _signature_done(work_dir: Path, index: int) -> Path:
    return work_dir / "signatures" / "done" / f"f{index:06d}"


def _edges_file(work_dir: Path, partition: int) -> Path:
    return work_dir / "edges" / f"p{partition:03d}.npy"


def signature_task(task: SignatureTask) -> int:
    """Stage 1: band hashes of every row of one input file, written per partition.

    Reads only the `content` column, in batches. Returns the number of documents with at least
    one token (the others are never candidates).
    """
    done = _signature_done(task.work_dir, task.index)
    if done.exists():
        return int(done.read_text())
    params = task.params
    bands, rows = params.band_rows()
    cache = _TOKEN_CACHE  # shared by the tasks a worker runs: most tokens recur across files
    hashes, docs = [], []
    first_row = 0
    parquet = pq.ParquetFile(task.path)
    for batch in parquet.iter_batches(batch_size=_TEXT_BATCH, columns=["content"]):
        texts = [strip_leading_header(t) if t else t for t in batch.column(0).to_pylist()]
        sets = [_shingles(text, params.ngram, cache) for text in texts]
        keep = np.flatnonzero([len(s) > 0 for s in sets])
        signatures = _min_hashes([sets[i] for i in keep], params.num_perm, params.seed)
        hashes.append(band_hashes(signatures, bands, rows))
        docs.append((task.index << 32) | (first_row + keep))
        first_row += len(texts)
    band_h = np.concatenate(hashes) if hashes else np.empty((0, bands), dtype=np.uint64)
    doc = np.concatenate(docs) if docs else np.empty(0, dtype=np.int64)
    records = np.empty(band_h.size, dtype=BAND_DTYPE)
    records["band"] = np.tile(np.arange(bands, dtype=np.uint16), len(doc))
    records["hash"] = band_h.ravel()
    records["doc"] = np.repeat(doc, bands)
    # A bucket is (band, hash), so every member of a bucket lands in the same partition; each
    # partition file is sorted by hash, so stage 2 can read it a hash range at a time.
    part = (records["hash"] % np.uint64(task.partitions)).astype(np.int64)
    order = np.lexsort((records["hash"], part))
    bounds = np.searchsorted(part[order], np.arange(task.partitions + 1))
    for p in range(task.partitions):
        chunk = records[order[bounds[p] : bounds[p + 1]]]
        _save_npy(_partition_file(task.work_dir, p, task.index), chunk)
    # Written last, so its presence means every partition file of this input is complete.
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(f"{len(doc)}\n")
    return len(doc)


def _unique_pairs(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Distinct (src, dst) rows, sorted, as an (E, 2) int64 array."""
    if len(src) == 0:
        return np.empty((0, 2), dtype=np.int64)
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    keep = np.r_[True, (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])]
    return np.stack([src[keep], dst[keep]], axis=1).astype(np.int64)


def bucket_task(task: BucketTask) -> int:
    """Stage 2: candidate edges of one partition. Reads only that partition's files.

    Rows are sorted by (band, hash, doc); each bucket's members are linked to its first (the
    smallest doc), a star rather than all pairs, which links the same documents with fewer
    edges. Returns the number of distinct edges written.
    """
    out = _edges_file(task.work_dir, task.partition)
    if out.exists():
        return len(np.load(out, mmap_mode="r"))
    paths = [_partition_file(task.work_dir, task.partition, i) for i in range(task.inputs)]
    sizes = [len(np.load(path, mmap_mode="r")) for path in paths]
    starts = [0] * len(paths)
    src: list[np.ndarray] = []
    dst: list[np.ndarray] = []
    # Each file is sorted by hash: a window of the hash range is one slice of each file, and a
    # bucket (one hash) lies in one window. Mapped files are dropped once their slice is copied.
    for upper in hash_windows(sum(sizes), task.window_rows):
        pieces = []
        for i, path in enumerate(paths):
            mapped = np.load(path, mmap_mode="r")
            stop = sorted_slice(mapped["hash"], starts[i], upper)
            if stop > starts[i]:
                pieces.append(np.array(mapped[starts[i] : stop]))
            starts[i] = stop
            del mapped
        if not pieces:
            continue
        records = np.concatenate(pieces)
        del pieces
        records = records[np.lexsort((records["doc"], records["hash"], records["band"]))]
        band, hashes, doc = records["band"], records["hash"], records["doc"]
        first = np.r_[True, (band[1:] != band[:-1]) | (hashes[1:] != hashes[:-1])]
        # Each row's bucket head: the running maximum of the positions of bucket starts.
        head = np.maximum.accumulate(np.where(first, np.arange(len(records)), 0))
        member = ~first
        src.append(doc[head[member]])
        dst.append(doc[member])
    assert starts == sizes, "every row falls in one window"
    if src:
        edges = _unique_pairs(np.concatenate(src), np.concatenate(dst))
    else:
        edges = np.empty((0, 2), dtype=np.int64)
    _save_npy(out, edges)
    return len(edges)


def connected_components(src: np.ndarray, dst: np.ndarray, nodes: int) -> np.ndarray:
    """Union-find over edges between node indices 0..nodes-1, vectorised: the root of every
    node, which is the smallest node index of its component.

    Each round hooks every root that has an edge to a smaller root onto the smallest such
    root (union by smallest label: a root only ever points lower, so no cycles and the result
    does not depend on edge order), then halves paths until every node points at its root
    (path compression by pointer jumping). Rounds end when every edge joins equal roots.

    >>> connected_components(np.array([3, 1, 4]), np.array([1, 0, 5]), 7).tolist()
    [0, 0, 2, 0, 4, 4, 6]
    """
    parent = np.arange(nodes, dtype=np.int64)
    while True:
        root_a, root_b = parent[src], parent[dst]
        apart = root_a != root_b
        if not apart.any():
            return parent
        high = np.maximum(root_a[apart], root_b[apart])
        low = np.minimum(root_a[apart], root_b[apart])
        np.minimum.at(parent, high, low)
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def rank_task(task: RankTask) -> tuple[int, np.ndarray, list[Any], list[Any]]:
    """Stage 4: `id` and `rank` of some rows of one input file, reading only those two columns
    and only the row groups that hold the rows."""
    parquet = pq.ParquetFile(task.path)
    ids: list[Any] = []
    ranks: list[Any] = []
    group_start = 0
    for group in range(parquet.metadata.num_row_groups):
        group_rows = parquet.metadata.row_group(group).num_rows
        lo, hi = np.searchsorted(task.rows, [group_start, group_start + group_rows])
        if hi > lo:
            table = parquet.read_row_group(group, columns=["id", "rank"])
            taken = table.take(pa.array(task.rows[lo:hi] - group_start))
            ids.extend(taken.column("id").to_pylist())
            ranks.extend(taken.column("rank").to_pylist())
        group_start += group_rows
    return task.index, task.rows, ids, ranks


def _check_inputs(inputs: list[Path]) -> None:
    for path in inputs:
        try:
            schema = pq.read_schema(path)
            rows = pq.ParquetFile(path).metadata.num_rows
        except (OSError, pa.ArrowInvalid) as error:
            raise UserError(f"{path}: not a readable Parquet file ({error})") from None
        for column in ("id", "content", "rank"):
            index = schema.get_field_index(column)
            if index < 0:
                raise UserError(
                    f"{path}: no `{column}` column; near-dedup needs string columns id, "
                    "content and rank (lower rank wins)"
                )
            kind = schema.field(index).type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                raise UserError(f"{path}: column `{column}` is {kind}, not a string; cast it")
        if rows >= 1 << 32:
            raise UserError(f"{path}: {rows} rows; split it into files of fewer than 2^32 rows")
    if len(inputs) >= 1 << 31:
        raise UserError("near_duplicates takes fewer than 2^31 input files; merge some")


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


def _prepare(inputs: list[Path], work_dir: Path, params: MinHashParams) -> None:
    """Keep earlier stage files only if they were made from the same inputs and parameters."""
    state = {
        "format_version": _FORMAT_VERSION,
        "params": asdict(params),
        "inputs": input_stamps(inputs),
    }
    marker = work_dir / "neardup.json"
    if not stage_is_current(marker, state):
        for name in ("signatures", "edges", "clusters.npy"):
            target = work_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        work_dir.mkdir(parents=True, exist_ok=True)
        write_json(marker, state)


def near_duplicates(
    inputs: list[Path], work_dir: Path, params: MinHashParams, executor: Any
) -> NearDupResult:
    """Find near-duplicate rows across Parquet files with columns `id`, `content`, `rank`.

    Runs the four stages (see the module docstring) with `executor.map_unordered`; the result
    does not depend on the executor, its worker count, or the order tasks finish. For example,
    with rows a (rank "1") and b (rank "0") whose contents differ in one token out of 300, and
    c unrelated: duplicates == {"a": ("a", "b")} (cluster id a, survivor b), cluster_sizes ==
    {2: 1}.
    """
    inputs = [Path(p) for p in inputs]
    work_dir = Path(work_dir)
    _check_inputs(inputs)
    _prepare(inputs, work_dir, params)

    bands, _ = params.band_rows()
    partitions = params.partitions or partition_count(
        bands * sum(pq.read_metadata(p).num_rows for p in inputs)
    )
    tasks = [SignatureTask(i, p, work_dir, params, partitions) for i, p in enumerate(inputs)]
    list(executor.map_unordered(signature_task, tasks))
    buckets = [BucketTask(p, len(inputs), work_dir) for p in range(partitions)]
    list(executor.map_unordered(bucket_task, buckets))

    edges = [np.load(_edges_file(work_dir, p)) for p in range(partitions)]
    edges = np.concatenate(edges) if edges else np.empty((0, 2), dtype=np.int64)
    # The same pair can come from several bands, so from several partitions.
    edges = _unique_pairs(edges[:, 0], edges[:, 1])
    nodes, index = np.unique(edges, return_inverse=True)
    index = index.reshape(edges.shape)
    roots = connected_components(index[:, 0], index[:, 1], len(nodes))
    candidate_pairs = len(edges)
    del edges, index  # freed before the ids and ranks of the linked rows come in
    clusters = np.empty(len(nodes), dtype=CLUSTER_DTYPE)
    clusters["doc"], clusters["root"] = nodes, nodes[roots]
    _save_npy(work_dir / "clusters.npy", clusters)

    file_of = nodes >> 32
    rank_tasks = []
    for file in np.unique(file_of).tolist():
        rows = np.sort(nodes[file_of == file] & 0xFFFFFFFF)
        rank_tasks.append(RankTask(file, inputs[file], rows))
    ids: list[Any] = [None] * len(nodes)
    ranks: list[Any] = [None] * len(nodes)
    for file, rows, got_ids, got_ranks in executor.map_unordered(rank_task, rank_tasks):
        positions = np.searchsorted(nodes, (np.int64(file) << 32) | rows)
        for position, id_, rank in zip(positions.tolist(), got_ids, got_ranks, strict=True):
            ids[position], ranks[position] = id_, rank
    return _choose_survivors(nodes, roots, ids, ranks, inputs, candidate_pairs)


def _choose_survivors(
    nodes: np.ndarray,
    roots: np.ndarray,
    ids: list[Any],
    ranks: list[Any],
    inputs: list[Path],
    candidate_pairs: int,
) -> NearDupResult:
    duplicates: dict[str, tuple[str, str]] = {}
    sizes: dict[int, int] = {}
    if len(nodes) == 0:
        return NearDupResult(duplicates={}, cluster_sizes={}, candidate_pairs=candidate_pairs)
    # The result is keyed by id, so the linked rows' ids must name one row each.
    seen: dict[str, int] = {}
    for m, id_ in enumerate(ids):
        doc = int(nodes[m])
        where = f"{inputs[doc >> 32]}: row {doc & 0xFFFFFFFF}"
        if id_ is None:
            raise UserError(f"{where} has a null id; give every row an id")
        if seen.setdefault(id_, m) != m:
            raise UserError(
                f"{where}: id {id_!r} names more than one row; near_duplicates needs a unique "
                "id per row"
            )
    order = np.argsort(roots, kind="stable")
    bounds = np.flatnonzero(np.r_[True, roots[order][1:] != roots[order][:-1], True])
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        members = order[lo:hi].tolist()
        member_ids = [ids[m] for m in members]
        # Lower rank wins; a null rank loses to any rank; ties go to the smaller id.
        survivor = min(members, key=lambda m: (ranks[m] is None, ranks[m] or "", ids[m]))
        cluster_id = min(member_ids)
        for m in members:
            if m != survivor:
                duplicates[ids[m]] = (cluster_id, ids[survivor])
        sizes[len(members)] = sizes.get(len(members), 0) + 1
    return NearDupResult(
        duplicates=dict(sorted(duplicates.items())),
        cluster_sizes=dict(sorted(sizes.items())),
        candidate_pairs=candidate_pairs,
    )
