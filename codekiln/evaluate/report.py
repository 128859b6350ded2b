"""report.html for an evaluation folder: pass@k per task and sample completions with their
verdicts, so a reader sees what the model wrote and not only a number."""

from __future__ import annotations

import json
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
    from codekiln.pages import render

    out = Path(out_dir)
    shown = []
    for name, result in results.items():
        if "metrics" not in result:
            continue
        metrics = ", ".join(f"{k} {v:.2%}" for k, v in result["metrics"].items())
        for metric, values in result.get("by_metric", {}).items():  # EvalPlus: base and plus
            metrics += f"; {metric}: " + ", ".join(f"{k} {v:.2%}" for k, v in values.items())
        shown.append(
            {
                "name": name,
                "problems": result["problems"],
                "samples_per_problem": result["samples_per_problem"],
                "metrics": metrics,
                "outcomes": ", ".join(f"{k} {v}" for k, v in result["outcomes"].items() if v),
                "breakdown": "; ".join(
                    f"{kind}: {b.get('pass@1', 0):.2%} of {b['problems']}"
                    for kind, b in result.get("breakdown", {}).items()
                ),
                "shown": samples(out / name, name, (tasks or {}).get(name))[:SHOWN],
            }
        )
    settings = next((r["generation"] for r in results.values() if "generation" in r), {})
    model = next((r["model"] for r in results.values() if "model" in r), {})
    name = str(model.get("name"))
    page = render(
        "evaluation.html",
        title=f"codekiln eval: {name}",
        name=name,
        settings=json.dumps(settings),
        tasks=shown,
        results_file=RESULTS,
    )
    path = out / "report.html"
    write_atomic(path, page)
    return path


def samples(task_dir: Path, name: str, task: Any = None) -> list[dict[str, str]]:
    """A task's samples, passing ones first, each with the end of its prompt (and, for
    infilling, the start of its suffix), so the completion reads in context."""
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

    items = []
    for row in sorted(generations, key=lambda row: status(row) != "passed"):
        problem = problems.get(row["task_id"])
        items.append(
            {
                "task_id": row["task_id"],
                "status": status(row),
                "detail": verdicts.get((row["task_id"], row["sample"]), {}).get("detail", ""),
                "before": _tail(problem.prompt) if problem else "",
                "completion": row["completion"],
                "after": _head(problem.suffix) if problem and problem.suffix else "",
            }
        )
    return items


def _tail(text: str, lines: int = 6) -> str:
    return "".join(text.splitlines(keepends=True)[-lines:])


def _head(text: str, lines: int = 4) -> str:
    return "".join(text.splitlines(keepends=True)[:lines])


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
