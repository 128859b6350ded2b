"""Build an attribution index from curated shards: `codekiln attribution build DATA -o INDEX`.

Work is cut into tasks of about TASK_BYTES of content (consecutive row groups of one shard).
A worker reads its task's `content` and metadata, normalises the documents laid end to end,
and hashes the grams stored for each (offsets 0, stride, 2 * stride, ... in every normalised
document). The main process takes the results in task order, so document rows, and every
byte written, are the same for any number of workers. It then sizes the Bloom filter from the
number of distinct grams, fills it, and sorts the source table.

An index folder holds:

- `bloom.npy`: the Bloom filter (uint64 words), the Data Portraits artefact;
- `sources.npy`: the source table (sources.py), unless `source_table` is off;
- `documents.parquet`: one row per indexed record, in row order: `id`, `repo`, `path`,
  `license`;
- `manifest.json`, written last: config, input shard hashes, counts, sizes and timings.

Memory: the main process holds every stored gram's hash and document row (16 bytes per
stored gram, about 7 MB for the 31 MB standard library) while it builds; a worker hashes
HASH_CHARS characters at a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codekiln.attribution.bloom import BloomFilter, expected_false_positive_rate
from codekiln.attribution.config import AttributionConfig
from codekiln.attribution.grams import code_points, normalise_codes, stored_starts, window_hashes
from codekiln.attribution.sources import doc_bits_for, source_keys
from codekiln.errors import UserError
from codekiln.executor import LocalExecutor
from codekiln.manifest import (
    atomic_path,
    begin_stage,
    file_sha256,
    fingerprint,
    package_versions,
    write_manifest,
)
from codekiln.progress import StageProgress
from codekiln.shards import curated_shards

STAGE = "attribution"
FORMAT_VERSION = 1
BLOOM_FILE = "bloom.npy"
SOURCES_FILE = "sources.npy"
DOCUMENTS_FILE = "documents.parquet"
METADATA = ("id", "repo", "path", "license")  # curated columns a source names; may be absent
TASK_BYTES = 4_000_000
HASH_CHARS = 2_000_000  # characters hashed at once: about 40 bytes of arrays each

_DOCUMENT_SCHEMA = pa.schema([(name, pa.string()) for name in METADATA])


@dataclass
class IndexResult:
    out_dir: Path
    manifest: dict[str, Any]
    skipped: bool = False  # the index was already built from the same data and config

    @property
    def counts(self) -> dict[str, int]:
        return self.manifest["counts"]

    @property
    def sizes(self) -> dict[str, Any]:
        return self.manifest["sizes"]


@dataclass(frozen=True)
class _Task:
    index: int
    path: str
    row_groups: tuple[int, ...]
    columns: tuple[str, ...]
    config: AttributionConfig


@dataclass
class _Hashed:
    index: int
    hashes: np.ndarray  # uint64, one per stored gram
    rows: np.ndarray  # int64: the task-local document of each gram
    documents: pa.Table  # METADATA columns, one row per record with content
    records: int  # rows read
    skipped: int  # rows without content (null)
    content_bytes: int  # UTF-8 bytes of the documents
    characters: int
    normalised_characters: int
    short: int  # documents too short for one gram


def hash_documents(
    texts: list[str], config: AttributionConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hash the grams stored for each text; return (hashes, the text each came from, the
    normalised length of each text).

    >>> config = AttributionConfig(width=8, stride=8)
    >>> texts = ["x = 1 + 2 + 3 + 4", "short", "x=1+2+3+4+5+6+7+8"]
    >>> hashes, rows, lengths = hash_documents(texts, config)
    >>> rows.tolist(), lengths.tolist()
    ([0, 2, 2], [9, 5, 17])
    >>> bool(hashes[0] == hashes[1])  # both are the gram "x=1+2+3+"
    True
    """
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths)
    codes, origin = normalise_codes(
        code_points("".join(texts)), config.whitespace, config.lowercase, breaks=ends - lengths
    )
    bounds = np.searchsorted(origin, np.concatenate([[0], ends]))
    normalised = np.diff(bounds)
    starts = stored_starts(normalised, config.width, config.stride)
    rows = np.searchsorted(bounds, starts, "right") - 1
    return window_hashes(codes, config.width, starts), rows, normalised


