"""The curate report: every number is a sum over the ledger, so it reconciles by construction."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

UNKNOWN = "(unknown)"


def _empty() -> dict[str, Any]:
    return {"files_in": 0, "bytes_in": 0, "files_kept": 0, "bytes_kept": 0, "dropped": {}}


def _add(bucket: dict[str, Any], status: str, reason: str | None, files: int, size: int) -> None:
    bucket["files_in"] += files
    bucket["bytes_in"] += size
    if status == "kept":
        bucket["files_kept"] += files
        bucket["bytes_kept"] += size
    else:
        slot = bucket["dropped"].setdefault(reason, {"files": 0, "bytes": 0})
        slot["files"] += files
        slot["bytes"] += size


def build_report(ledger_dir: Path) -> dict[str, Any]:
    """Totals, per language, kind and source: files and bytes in, kept, dropped per reason;
    and what each step did: PII redactions per type, near-duplicate cluster sizes,
    contamination per benchmark task, files per license."""
    from codekiln.curate.examine import REASONS

    table = ds.dataset(str(ledger_dir), format="parquet").to_table(
        columns=["source", "lang", "kind", "status", "reason", "size"]
    )
    keys = ["source", "lang", "kind", "status", "reason"]
    grouped = (
        table.group_by(keys, use_threads=False)
        .aggregate([("size", "sum"), ("size", "count")])
        .to_pylist()
    )
    # Sorting makes the report's key order independent of the group-by's order.
    grouped.sort(key=lambda g: tuple(g[k] or "" for k in keys))
    totals = _empty()
    languages: dict[str, dict[str, Any]] = {}
    kinds: dict[str, dict[str, Any]] = {}
    sources: dict[str, dict[str, Any]] = {}
    for group in grouped:
        files, size = group["size_count"], group["size_sum"] or 0
        for bucket in (
            totals,
            languages.setdefault(group["lang"] or UNKNOWN, _empty()),
            kinds.setdefault(group["kind"], _empty()),
            sources.setdefault(group["source"], _empty()),
        ):
            _add(bucket, group["status"], group["reason"], files, size)
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
        "languages": dict(sorted(languages.items(), key=lambda kv: (-kv[1]["files_in"], kv[0]))),
        "kinds": kinds,
        "sources": sources,
        "funnel": funnel,
        "steps": _steps(ledger_dir),
    }


def _steps(ledger_dir: Path) -> dict[str, Any]:
    table = ds.dataset(str(ledger_dir), format="parquet").to_table(
        columns=["status", "reason", "detail", "license", "pii"]
    )
    pii_files: dict[str, int] = {}
    pii_items: dict[str, int] = {}
    edited = 0
    for counts in table.column("pii").drop_null().to_pylist():
        edited += 1
        for kind, n in json.loads(counts).items():
            pii_items[kind] = pii_items.get(kind, 0) + n
            pii_files[kind] = pii_files.get(kind, 0) + 1
    reasons = table.column("reason").to_pylist()
    details = table.column("detail").to_pylist()
    clusters: dict[str, int] = {}
    contaminated: dict[str, int] = {}
    for reason, detail in zip(reasons, details, strict=True):
        if reason == "near_duplicate":
            clusters[detail] = clusters.get(detail, 0) + 1
        elif reason == "contaminated":
            contaminated[detail] = contaminated.get(detail, 0) + 1
    sizes: dict[int, int] = {}
    for dropped in clusters.values():
        sizes[dropped + 1] = sizes.get(dropped + 1, 0) + 1  # the survivor is kept
    licenses: dict[str, int] = {}
    for license in table.column("license").to_pylist():
        key = license or "(none)"
        licenses[key] = licenses.get(key, 0) + 1
    return {
        "pii": {
            "files_edited": edited,
            "items": dict(sorted(pii_items.items())),
            "files": dict(sorted(pii_files.items())),
        },
        "near_dedup": {
            "clusters": len(clusters),
            "cluster_sizes": [{"size": k, "clusters": sizes[k]} for k in sorted(sizes)],
        },
        "contaminated": dict(sorted(contaminated.items())),
        "licenses": dict(sorted(licenses.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def _mb(size: int) -> str:
    return f"{size / 1e6:,.2f} MB"


def _funnel_svg(funnel: list[dict[str, Any]]) -> str:
    top = max(funnel[0]["files"], 1)
    row_h, label_w, bar_w = 26, 170, 520
    height = row_h * len(funnel) + 10
    parts = [
        f'<svg role="img" aria-label="curation funnel" width="{label_w + bar_w + 160}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" '
        'font-size="13">'
    ]
    for i, step in enumerate(funnel):
        y = 5 + i * row_h
        width = max(1.0, bar_w * step["files"] / top)
        label = "inputs" if i == 0 else f"after {step['step']}"
        note = f"{step['files']:,}" + ("" if i == 0 else f"  (−{step['dropped']:,})")
        colour = "#3b6ea8" if i == 0 else "#5b9bd5"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="{row_h - 6}" '
            f'fill="{colour}"><title>{escape(label)}: {step["files"]:,} files</title></rect>'
            f'<text x="{label_w + width + 6:.1f}" y="{y + 17}">{escape(note)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...], table_id: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<table id="{table_id}"><tr>{head}</tr>{body}</table>'


def _steps_html(steps: dict[str, Any]) -> str:
    if not steps:
        return ""
    pii = steps["pii"]
    near = steps["near_dedup"]
    parts = [
        f"<h3>PII redaction</h3><p>{pii['files_edited']:,} files edited.</p>",
        _table(
            [(k, f"{v:,}", f"{pii['files'][k]:,}") for k, v in pii["items"].items()],
            ("type", "items replaced", "files"),
            "pii",
        ),
        f"<h3>Near-deduplication</h3><p>{near['clusters']:,} clusters of near-duplicates.</p>",
        _table(
            [(row["size"], f"{row['clusters']:,}") for row in near["cluster_sizes"]],
            ("cluster size", "clusters"),
            "clusters",
        ),
        "<h3>Decontamination</h3>",
        _table(list(steps["contaminated"].items()), ("benchmark task", "files"), "contaminated")
        if steps["contaminated"]
        else "<p>No file held a benchmark prompt or solution.</p>",
        "<h3>Licenses</h3>",
        _table(list(steps["licenses"].items()), ("license", "files in"), "licenses"),
    ]
    return "\n".join(parts)


def _drops(dropped: dict[str, dict[str, int]]) -> str:
    return ", ".join(f"{reason} {slot['files']:,}" for reason, slot in dropped.items())


def write_html_report(report: dict[str, Any], title: str = "curate report") -> str:
    """A self-contained page: summary, the funnel as a chart, drops per reason, per language."""
    totals = report["totals"]
    reason_rows = "".join(
        f"<tr><td>{escape(reason)}</td><td>{slot['files']:,}</td><td>{_mb(slot['bytes'])}</td></tr>"
        for reason, slot in totals["dropped"].items()
    )
    lang_rows = "".join(
        f"<tr><td>{escape(lang)}</td><td>{b['files_in']:,}</td><td>{_mb(b['bytes_in'])}</td>"
        f"<td>{b['files_kept']:,}</td><td>{_mb(b['bytes_kept'])}</td>"
        f"<td>{escape(_drops(b['dropped']))}</td></tr>"
        for lang, b in report["languages"].items()
    )
    kept_share = totals["files_kept"] / totals["files_in"] if totals["files_in"] else 0.0
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child, #languages td:last-child {{ text-align: left; }}
th {{ background: #eef2f7; }}
.summary {{ font-size: 1.1em; }}
</style></head><body>
<h1>{escape(title)}</h1>
<p class="summary">{totals["files_in"]:,} files ({_mb(totals["bytes_in"])}) in;
<strong>{totals["files_kept"]:,} kept</strong>
({_mb(totals["bytes_kept"])}, {kept_share:.1%} of files).
Every number below is a sum over the ledger.</p>
<h2>Funnel</h2>
{_funnel_svg(report["funnel"])}
<h2>Dropped, by reason</h2>
<table id="reasons"><tr><th>reason</th><th>files</th><th>bytes</th></tr>{reason_rows}</table>
<h2>What each step did</h2>
{_steps_html(report.get("steps", {}))}
<h2>By language</h2>
<table id="languages"><tr><th>language</th><th>files in</th><th>bytes in</th><th>files kept</th>
<th>bytes kept</th><th>dropped</th></tr>{lang_rows}</table>
</body></html>
"""
