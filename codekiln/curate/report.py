"""The curate report: every number is a sum over the ledger (and, for the bytes kept, over
the shards), so it reconciles by construction.

The ledger and shards are read in batches, aggregated batch by batch; nothing holds a row
per input. The per-repository table is the one aggregate that grows with the corpus (one row
per repository): its partial sums spill to sorted runs on disk past a bound and are merged
back in repository order, keeping only the largest repositories in memory.
"""

from __future__ import annotations

import heapq
import itertools
import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

UNKNOWN = "(unknown)"
TOP_REPOSITORIES = 50
_SPILL_ROWS = 65_536  # partial per-repository rows held in memory before a run is spilled
_RUN_ROWS = 2_048  # a spilled run's row groups: the merge holds one per run
_FAN_IN = 16  # runs of one level merged into one of the next
_TOP_REASONS = 3
_LEDGER_COLUMNS = ["source", "repo", "lang", "kind", "status", "reason", "size", "detail"]
_LEDGER_COLUMNS += ["license", "pii"]
_BATCH_ROWS = 16_384


def _empty() -> dict[str, Any]:
    return {"files_in": 0, "bytes_in": 0, "files_kept": 0, "bytes_kept": 0, "dropped": {}}


def _add(bucket: dict[str, Any], status: str, reason: str | None, files: int, size: int) -> None:
    """Add ledger counts. Kept bytes are not the ledger's: they come from the shards."""
    bucket["files_in"] += files
    bucket["bytes_in"] += size
    if status == "kept":
        bucket["files_kept"] += files
    else:
        slot = bucket["dropped"].setdefault(reason, {"files": 0, "bytes": 0})
        slot["files"] += files
        slot["bytes"] += size


def _batches(paths: Iterable[Path], columns: list[str]) -> Iterator[pa.Table]:
    """The files' rows, one batch at a time. (A pyarrow dataset scan reads ahead without
    bound when the consumer is slower than the reader, and memory grows with the ledger.)"""
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(
            batch_size=_BATCH_ROWS, columns=columns, use_threads=False
        ):
            yield pa.Table.from_batches([batch])


def _sums(table: pa.Table, keys: list[str]) -> list[dict[str, Any]]:
    return (
        table.group_by(keys, use_threads=False)
        .aggregate([("size", "sum"), ("size", "count")])
        .to_pylist()
    )