def _hash_in_chunks(
    texts: list[str], config: AttributionConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """hash_documents over runs of whole texts of about HASH_CHARS, so that memory stays
    bounded whatever the size of a row group."""
    parts, first, size = [], 0, 0
    for i, text in enumerate(texts):
        size += len(text)
        if size >= HASH_CHARS or i == len(texts) - 1:
            hashes, rows, normalised = hash_documents(texts[first : i + 1], config)
            parts.append((hashes, rows + first, normalised))
            first, size = i + 1, 0
    if not parts:
        return hash_documents([], config)
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))  # type: ignore[return-value]


def _plan(files: list[Path], config: AttributionConfig) -> tuple[list[_Task], int]:
    """Tasks of consecutive row groups, and the number of records; checks every shard opens."""
    tasks: list[_Task] = []
    records = 0
    for path in files:
        try:
            meta = pq.ParquetFile(path).metadata
        except (pa.ArrowException, OSError) as exc:
            raise UserError(
                f"{path} is not a readable Parquet file ({exc}); run `codekiln curate` again"
            ) from None
        names = meta.schema.to_arrow_schema().names
        if "content" not in names:
            raise UserError(
                f"{path} is not a curated shard: it has no `content` column; give the folder "
                "`codekiln curate` wrote"
            )
        columns = ("content", *(c for c in METADATA if c in names))
        content = names.index("content")
        group, groups = [], meta.num_row_groups
        used = 0
        for g in range(groups):
            group.append(g)
            used += meta.row_group(g).column(content).total_uncompressed_size
            if used >= TASK_BYTES or g == groups - 1:
                tasks.append(_Task(len(tasks), str(path), tuple(group), columns, config))
                group, used = [], 0
        records += meta.num_rows
    return tasks, records


def _read(task: _Task) -> pa.Table:
    try:
        return pq.ParquetFile(task.path).read_row_groups(
            list(task.row_groups), columns=list(task.columns)
        )
    except (pa.ArrowException, OSError) as exc:
        raise UserError(
            f"{task.path}: row groups {task.row_groups[0]}-{task.row_groups[-1]} cannot be read "
            f"({exc}); run `codekiln curate` again"
        ) from None


def _hash_task(task: _Task) -> _Hashed:
    table = _read(task)
    records = table.num_rows
    table = table.filter(pc.is_valid(table.column("content")))
    content = table.column("content")
    if not pa.types.is_string(content.type) and not pa.types.is_large_string(content.type):
        raise UserError(f"{task.path}: `content` is {content.type}, not text; curate it first")
    texts = content.to_pylist()
    hashes, rows, normalised = _hash_in_chunks(texts, task.config)
    documents = pa.table(
        {
            name: (
                table.column(name).cast(pa.string())
                if name in table.column_names
                else pa.nulls(table.num_rows, pa.string())
            )
            for name in METADATA
        },
        schema=_DOCUMENT_SCHEMA,
    )
    return _Hashed(
        index=task.index,
        hashes=hashes,
        rows=rows,
        documents=documents,
        records=records,
        skipped=records - table.num_rows,
        content_bytes=int(pc.sum(pc.binary_length(content)).as_py() or 0),
        characters=sum(len(t) for t in texts),
        normalised_characters=int(normalised.sum()),
        short=int((normalised < task.config.width).sum()),
    )


