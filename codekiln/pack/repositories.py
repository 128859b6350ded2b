"""Reading curated shards by repository, for StarCoder2's repository-level documents.

A repository's records may be anywhere in the shards, and a document needs all of them. The
first pass (`index_repositories`) reads only the `repo` column, a row group at a time, and
keeps where each record is (shard, row group, row) and its repository's key: the input
position of the repository's first record. `RepoIndex.batches` cuts that into batches of
whole repositories in order of their first record; a worker reads its batch's records with
`read_rows`, which reads only the row groups that hold them and keeps the last ones read
(`RowGroups`) for the next batch. So memory stays flat: the index holds a few integers a
record and no records; a worker holds its batch's records and at most its row-group budget.

`COLUMNS` are the columns of a curated record that packing reads, in either layout.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# The columns of a curated record (curate/pipeline.py RECORD_SCHEMA) that packing reads.
COLUMNS = ("id", "content", "repo", "path", "lang", "stars")


@dataclass
class RepoBatch:
    """Whole repositories, as the locations of their records (starcoder2)."""

    index: int
    where: np.ndarray  # (3, n): shard, row group and row of each record
    keys: np.ndarray  # (n,): the record's repository; one repository's records are adjacent
    valid: np.ndarray  # (n,) bool


def repository_names(files: list[Path]) -> set[str]:
    """The repositories of the records in `files` ("" for records without one): what the
    split needs in the record-level layouts, which have no index."""
    repos: set[str] = set()
    for path in files:
        column = pq.read_table(path, columns=["repo"])["repo"]
        repos.update(r or "" for r in pc.unique(column).to_pylist())
    return repos


@dataclass
class RepoIndex:
    """Where every record is, and its repository, without the records (starcoder2)."""

    where: np.ndarray  # (3, n) int32: shard, row group, row
    keys: np.ndarray  # (n,) int64: the input position of the repository's first record
    codes: np.ndarray  # (n,) int32: the repository's name, as a position in `names`
    names: list[str]  # "" for records without a repository

    def batches(self, batch_records: int, valid: set[str]) -> list[RepoBatch]:
        """Batches of whole repositories, in order of their first record, of at least
        `batch_records` records (but the last); a repository is never split. Sorting by
        the first record's position groups a repository's records wherever they are.

        >>> keys, codes = np.array([0, 1, 0, 3, 1]), np.array([0, 1, 0, 2, 1], np.int32)
        >>> index = RepoIndex(np.zeros((3, 5), np.int32), keys, codes, ["a/x", "b/y", ""])
        >>> [(b.keys.tolist(), b.valid.tolist()) for b in index.batches(2, {"b/y"})]
        [([0, 0], [False, False]), ([1, 1], [True, True]), ([3], [False])]
        """
        order = np.argsort(self.keys, kind="stable")
        keys = self.keys[order]
        flags = np.array([name in valid for name in self.names], dtype=bool)[self.codes[order]]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]).tolist()
        bounds = [0]
        for end in [*starts[1:], len(keys)]:
            if end - bounds[-1] >= batch_records or end == len(keys):
                bounds.append(end)
        return [
            RepoBatch(i, self.where[:, order[a:b]], keys[a:b], flags[a:b])
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
        ]


def index_repositories(files: list[Path]) -> RepoIndex:
    """One pass over the `repo` column, a row group at a time. A record without a
    repository is a repository of its own (keyed by its own position)."""
    first_seen: dict[str, int] = {}
    code_of: dict[str, int] = {}
    where, keys, codes = [], [], []
    offset = 0
    for file_index, path in enumerate(files):
        shard = pq.ParquetFile(path)
        try:
            for group in range(shard.num_row_groups):
                column = shard.read_row_group(group, columns=["repo"]).column("repo")
                count = len(column)
                if not count:
                    continue
                encoded = pc.dictionary_encode(pc.fill_null(column.combine_chunks(), ""))
                indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
                values = encoded.dictionary.to_pylist()
                # Every dictionary value occurs, so np.unique's k-th first index is value k's.
                first = np.unique(indices, return_index=True)[1]
                value_keys = [
                    first_seen.setdefault(value, offset + int(position))
                    for value, position in zip(values, first, strict=True)
                ]
                row_keys = np.array(value_keys, dtype=np.int64)[indices]
                if "" in values:
                    alone = np.flatnonzero(indices == values.index(""))
                    row_keys[alone] = offset + alone
                value_codes = [code_of.setdefault(v, len(code_of)) for v in values]
                codes.append(np.array(value_codes, dtype=np.int32)[indices])
                keys.append(row_keys)
                rows = np.arange(count, dtype=np.int32)
                where.append(
                    np.stack(
                        [
                            np.full(count, file_index, np.int32),
                            np.full(count, group, np.int32),
                            rows,
                        ]
                    )
                )
                offset += count
        finally:
            shard.close()
    return RepoIndex(
        np.concatenate(where, axis=1) if where else np.zeros((3, 0), np.int32),
        np.concatenate(keys) if keys else np.zeros(0, np.int64),
        np.concatenate(codes) if codes else np.zeros(0, np.int32),
        list(code_of),
    )


class RowGroups:
    """The row groups a process read last, up to `budget` bytes, and its open shards.

    A repository's records are usually together (curate writes a source's files in order),
    so consecutive batches mostly need the same row groups; where repositories are spread
    over the shards, a batch needs many, and keeping them saves reading them again for the
    next batch. Open shards keep their parsed footers. The sha256 in each key makes a
    rewritten shard a miss."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._tables: OrderedDict[tuple[str, str, int], pa.Table] = OrderedDict()
        self._files: OrderedDict[tuple[str, str], pq.ParquetFile] = OrderedDict()
        self._bytes = 0

    def get(self, path: str, sha256: str, group: int) -> pa.Table:
        key = (path, sha256, group)
        table = self._tables.get(key)
        if table is not None:
            self._tables.move_to_end(key)
            return table
        table = self._file(path, sha256).read_row_group(group, columns=list(COLUMNS))
        self._tables[key] = table
        self._bytes += table.nbytes
        while self._bytes > self.budget and len(self._tables) > 1:
            self._bytes -= self._tables.popitem(last=False)[1].nbytes
        return table

    def _file(self, path: str, sha256: str) -> pq.ParquetFile:
        key = (path, sha256)
        if key not in self._files:
            self._files[key] = pq.ParquetFile(path)
            if len(self._files) > 64:  # open files are few: a batch touches a handful
                self._files.popitem(last=False)[1].close()
        self._files.move_to_end(key)
        return self._files[key]

    def clear(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._tables.clear()
        self._files.clear()
        self._bytes = 0


ROW_GROUPS = RowGroups(budget=256 << 20)  # per process: each worker has its own


def read_rows(shards: tuple[tuple[str, str], ...], where: np.ndarray) -> dict[str, list]:
    """COLUMNS -> one value per located record, in the order of `where`, reading only the
    row groups that hold them."""
    columns: dict[str, list[Any]] = {name: [None] * where.shape[1] for name in COLUMNS}
    groups = where[0].astype(np.int64) << 32 | where[1].astype(np.int64)
    for key in dict.fromkeys(groups.tolist()):
        positions = np.flatnonzero(groups == key)
        shard, group = key >> 32, key & 0xFFFFFFFF
        table = ROW_GROUPS.get(*shards[shard], group).take(where[2, positions])
        for name in COLUMNS:
            values = columns[name]
            found = table.column(name).to_pylist()
            for position, value in zip(positions.tolist(), found, strict=True):
                values[position] = value
    return columns