def build_report(
    ledger_dir: Path,
    shard_paths: Iterable[Path] | None = None,
    top_repositories: int = TOP_REPOSITORIES,
    spill_rows: int = _SPILL_ROWS,
) -> dict[str, Any]:
    """Totals, per language, kind, source and repository (the `top_repositories` largest by
    bytes in, and one row for the others): files and bytes in, kept, dropped per reason; and
    what each step did: PII redactions per type, near-duplicate cluster sizes, contamination
    per benchmark task, files per license.

    Files are counted from the ledger. Bytes in are the inputs' sizes; bytes kept are the
    sizes of the written records (the shards' `size`): a notebook's converted text, a file
    after PII redaction. The shards default to the `part-*.parquet` beside `ledger_dir`.
    """
    from codekiln.curate.examine import REASONS

    ledger_dir = Path(ledger_dir)
    if shard_paths is None:
        shard_paths = sorted(ledger_dir.parent.glob("part-*.parquet"))
    keys = ["source", "lang", "kind", "status", "reason"]
    counts: dict[tuple, list[int]] = {}
    written: dict[tuple, int] = {}
    steps = _StepCounts()
    with _Repositories(top_repositories, spill_rows, ledger_dir.parent) as repositories:
        for table in _batches(sorted(ledger_dir.glob("*.parquet")), _LEDGER_COLUMNS):
            for group in _sums(table, keys):
                slot = counts.setdefault(tuple(group[k] for k in keys), [0, 0])
                slot[0] += group["size_count"]
                slot[1] += group["size_sum"] or 0
            steps.add(table)
            repositories.add(table.select(["repo", "status", "reason", "size"]))
        shard_columns = ["source", "lang", "kind", "repo", "size"]
        for table in _batches(shard_paths, shard_columns):
            for group in _sums(table, ["source", "lang", "kind"]):
                key = (group["source"], group["lang"], group["kind"])
                written[key] = written.get(key, 0) + (group["size_sum"] or 0)
            n = table.num_rows
            repositories.add(
                pa.table(
                    {
                        "repo": table["repo"],
                        "status": pa.array(["written"] * n, pa.string()),
                        "reason": pa.nulls(n, pa.string()),
                        "size": table["size"],
                    }
                )
            )
        repository_rows = repositories.result()

    totals = _empty()
    languages: dict[str, dict[str, Any]] = {}
    kinds: dict[str, dict[str, Any]] = {}
    sources: dict[str, dict[str, Any]] = {}

    def buckets(source: str, lang: str | None, kind: str) -> tuple[dict[str, Any], ...]:
        return (
            totals,
            languages.setdefault(lang or UNKNOWN, _empty()),
            kinds.setdefault(kind, _empty()),
            sources.setdefault(source, _empty()),
        )

    # Sorting makes the report's key order independent of the group-by's order.
    for key in sorted(counts, key=lambda k: tuple(v or "" for v in k)):
        source, lang, kind, status, reason = key
        files, size = counts[key]
        for bucket in buckets(source, lang, kind):
            _add(bucket, status, reason, files, size)
    for (source, lang, kind), size in sorted(written.items(), key=lambda kv: str(kv[0])):
        for bucket in buckets(source, lang, kind):
            bucket["bytes_kept"] += size
    order = {reason: i for i, reason in enumerate(REASONS)}
    for bucket in [totals, *languages.values(), *kinds.values(), *sources.values()]:
        bucket["dropped"] = dict(
            sorted(bucket["dropped"].items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
        )
    remaining = totals["files_in"]
    funnel = [{"step": "inputs", "files": remaining}]
    for reason, slot in totals["dropped"].items():
        remaining -= slot["files"]
        funnel.append({"step": reason, "dropped": slot["files"], "files": remaining})
    return {
        "format_version": 1,
        "totals": totals,
        "languages": dict(by_kept(languages)),
        "kinds": kinds,
        "sources": sources,
        "repositories": repository_rows,
        "funnel": funnel,
        "steps": steps.result(),
    }


def by_kept(buckets: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Buckets with the most files kept first (then most files in, then name): a language
    whose files were mostly dropped does not hide the ones that make up the data. Readers
    sort, since report.json is written with sorted keys.

    >>> [k for k, _ in by_kept({"C": {"files_kept": 1, "files_in": 9},
    ...                         "Go": {"files_kept": 5, "files_in": 5}})]
    ['Go', 'C']
    """
    return sorted(buckets.items(), key=lambda kv: (-kv[1]["files_kept"], -kv[1]["files_in"], kv[0]))


class _Repositories:
    """Per-repository sums from partial (repo, status, reason, size) rows in bounded memory.

    Ledger rows carry status kept/dropped and the input size; shard rows carry status
    "written" and the written size. Partial sums past `spill_rows` go to a run sorted by
    repository in a temporary folder; the runs are merged in repository order, so each
    repository is finished once and only the `top` largest (by bytes in) are held. Every
    `_FAN_IN` runs of one level are merged into one run of the next, so the final merge, which
    holds a row group per run, reads at most `_FAN_IN` runs per level.
    """

    def __init__(self, top: int, spill_rows: int, scratch: Path) -> None:
        self.top = top
        self.spill_rows = spill_rows
        self.scratch = scratch
        self.parts: list[pa.Table] = []
        self.held = 0
        self.runs: list[tuple[int, Path]] = []  # (level, path)
        self._written = 0
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> _Repositories:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def add(self, table: pa.Table) -> None:
        part = _compact([table])
        self.parts.append(part)
        self.held += part.num_rows
        if self.held >= self.spill_rows:
            self._spill()

    def _spill(self) -> None:
        pq.write_table(_compact(self.parts), self._add_run(0), row_group_size=_RUN_ROWS)
        self.parts, self.held = [], 0
        while len(self.runs) >= _FAN_IN and len({lv for lv, _ in self.runs[-_FAN_IN:]}) == 1:
            merged = self.runs[-_FAN_IN:]
            del self.runs[-_FAN_IN:]
            _write_rows(_merge_runs(merged), self._add_run(merged[0][0] + 1))
            for _, old in merged:
                old.unlink()

    def _add_run(self, level: int) -> Path:
        """A new run's path, listed at `level`."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=".report-", dir=self.scratch)
        path = Path(self._tmp.name) / f"run-{self._written:05d}.parquet"
        self._written += 1
        self.runs.append((level, path))
        return path

    def _rows(self) -> Iterator[tuple[str, str, str | None, int, int]]:
        """(repo, status, reason, files, bytes), in repository order."""
        if not self.runs:
            yield from _table_rows(_compact(self.parts)) if self.parts else ()
            return
        if self.parts:
            self._spill()
        yield from _merge_runs(self.runs)

    def result(self) -> dict[str, Any]:
        """The largest repositories by bytes in (ties: by name), and the rest summed."""
        heap: list[tuple[int, int, dict[str, Any]]] = []
        other = _empty()
        other["repositories"] = 0
        total = 0
        for order, bucket in enumerate(self._repositories()):
            total += 1
            # Equal sizes: the later (greater) name is the smaller key, so it leaves first.
            entry = (bucket["bytes_in"], -order, bucket)
            if len(heap) < self.top:
                heapq.heappush(heap, entry)
                continue
            if entry[:2] > heap[0][:2]:
                entry = heapq.heapreplace(heap, entry)
            _merge_into(other, entry[2])
            other["repositories"] += 1
        top = [entry[2] for entry in sorted(heap, key=lambda e: (-e[0], -e[1]))]
        for bucket in [*top, other]:
            bucket["dropped"] = dict(
                sorted(bucket["dropped"].items(), key=lambda kv: (-kv[1], kv[0]))
            )
        for bucket in top:
            bucket["dropped"] = dict(list(bucket["dropped"].items())[:_TOP_REASONS])
        return {"count": total, "top": top, "other": other}

    def _repositories(self) -> Iterator[dict[str, Any]]:
        bucket: dict[str, Any] | None = None
        for repo, status, reason, files, size in self._rows():
            if bucket is None or bucket["repo"] != repo:
                if bucket is not None:
                    yield bucket
                bucket = {"repo": repo, **_empty()}
            if status == "written":
                bucket["bytes_kept"] += size
                continue
            bucket["files_in"] += files
            bucket["bytes_in"] += size
            if status == "kept":
                bucket["files_kept"] += files
            else:
                bucket["dropped"][reason] = bucket["dropped"].get(reason, 0) + files
        if bucket is not None:
            yield bucket


def _compact(parts: list[pa.Table]) -> pa.Table:
    """Sum partial rows per (repo, status, reason), sorted by those keys (nulls last).

    Sorts and sums adjacent runs with compute kernels and numpy rather than `group_by`:
    Acero's hash aggregation allocates from Arrow's C++ default pool (mimalloc) on its own
    threads, whose freed pages stayed resident, and the main process's peak grew with the
    number of repositories."""
    table = pa.concat_tables(parts).combine_chunks()
    if "files" not in table.column_names:
        table = table.append_column("files", pa.array([1] * table.num_rows, pa.int64()))
    keys = ["repo", "status", "reason"]
    table = table.take(pc.sort_indices(table, [(k, "ascending") for k in keys]))
    n = table.num_rows
    starts = np.zeros(n, dtype=bool)
    if n:
        starts[0] = True
    for key in keys:
        column = table.column(key)
        if n > 1:
            same = pc.equal(column.slice(1), column.slice(0, n - 1))
            both_null = pc.and_(pc.is_null(column.slice(1)), pc.is_null(column.slice(0, n - 1)))
            same = pc.or_kleene(pc.fill_null(same, False), both_null)
            starts[1:] |= ~np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
    first = np.flatnonzero(starts)
    sums = {}
    for name in ("files", "size"):
        values = table.column(name).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        sums[name] = np.add.reduceat(values, first) if n else values
    heads = table.select(keys).take(pa.array(first, pa.int64()))
    return pa.table(
        {
            **{k: heads.column(k) for k in keys},
            "files": pa.array(sums["files"], pa.int64()),
            "size": pa.array(sums["size"], pa.int64()),
        }
    )


def _table_rows(table: pa.Table) -> Iterator[tuple[str, str, str | None, int, int]]:
    for batch in table.to_batches(max_chunksize=65_536):
        yield from zip(*(batch.column(i).to_pylist() for i in range(5)), strict=True)


def _merge_runs(runs: list[tuple[int, Path]]) -> Iterator[tuple[str, str, str | None, int, int]]:
    return heapq.merge(*(_run_rows(path) for _, path in runs), key=lambda row: row[0])


def _write_rows(rows: Iterator[tuple[str, str, str | None, int, int]], path: Path) -> None:
    names = ["repo", "status", "reason", "files", "size"]
    types = [pa.string(), pa.string(), pa.string(), pa.int64(), pa.int64()]
    schema = pa.schema(list(zip(names, types, strict=True)))
    with pq.ParquetWriter(path, schema) as writer:
        while batch := list(itertools.islice(rows, _RUN_ROWS)):
            values = zip(*batch, strict=True)
            columns = [pa.array(list(c), t) for c, t in zip(values, types, strict=True)]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))