def _save_npy(path: Path, array: np.ndarray) -> None:
    # np.save(path) would append ".npy" to the temporary name.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def _save_parquet(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def build_index(
    data: str | Path,
    out_dir: str | Path,
    config: AttributionConfig | None = None,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
) -> IndexResult:
    """Index the curated shards in `data` into `out_dir`.

    Re-running with the same data and config does nothing (`skipped`); other data or settings
    need `force`. The output is the same, byte for byte, for any `workers`.
    """
    config = config or AttributionConfig()
    data, out_dir = Path(data), Path(out_dir)
    started = time.time()
    files = curated_shards(data)
    shards = {p.name: file_sha256(p) for p in files}
    request = fingerprint(
        {"format_version": FORMAT_VERSION, "config": config.to_dict(), "shards": shards}
    )
    holds = "an attribution index of other data or settings"
    previous = begin_stage(out_dir, STAGE, request, force, holds, inputs=(data,))
    if previous is not None:
        return IndexResult(out_dir, previous, skipped=True)
    tasks, total_records = _plan(files, config)
    if not tasks:
        raise UserError(f"{data} holds no records: nothing to index")

    clock = time.time()
    results: list[_Hashed] = [None] * len(tasks)  # type: ignore[list-item]
    bar = StageProgress("attribution", total_records, "records", progress)
    with LocalExecutor(min(workers, len(tasks))) as pool, bar:
        for result in pool.map_unordered(_hash_task, tasks):
            results[result.index] = result
            bar.advance(result.records, records=result.records, bytes=result.content_bytes)
    documents = pa.concat_tables([r.documents for r in results])
    if documents.num_rows == 0:
        raise UserError(f"{data} holds no records with content: nothing to index")
    offsets = np.cumsum([0] + [r.documents.num_rows for r in results])
    hashes = np.concatenate([r.hashes for r in results])
    rows = np.concatenate([r.rows + offsets[i] for i, r in enumerate(results)])
    timings = {"hash_s": time.time() - clock}

    clock = time.time()
    distinct = np.unique(hashes)
    bloom = BloomFilter.empty(len(distinct), config.false_positive_rate)
    bloom.add(distinct)
    doc_bits = doc_bits_for(documents.num_rows)
    if doc_bits > 32:
        raise UserError(f"{documents.num_rows:,} documents is more than one index holds (2^32)")
    keys = source_keys(hashes, rows, doc_bits) if config.source_table else None
    timings["index_s"] = time.time() - clock

    _save_npy(out_dir / BLOOM_FILE, bloom.words)
    (out_dir / SOURCES_FILE).unlink(missing_ok=True)
    if keys is not None:
        _save_npy(out_dir / SOURCES_FILE, keys)
    _save_parquet(out_dir / DOCUMENTS_FILE, documents)
    outputs = {
        name: (out_dir / name).stat().st_size
        for name in (BLOOM_FILE, SOURCES_FILE, DOCUMENTS_FILE)
        if (out_dir / name).exists()
    }
    timings["total_s"] = time.time() - started

    corpus_bytes = sum(r.content_bytes for r in results)
    entries = 0 if keys is None else len(keys)
    manifest = write_manifest(
        out_dir,
        STAGE,
        index_format=FORMAT_VERSION,
        request=request,
        config=config.to_dict(),
        inputs={"data": str(data), "shards": shards},
        outputs=outputs,
        counts={
            "records": sum(r.records for r in results),
            "skipped_records": sum(r.skipped for r in results),
            "documents": documents.num_rows,
            "short_documents": sum(r.short for r in results),
            "characters": sum(r.characters for r in results),
            "normalised_characters": sum(r.normalised_characters for r in results),
            "grams": len(hashes),
            "distinct_grams": len(distinct),
            "source_entries": entries,
        },
        bloom={
            "bits": bloom.bits,
            "hashes": bloom.hashes,
            "expected_false_positive_rate": expected_false_positive_rate(
                bloom.bits, bloom.hashes, len(distinct)
            ),
            "fill_ratio": round(bloom.fill_ratio(), 4),
        },
        sources={
            "doc_bits": doc_bits,
            "false_match_rate": entries / 2.0 ** (64 - doc_bits),
        },
        sizes={
            "corpus_bytes": corpus_bytes,
            "bloom_bytes": outputs[BLOOM_FILE],
            "index_bytes": sum(outputs.values()),
            "bloom_fraction": outputs[BLOOM_FILE] / max(corpus_bytes, 1),
            "index_fraction": sum(outputs.values()) / max(corpus_bytes, 1),
        },
        workers=workers,
        versions=package_versions("numpy", "pyarrow"),
        timings={k: round(v, 3) for k, v in timings.items()},
    )
    return IndexResult(out_dir, manifest)
