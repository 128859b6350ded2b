"""Exact deduplication by hash-partitioned files, so memory follows a bounded window of one
partition (and the duplicates found), never the whole corpus.

Inputs are Parquet files with string columns `id`, `dedup_hash` (hex digest of the content)
and `rank` (lower wins). Two stages, each a set of tasks on an executor, files in `work_dir`:

    pNNN/fNNNNNN.arrow   stage 1, one task per input file: (key, id, rank) rows of that file
                         whose key falls in partition NNN, sorted by key; the key is the first
                         128 bits of `dedup_hash`, as two uint64 (k1, k2), partition k1 mod P
    dups/pNNN.parquet    stage 2, one task per partition: (id, survivor) of every duplicate

Stage 2 reads its partition in windows of the k1 range that hold at most `window_rows` rows
(each file is sorted, so a window is one slice of each), sorts a window by (k1, k2, rank, id)
and keeps the first row of each key. A key lives in one window, so the result is the same for
any partition count and window size.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from codekiln.curate.stagefiles import hash_windows, input_stamps, sorted_slice, stage_is_current
from codekiln.manifest import atomic_path, write_json

_FORMAT_VERSION = 1
# Rows of one partition sorted at once: ~150 bytes a row (two keys, id, rank) before the sort's
# copies, so a window stays under ~50 MB whatever the corpus.
WINDOW_ROWS = 1 << 17
# Candidates per partition that decide the partition count (at least 16, for parallelism).
PARTITION_ROWS = 1 << 22

_SCHEMA = pa.schema(
    [("k1", pa.uint64()), ("k2", pa.uint64()), ("id", pa.string()), ("rank", pa.string())]
)
_DUPS_SCHEMA = pa.schema([("id", pa.string()), ("survivor", pa.string())])


@dataclass(frozen=True)
class PartitionTask:
    """Stage 1 for one input file."""

    index: int
    path: Path
    work_dir: Path
    partitions: int


@dataclass(frozen=True)
class GroupTask:
    """Stage 2 for one partition, over the stage-1 files of `inputs` input files."""

    partition: int
    inputs: int
    work_dir: Path
    window_rows: int = WINDOW_ROWS


def partition_count(rows: int) -> int:
    """Partitions for `rows` candidates: 16, or more so that each holds ~PARTITION_ROWS.

    >>> partition_count(1000), partition_count(10**9)
    (16, 239)
    """
    return min(4096, max(16, math.ceil(rows / PARTITION_ROWS)))


def _part_file(work_dir: Path, partition: int, index: int) -> Path:
    return work_dir / f"p{partition:03d}" / f"f{index:06d}.arrow"


def _done_file(work_dir: Path, index: int) -> Path:
    return work_dir / "done" / f"f{index:06d}"


def _dups_file(work_dir: Path, partition: int) -> Path:
    return work_dir / "dups" / f"p{partition:03d}.parquet"


def _write_arrow(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        atomic_path(path) as tmp,
        pa.OSFile(str(tmp), "wb") as sink,
        pa.ipc.new_file(sink, _SCHEMA) as writer,
    ):
        writer.write_table(table)


def _keys(digests: list[str]) -> np.ndarray:
    """The first 128 bits of hex digests as (N, 2) uint64, in the digests' string order."""
    raw = b"".join(bytes.fromhex(d[:32]) for d in digests)
    return np.frombuffer(raw, dtype=">u8").reshape(-1, 2).astype(np.uint64)


def partition_task(task: PartitionTask) -> int:
    """Stage 1: split one input file's (key, id, rank) rows by partition; returns its rows."""
    done = _done_file(task.work_dir, task.index)
    if done.exists():
        return int(done.read_text())
    table = pq.read_table(task.path, columns=["id", "dedup_hash", "rank"])
    keys = _keys(table.column("dedup_hash").to_pylist())
    k1 = keys[:, 0] if len(keys) else np.empty(0, dtype=np.uint64)
    k2 = keys[:, 1] if len(keys) else np.empty(0, dtype=np.uint64)
    part = (k1 % np.uint64(task.partitions)).astype(np.int64)
    order = np.lexsort((k1, part))
    bounds = np.searchsorted(part[order], np.arange(task.partitions + 1))
    rows = pa.table(
        [pa.array(k1), pa.array(k2), table.column("id"), table.column("rank")], schema=_SCHEMA
    )
    for p in range(task.partitions):
        taken = rows.take(pa.array(order[bounds[p] : bounds[p + 1]])).combine_chunks()
        _write_arrow(_part_file(task.work_dir, p, task.index), taken)
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(f"{len(keys)}\n")
    return len(keys)


