"""workspace/report.html: one page for a `codekiln run` workspace, with the data funnel,
the loss curve, pass@1 with passing and failing completions, and the leaderboard inline,
and a link to each stage's own output.

Everything is read from the stage folders (`run.py` lays them out), so the page can be
rewritten for any workspace, finished or partial; a stage not there yet is left out:

    curated/report.json         the funnel and the totals
    tokenizer/manifest.json     vocabulary size (fertility.json: characters per token)
    tokens/meta.json            tokens and documents per split
    train/manifest.json         steps, tokens, losses (metrics.jsonl: the curve)
    eval/<task>/results.json    pass@1 (generations.jsonl, verdicts.jsonl: the samples)
    leaderboard/leaderboard.json
    attribution/manifest.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codekiln.manifest import read_manifest, write_atomic
from codekiln.pages import amount, render
from codekiln.pages.charts import line_chart

SAMPLES = 2  # passing, and failing, completions shown per task
REPORT = "report.html"


def write_workspace_report(workspace: str | Path) -> Path:
    """Write `workspace/report.html` from the stage folders under `workspace`."""
    workspace = Path(workspace)
    path = workspace / REPORT
    write_atomic(path, render("workspace.html", **workspace_page(workspace)))
    return path


def workspace_page(workspace: Path) -> dict[str, Any]:
    """The workspace page's values, read from its stage folders."""
    from codekiln.curate.report import funnel_bars

    curated = _json(workspace / "curated" / "report.json")
    tasks = _tasks(workspace / "eval")
    board = _json(workspace / "leaderboard" / "leaderboard.json")
    return {
        "title": f"codekiln run: {workspace.name}",
        "cards": _cards(workspace, curated, tasks),
        "funnel": funnel_bars(curated["funnel"]) if curated else None,
        "loss": _loss_chart(workspace / "train" / "metrics.jsonl"),
        "tasks": tasks,
        "board": _board(board),
        "stages": _stages(workspace, curated, tasks),
    }


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _loss_chart(metrics: Path) -> dict[str, Any] | None:
    try:
        lines = metrics.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    rows = [json.loads(line) for line in lines if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    valid = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    series = [("train", "train", train)] + ([("validation", "validation", valid)] if valid else [])
    if not train and not valid:
        return None
    return line_chart(series, "step", "loss (nats per token)", width=580, height=400)


def _tasks(eval_dir: Path) -> list[dict[str, Any]]:
    """Each evaluated task: pass@1 and a few passing and failing samples, or why not."""
    from codekiln.evaluate.report import samples

    manifest = read_manifest(eval_dir) or {}
    names = list(manifest.get("tasks", {}))
    tasks = []
    for name in names:
        result = _json(eval_dir / name / "results.json")
        task: dict[str, Any] = {"name": name, "scored": result is not None}
        if result is None:
            generated = (eval_dir / name / "generations.jsonl").exists()
            task["summary"] = (
                f"{name}: generations only (no --allow-code-execution)"
                if generated
                else f"{name}: not run"
            )
            tasks.append(task)
            continue
        pass1 = result["metrics"].get("pass@1", 0.0)
        shown = samples(eval_dir / name, name)
        task.update(
            pass1=pass1,
            problems=result["problems"],
            samples_per_problem=result["samples_per_problem"],
            outcomes=", ".join(f"{k} {v:,}" for k, v in result["outcomes"].items() if v),
            summary=f"{name} pass@1 {pass1:.1%} ({result['problems']} problems)",
            passing=[s for s in shown if s["status"] == "passed"][:SAMPLES],
            failing=[s for s in shown if s["status"] != "passed"][:SAMPLES],
        )
        tasks.append(task)
    return tasks


def _board(board: dict[str, Any] | None) -> dict[str, Any] | None:
    from codekiln.evaluate.leaderboard import board_view

    if not board:
        return None
    return board_view(board["models"], board["tasks"], base="leaderboard/")


def _cards(
    workspace: Path, curated: dict[str, Any] | None, tasks: list[dict[str, Any]]
) -> list[tuple[str, str]]:
    """The headline numbers: (value, what it is)."""
    cards = []
    if curated:
        totals = curated["totals"]
        cards.append((f"{totals['files_kept']:,}", f"files kept of {totals['files_in']:,}"))
    meta = _json(workspace / "tokens" / "meta.json")
    if meta:
        tokens = meta["splits"].get("train", {}).get("tokens", 0)
        cards.append((amount(tokens), "tokens to train on"))
    trained = read_manifest(workspace / "train")
    if trained and trained.get("stage") == "train":
        cards.append((f"{trained['final_loss']:.3f}", f"loss after {trained['steps']:,} steps"))
        if trained.get("val_loss") is not None:
            cards.append((f"{trained['val_loss']:.3f}", "validation loss"))
    for task in tasks:
        if task["scored"]:
            cards.append((f"{task['pass1']:.1%}", f"pass@1, {task['name']}"))
    return cards


def _stages(
    workspace: Path, curated: dict[str, Any] | None, tasks: list[dict[str, Any]]
) -> list[tuple[str, str, str]]:
    """One row per stage that has run: (stage, result, the file with the details)."""
    rows = []
    if curated:
        totals = curated["totals"]
        rows.append(
            (
                "curate",
                f"{totals['files_in']:,} files in, {totals['files_kept']:,} kept "
                f"({totals['bytes_kept'] / 1e6:,.1f} MB)",
                "curated/report.html",
            )
        )
    tokenizer = read_manifest(workspace / "tokenizer")
    if tokenizer and "vocab_size" in tokenizer:
        fertility = _json(workspace / "tokenizer" / "fertility.json") or {}
        overall = fertility.get("overall", {})
        rows.append(
            (
                "tokenizer",
                f"{tokenizer['vocab_size']:,} tokens; "
                f"{overall.get('chars_per_token', 0):.2f} characters per token on held-out text",
                "tokenizer/fertility.json",
            )
        )
    meta = _json(workspace / "tokens" / "meta.json")
    if meta:
        splits = "; ".join(
            f"{name} {split['tokens']:,} tokens, {split['documents']:,} documents"
            for name, split in meta["splits"].items()
        )
        rows.append(("pack", splits, "tokens/meta.json"))
    trained = read_manifest(workspace / "train")
    if trained and trained.get("stage") == "train":
        val_loss = trained.get("val_loss")
        rows.append(
            (
                "train",
                f"{trained['steps']:,} steps, {trained['tokens']:,} tokens, final loss "
                f"{trained['final_loss']:.3f}"
                + (f", validation loss {val_loss:.3f}" if val_loss is not None else ""),
                "train/loss.png",
            )
        )
    if tasks:
        rows.append(("eval", "; ".join(t["summary"] for t in tasks), "eval/report.html"))
    if (workspace / "leaderboard" / "index.html").exists():
        rows.append(("leaderboard", "pass@1 per task, sortable", "leaderboard/index.html"))
    attribution = read_manifest(workspace / "attribution")
    if attribution and attribution.get("stage") == "attribution":
        rows.append(
            (
                "attribution",
                f"{attribution['counts'].get('distinct_grams', 0):,} grams of "
                f"{attribution['config']['width']} characters; Bloom filter "
                f"{attribution['sizes'].get('bloom_fraction', 0):.1%} of the corpus",
                "attribution/manifest.json",
            )
        )
    return rows