def _run_rows(path: Path) -> Iterator[tuple[str, str, str | None, int, int]]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_RUN_ROWS):
        yield from zip(*(batch.column(i).to_pylist() for i in range(5)), strict=True)


def _merge_into(into: dict[str, Any], bucket: dict[str, Any]) -> None:
    for field in ("files_in", "bytes_in", "files_kept", "bytes_kept"):
        into[field] += bucket[field]
    for reason, files in bucket["dropped"].items():
        into["dropped"][reason] = into["dropped"].get(reason, 0) + files


class _StepCounts:
    """What each step did, summed batch by batch over the ledger."""

    def __init__(self) -> None:
        self.pii_files: dict[str, int] = {}
        self.pii_items: dict[str, int] = {}
        self.edited = 0
        self.clusters: dict[str, int] = {}  # grows with near-duplicates, not with inputs
        self.contaminated: dict[str, int] = {}
        self.licenses: dict[str, int] = {}

    def add(self, table: pa.Table) -> None:
        for counts in table.column("pii").drop_null().to_pylist():
            self.edited += 1
            for kind, n in json.loads(counts).items():
                self.pii_items[kind] = self.pii_items.get(kind, 0) + n
                self.pii_files[kind] = self.pii_files.get(kind, 0) + 1
        for reason, into in (
            ("near_duplicate", self.clusters),
            ("contaminated", self.contaminated),
        ):
            rows = table.filter(pc.equal(table["reason"], reason))
            if rows.num_rows:
                for group in _counts(rows, "detail"):
                    into[group["detail"]] = into.get(group["detail"], 0) + group["count"]
        for group in _counts(table, "license"):
            key = group["license"] or "(none)"
            self.licenses[key] = self.licenses.get(key, 0) + group["count"]

    def result(self) -> dict[str, Any]:
        sizes: dict[int, int] = {}
        for dropped in self.clusters.values():
            sizes[dropped + 1] = sizes.get(dropped + 1, 0) + 1  # the survivor is kept
        return {
            "pii": {
                "files_edited": self.edited,
                "items": dict(sorted(self.pii_items.items())),
                "files": dict(sorted(self.pii_files.items())),
            },
            "near_dedup": {
                "clusters": len(self.clusters),
                "cluster_sizes": [{"size": k, "clusters": sizes[k]} for k in sorted(sizes)],
            },
            "contaminated": dict(sorted(self.contaminated.items())),
            "licenses": dict(sorted(self.licenses.items(), key=lambda kv: (-kv[1], kv[0]))),
        }