def _open(path: Path) -> pa.Table:
    """A stage-1 file, memory-mapped: slicing it reads only the slice."""
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def _column(table: pa.Table, name: str) -> np.ndarray:
    """A uint64 column as numpy, without a copy when it is one chunk (a mapped file)."""
    column = table.column(name)
    if column.num_chunks == 1:
        return column.chunk(0).to_numpy()
    return column.to_numpy()


def group_task(task: GroupTask) -> int:
    """Stage 2: the duplicates of one partition; returns how many."""
    out = _dups_file(task.work_dir, task.partition)
    if out.exists():
        return pq.read_metadata(out).num_rows
    paths = [_part_file(task.work_dir, task.partition, i) for i in range(task.inputs)]
    sizes = [_open(p).num_rows for p in paths]
    found: list[pa.Table] = []
    starts = [0] * len(paths)
    for upper in hash_windows(sum(sizes), task.window_rows):
        pieces = []
        for i, path in enumerate(paths):
            table = _open(path)
            stop = sorted_slice(_column(table, "k1"), starts[i], upper)
            if stop > starts[i]:
                pieces.append(table.slice(starts[i], stop - starts[i]))
            starts[i] = stop
            del table  # unmaps the file once the slice is copied below
        if not pieces:
            continue
        window = pa.concat_tables(pieces).combine_chunks()
        del pieces
        window = window.sort_by(
            [("k1", "ascending"), ("k2", "ascending"), ("rank", "ascending"), ("id", "ascending")]
        )
        k1, k2 = window.column("k1").to_numpy(), window.column("k2").to_numpy()
        first = np.r_[True, (k1[1:] != k1[:-1]) | (k2[1:] != k2[:-1])]
        if first.all():
            continue
        head = np.maximum.accumulate(np.where(first, np.arange(len(first)), 0))
        member = np.flatnonzero(~first)
        ids = window.column("id")
        found.append(
            pa.table(
                [ids.take(pa.array(member)), ids.take(pa.array(head[member]))],
                schema=_DUPS_SCHEMA,
            )
        )
    assert starts == sizes, "every row falls in one window"
    dups = pa.concat_tables(found) if found else _DUPS_SCHEMA.empty_table()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        pq.write_table(dups, tmp)
    return dups.num_rows


def _prepare(inputs: list[Path], work_dir: Path, partitions: int) -> None:
    """Keep earlier stage files only if they were made from the same inputs and partitions."""
    state = {
        "format_version": _FORMAT_VERSION,
        "partitions": partitions,
        "inputs": input_stamps(inputs),
    }
    marker = work_dir / "exactdup.json"
    if not stage_is_current(marker, state):
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True, exist_ok=True)
        write_json(marker, state)


def exact_duplicates(
    inputs: list[Path],
    work_dir: Path,
    executor: Any,
    partitions: int | None = None,
    window_rows: int = WINDOW_ROWS,
) -> dict[str, str]:
    """Map every exact duplicate's id to its survivor's id: among rows of equal `dedup_hash`,
    the one with the smallest (rank, id). The result does not depend on the executor, the
    partition count (default: `partition_count` of the rows) or the window size. Holds only
    the duplicates in this process.
    """
    table = exact_duplicate_table(inputs, work_dir, executor, partitions, window_rows)
    return dict(
        zip(table.column("id").to_pylist(), table.column("survivor").to_pylist(), strict=True)
    )


def exact_duplicate_table(
    inputs: list[Path],
    work_dir: Path,
    executor: Any,
    partitions: int | None = None,
    window_rows: int = WINDOW_ROWS,
) -> pa.Table:
    """`exact_duplicates` as a table of (id, survivor) rows, in partition order: Arrow
    strings, without a Python object per id."""
    inputs = [Path(p) for p in inputs]
    work_dir = Path(work_dir)
    if partitions is None:
        partitions = partition_count(sum(pq.read_metadata(p).num_rows for p in inputs))
    _prepare(inputs, work_dir, partitions)
    tasks = [PartitionTask(i, p, work_dir, partitions) for i, p in enumerate(inputs)]
    list(executor.map_unordered(partition_task, tasks))
    groups = [GroupTask(p, len(inputs), work_dir, window_rows) for p in range(partitions)]
    list(executor.map_unordered(group_task, groups))
    tables = []
    for p in range(partitions):
        # One file at a time, on this thread: no reader threads, each with its own heap.
        tables.append(pq.ParquetFile(_dups_file(work_dir, p)).read(use_threads=False))
    if not tables:
        return _DUPS_SCHEMA.empty_table()
    return pa.concat_tables(tables).combine_chunks()
