"""What `codekiln eval` (and `run`) print: pass@k per task, and the task list."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table


def print_eval_summary(console: Console, results: dict, output: Path) -> None:
    scored = {name: r for name, r in results.items() if "metrics" in r}
    for name, result in results.items():
        if "not_run" in result:
            console.print(f"{name}: not run ({result['not_run']})")
        elif name not in scored:
            console.print(f"{name}: generations in {result['generations']}")
    if scored:
        ks = [
            k
            for k in ("pass@1", "pass@10", "pass@100")
            if any(k in r["metrics"] for r in scored.values())
        ]
        table = Table()
        table.add_column("task", no_wrap=True)
        for header in ("problems", "n", *ks, "passed", "failed", "other"):
            table.add_column(header, no_wrap=True, justify="right")
        for name, result in scored.items():
            outcomes = result["outcomes"]
            other = sum(v for k, v in outcomes.items() if k not in ("passed", "failed"))
            metrics = result["metrics"]
            table.add_row(
                name,
                str(result["problems"]),
                str(result["samples_per_problem"]),
                *(f"{metrics[k]:.2%}" if k in metrics else "-" for k in ks),
                str(outcomes["passed"]),
                str(outcomes["failed"]),
                str(other),
            )
            for metric, values in result.get("by_metric", {}).items():  # EvalPlus: both
                table.add_row(
                    f"  {metric}",
                    "",
                    "",
                    *(f"{values[k]:.2%}" if k in values else "-" for k in ks),
                    "",
                    "",
                    "",
                )
        console.print(table)
        for name, result in scored.items():
            others = {k: v for k, v in result["metrics"].items() if not k.startswith("pass@")}
            if others:
                console.print(f"{name}: " + ", ".join(f"{k} {v:.2%}" for k, v in others.items()))
    console.print(f"results in {output}/<task>/results.json")


def print_task_list(console: Console) -> None:
    from codekiln.evaluate.tasks import get_task, task_names

    table = Table("task", "problems", "mode", "toolchain")
    for name in task_names():
        task = get_task(name)
        ready, note = task.ready()
        problems = "needs --data" if task.needs_data else str(len(task.problems()))
        if task.reads_data and not task.needs_data:
            problems += " (or --data)"
        table.add_row(
            name,
            problems,
            task.mode,
            ("ready" if ready else "missing: ") + (f" ({note})" if ready and note else note),
        )
    console.print(table)
