"""What `codekiln curate` (and `run`) print: the funnel of files in, dropped and kept; and
what `codekiln data lookup` prints about one repository, owner or path."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from codekiln.curate.lookup import row_detail
from codekiln.curate.report import by_kept


def print_curate_summary(console: Console, report: dict, out_dir: Path) -> None:
    totals = report["totals"]
    table = Table(title="curate", show_edge=False)
    table.add_column("")
    table.add_column("files", justify="right")
    table.add_column("MB", justify="right")
    table.add_row("in", f"{totals['files_in']:,}", f"{totals['bytes_in'] / 1e6:,.1f}")
    for reason, slot in totals["dropped"].items():
        table.add_row(f"  dropped: {reason}", f"{slot['files']:,}", f"{slot['bytes'] / 1e6:,.1f}")
    table.add_row(
        "kept (MB written)",
        f"{totals['files_kept']:,}",
        f"{totals['bytes_kept'] / 1e6:,.1f}",
        style="bold",
    )
    console.print(table)
    kept = [(lang, b["files_kept"]) for lang, b in by_kept(report["languages"])]
    top = [f"{lang} {files:,}" for lang, files in kept if files][:8]
    if top:
        console.print("kept by language: " + ", ".join(top))
    console.print(f"shards and ledger: {out_dir}  report: {out_dir / 'report.html'}")


def print_lookup(console: Console, query: str, result, limit: int) -> None:
    """The files `query` matched (at most `limit`; 0: all), kept or dropped and why."""
    repos = sorted({r["repo"] for r in result.rows})
    console.print(
        f"{query}: {len(result.rows):,} files in {len(repos):,} repositories; "
        f"{len(result.kept):,} kept, {len(result.rows) - len(result.kept):,} dropped"
    )
    for reason, n in result.reasons().items():
        console.print(f"  dropped as {reason}: {n:,}")
    table = Table(show_edge=False)
    for column in ("repo", "path", "status", "reason", "detail"):
        table.add_column(column)
    shown = result.rows if limit == 0 else result.rows[:limit]
    for row in shown:
        detail = row_detail(row)
        table.add_row(row["repo"], row["path"], row["status"], row["reason"] or "", detail)
    console.print(table)
    if len(shown) < len(result.rows):
        console.print(f"... {len(result.rows) - len(shown):,} more (--limit 0 shows all)")