def _counts(table: pa.Table, column: str) -> list[dict[str, Any]]:
    grouped = table.group_by([column], use_threads=False).aggregate([([], "count_all")])
    return grouped.rename_columns({"count_all": "count"}).to_pylist()


def _drops(dropped: dict[str, Any]) -> str:
    """'reason files, ...' from {reason: {"files": n, ...}} or {reason: n}."""
    return ", ".join(
        f"{reason} {slot['files'] if isinstance(slot, dict) else slot:,}"
        for reason, slot in dropped.items()
    )


def _bucket_items(items: Iterable[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Buckets as the page shows them: their drops as one line of text."""
    return [(name, {**b, "dropped": _drops(b["dropped"])}) for name, b in items]


def funnel_bars(funnel: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The funnel's steps as bars for the `bars` macro: files left after each step."""
    rows = []
    for i, step in enumerate(funnel):
        label = "inputs" if i == 0 else f"after {step['step']}"
        note = f"{step['files']:,}" + ("" if i == 0 else f"  (−{step['dropped']:,})")
        title = f"{label}: {step['files']:,} files"
        kind = "strong" if i == 0 else ""
        rows.append(
            {"label": label, "value": step["files"], "note": note, "title": title, "kind": kind}
        )
    return rows


def write_html_report(report: dict[str, Any], title: str = "curate report") -> str:
    """A self-contained page: summary, the funnel as a chart, drops per reason, and tables
    per language, source and repository."""
    from codekiln.pages import megabytes, render

    totals = report["totals"]
    reasons = [
        (reason, f"{slot['files']:,}", megabytes(slot["bytes"]))
        for reason, slot in totals["dropped"].items()
    ]
    repositories = report.get("repositories", {"count": 0, "top": [], "other": _empty()})
    repo_items = [(b["repo"], b) for b in repositories["top"]]
    other = repositories["other"]
    if other.get("repositories"):
        repo_items.append((f"{other['repositories']:,} other repositories", other))
    shown = len(repositories["top"])
    repo_note = (
        f"The {shown:,} largest of {repositories['count']:,} repositories by bytes in; "
        "the last row sums the others. Dropped: the most frequent reasons."
        if other.get("repositories")
        else f"All {repositories['count']:,} repositories, largest first."
    )
    steps = report.get("steps", {})
    if steps:
        pii, near = steps["pii"], steps["near_dedup"]
        steps = {
            **steps,
            "pii_rows": [(k, f"{v:,}", f"{pii['files'][k]:,}") for k, v in pii["items"].items()],
            "cluster_rows": [
                (row["size"], f"{row['clusters']:,}") for row in near["cluster_sizes"]
            ],
        }
    return render(
        "curate.html",
        title=title,
        totals=totals,
        kept_share=totals["files_kept"] / totals["files_in"] if totals["files_in"] else 0.0,
        funnel=funnel_bars(report["funnel"]),
        reasons=reasons,
        steps=steps,
        languages=_bucket_items(by_kept(report["languages"])),
        sources=_bucket_items(by_kept(report.get("sources", {}))),
        repositories=_bucket_items(repo_items),
        repo_note=repo_note,
    )
