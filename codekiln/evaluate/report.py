"""report.html for an evaluation folder: pass@k per task and sample completions with their
verdicts, so a reader sees what the model wrote and not only a number."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from codekiln.evaluate.files import GENERATIONS, RESULTS, VERDICTS
from codekiln.manifest import write_atomic

SHOWN = 6  # sample completions per task


def write_report(
    out_dir: str | Path, results: dict[str, dict[str, Any]], tasks: dict[str, Any] | None = None
) -> Path:
    """Write `out_dir/report.html` from the tasks' results (as `evaluate` returns them);
    `tasks` are the run's Task objects (their problems, loaded from --data where given)."""
    out = Path(out_dir)
    sections = []
    rows = []
    for name, result in results.items():
        if "metrics" not in result:
            continue
        metrics = ", ".join(f"{k} {v:.2%}" for k, v in result["metrics"].items())
        for metric, values in result.get("by_metric", {}).items():  # EvalPlus: base and plus
            metrics += f"; {metric}: " + ", ".join(f"{k} {v:.2%}" for k, v in values.items())
        outcomes = ", ".join(f"{k} {v}" for k, v in result["outcomes"].items() if v)
        breakdown = "; ".join(
            f"{kind}: {b.get('pass@1', 0):.2%} of {b['problems']}"
            for kind, b in result.get("breakdown", {}).items()
        )
        rows.append(
            f"<tr><td>{escape(name)}</td><td>{result['problems']}</td>"
            f"<td>{result['samples_per_problem']}</td><td>{escape(metrics)}</td>"
            f"<td>{escape(outcomes)}</td><td>{escape(breakdown)}</td>"
            f'<td><a href="{escape(name)}/{RESULTS}">{RESULTS}</a></td></tr>'
        )
        sections.append(_samples_section(out / name, name, (tasks or {}).get(name)))
    settings = next((r["generation"] for r in results.values() if "generation" in r), {})
    model = next((r["model"] for r in results.values() if "model" in r), {})
    name = escape(str(model.get("name")))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>codekiln eval: {name}</title>
<style>body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }}
table {{ border-collapse: collapse; }} pre {{ background: #f6f6f6; padding: 6px; margin: 0;
white-space: pre-wrap; }} .context {{ color: #888; }}
.passed {{ color: #070; }} .failed, .timeout, .memory {{ color: #a00; }}
</style></head><body>
<h1>Evaluation of {name}</h1>
<p>Generation: {escape(json.dumps(settings))}</p>
<table><tr><th>task</th><th>problems</th><th>samples each</th><th>pass@k</th>
<th>outcomes</th><th>by kind</th><th>details</th></tr>
{"".join(rows)}</table>
{"".join(sections)}
</body></html>
"""
    path = out / "report.html"
    write_atomic(path, page)
    return path


def _samples_section(task_dir: Path, name: str, task: Any = None) -> str:
    """A few samples, passing ones first, each under the end of its prompt (and, for
    infilling, above the start of its suffix), so the completion reads in context."""
    from codekiln.errors import UserError
    from codekiln.evaluate.tasks import get_task

    generations = _rows(task_dir / GENERATIONS)
    verdicts = {(v["task_id"], v["sample"]): v for v in _rows(task_dir / VERDICTS)}
    try:
        problems = {p.task_id: p for p in (task or get_task(name)).problems()}
    except UserError:  # a task whose problems come from --data it was not given here
        problems = {}

    def status(row: dict[str, Any]) -> str:
        return verdicts.get((row["task_id"], row["sample"]), {}).get("status", "not run")

    shown = sorted(generations, key=lambda row: status(row) != "passed")[:SHOWN]
    items = []
    for row in shown:
        verdict = verdicts.get((row["task_id"], row["sample"]), {})
        problem = problems.get(row["task_id"])
        before = _tail(problem.prompt) if problem else ""
        after = _head(problem.suffix) if problem and problem.suffix else ""
        items.append(
            f'<h3>{escape(row["task_id"])} <span class="{escape(status(row))}">'
            f"{escape(status(row))}</span></h3><p>{escape(verdict.get('detail', ''))}</p>"
            f'<pre><span class="context">{escape(before)}</span>'
            f"<b>{escape(row['completion']) or '(empty)'}</b>"
            f'<span class="context">{escape(after)}</span></pre>'
        )
    return f"<h2>{escape(name)}: sample completions (bold), passing first</h2>" + "".join(items)


def _tail(text: str, lines: int = 6) -> str:
    return "".join(text.splitlines(keepends=True)[-lines:])


def _head(text: str, lines: int = 4) -> str:
    return "".join(text.splitlines(keepends=True)[:lines])


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
