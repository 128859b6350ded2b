"""The main job: every stage, in one workspace, on the given sources (default: the stdlib).

Stages are chained through files on disk only; each later issue adds its stage here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from codekiln.curate.config import CurateConfig
from codekiln.curate.pipeline import CurateResult, curate
from codekiln.curate.sources import Source, resolve_sources, stdlib_source
from codekiln.manifest import package_versions, write_atomic, write_manifest


@dataclass
class RunResult:
    workspace: Path
    curate: CurateResult
    report_path: Path


def run_pipeline(
    workspace: str | Path,
    sources: list[str] | None = None,
    curate_config: CurateConfig | None = None,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
    executor: str = "local",
    ray_address: str | None = None,
) -> RunResult:
    """Curate `sources` (or the running Python's standard library) into `workspace`."""
    workspace = Path(workspace)
    started = time.time()
    resolved: list[Source] = resolve_sources(sources) if sources else [stdlib_source()]
    workspace.mkdir(parents=True, exist_ok=True)
    curated = curate(
        resolved,
        workspace / "curated",
        curate_config,
        workers=workers,
        force=force,
        progress=progress,
        executor=executor,
        ray_address=ray_address,
    )
    report_path = workspace / "report.html"
    write_atomic(report_path, _index_page(workspace, [("curate", curated.report, "curated")]))
    write_manifest(
        workspace,
        "run",
        sources=[s.describe() for s in resolved],
        stages={"curate": "curated"},
        versions=package_versions("pyarrow", "numpy"),
        timings={"total_s": round(time.time() - started, 3)},
    )
    return RunResult(workspace, curated, report_path)


def _index_page(workspace: Path, stages: list[tuple[str, dict[str, Any], str]]) -> str:
    rows = []
    for name, report, folder in stages:
        totals = report["totals"]
        rows.append(
            f"<tr><td>{escape(name)}</td><td>{totals['files_in']:,}</td>"
            f"<td>{totals['files_kept']:,}</td><td>{totals['bytes_kept'] / 1e6:,.2f} MB</td>"
            f'<td><a href="{escape(folder)}/report.html">{escape(folder)}/report.html</a></td></tr>'
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>codekiln run: {escape(workspace.name)}</title>
<style>body {{ font-family: sans-serif; margin: 2em; }} td, th {{ border: 1px solid #ccc;
padding: 4px 8px; }} table {{ border-collapse: collapse; }}</style></head><body>
<h1>codekiln run: {escape(workspace.name)}</h1>
<table><tr><th>stage</th><th>files in</th><th>files kept</th><th>bytes kept</th><th>report</th></tr>
{"".join(rows)}</table></body></html>
"""
