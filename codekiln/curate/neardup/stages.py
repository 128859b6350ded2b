"""Near-duplicate clusters over Parquet files, as tasks on an executor.

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

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from codekiln.curate.neardup.headers import strip_leading_header
from codekiln.curate.neardup.minhash import (
    TOKEN_CACHE,
    MinHash,
    band_hashes,
    min_hashes,
    shingle_set,
)
from codekiln.curate.stagefiles import hash_windows, input_stamps, sorted_slice, stage_is_current
from codekiln.errors import UserError
from codekiln.manifest import atomic_path, write_json

_TEXT_BATCH = 1024  # rows of `content` read at once by a signature task
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


def partition_count(band_rows: int) -> int:
    """Partitions for stage 2: 16 (parallel work), or more so each holds ~PARTITION_ROWS.

    >>> partition_count(25 * 10**6), partition_count(25 * 10**9)
    (16, 1491)
    """
    return min(4096, max(16, -(-band_rows // PARTITION_ROWS)))


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
    params: MinHash
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
    cache = TOKEN_CACHE  # shared by the tasks a worker runs: most tokens recur across files
    hashes, docs = [], []
    first_row = 0
    parquet = pq.ParquetFile(task.path)
    for batch in parquet.iter_batches(batch_size=_TEXT_BATCH, columns=["content"]):
        texts = [strip_leading_header(t) if t else t for t in batch.column(0).to_pylist()]
        sets = [shingle_set(text, params.ngram, cache) for text in texts]
        keep = np.flatnonzero([len(s) > 0 for s in sets])
        signatures = min_hashes([sets[i] for i in keep], params.num_perm, params.seed)
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


def _prepare(inputs: list[Path], work_dir: Path, params: MinHash) -> None:
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
    inputs: list[Path], work_dir: Path, params: MinHash, executor: Any
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
