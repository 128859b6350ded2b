"""A static leaderboard page from `results.json` files, in the manner of BigCode's.

`build_leaderboard(paths, site)` reads results (files, or folders searched for
`results.json`), groups them by model, and writes:

    SITE/index.html          models x tasks table of pass@1 (click a header to sort; the
                             URL hash `#sort=COLUMN&dir=asc|desc` sorts on load too), the
                             average, the win rate, a bar chart, each model's parameters
                             and training tokens, links to every result's settings
    SITE/leaderboard.json    the same numbers, for other tools
    SITE/results/M/T.json    a copy of each result (generation settings, per-problem
                             outcomes), so the page is self-contained

With `with_published=True` the table also holds the published pass@1 of reference models
(`codekiln.evaluate.published`) on the tasks the results cover, marked as published, each
number with its metric, sampling and source; the rows are then ranked by the first task
column, so the user's model is placed among them on one like-for-like number.

A row's name is `name` when given, else the name in the result's model facts, else the model
folder's (`display_name`): never a generic folder name such as `model` or `eval`.

The win rate is BigCode's: on each task, the share of the other models with a score there
that this model beats (a tie counts half), averaged over the model's tasks. Pages use no
external scripts or fonts, so they open from a file or any static host.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codekiln.errors import UserError
from codekiln.evaluate.published import PARAMETERS, Published, published_for
from codekiln.manifest import write_atomic, write_json
from codekiln.pages import amount, render

METRIC = "pass@1"
# Task columns in this order first, then the rest (MultiPL-E languages) alphabetically.
FIRST_COLUMNS = (
    "humaneval",
    "humaneval-plus",
    "humaneval-infill-single",
    "humaneval-infill-multi",
    "humaneval-infill-random",
    "humaneval-infill-random-light",
    "humaneval-infill-quick",
)
# Folder names codekiln and common tools write that say nothing about the model.
GENERIC_NAMES = frozenset(
    {"model", "models", "train", "eval", "evaluation", "results", "output", "out", "export"}
    | {"hf", "final", "latest", "snapshots", "checkpoints", "leaderboard"}
)


@dataclass
class Entry:
    """One model's row: its facts and its pass@1 (and result file) per task."""

    name: str
    info: dict[str, Any]
    scores: dict[str, float] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    average: float = 0.0
    win_rate: float = 0.0
    published: dict[str, Published] = field(default_factory=dict)


def display_name(folder: str | Path) -> str:
    """The name a model folder goes by: a Hugging Face cache folder's repository, else the
    nearest folder up its path whose name is not a generic one (`model`, `train`, `eval`...).

    >>> display_name("runs/demo/train/model"), display_name("checkpoints/santacoder")
    ('demo', 'santacoder')
    >>> display_name("hub/models--bigcode--starcoder2-3b/snapshots/0123abcd")
    'bigcode/starcoder2-3b'
    """
    path = Path(folder).absolute()
    for part in reversed(path.parts):
        if part.startswith("models--") and part.count("--") >= 2:
            return part.removeprefix("models--").replace("--", "/", 1)
    for part in (path, *path.parents):
        if part.name and part.name.lower() not in GENERIC_NAMES:
            return part.name
    return str(path)


def result_name(result: dict[str, Any], path: Path) -> str:
    """The model name of a results.json at `path`: its recorded name unless that is generic
    (or a file's name, as for a scored samples file), else its model folder's, else the
    name of the folder the evaluation wrote into."""
    info = result.get("model") or {}
    recorded = str(info.get("name") or "")
    if recorded and recorded.lower() not in GENERIC_NAMES and not recorded.endswith(".jsonl"):
        return recorded
    where = info.get("path")
    if where and not str(where).startswith(("http://", "https://")):
        return display_name(where)
    return display_name(path.parent.parent)  # OUT/<task>/results.json


def find_results(paths: list[str | Path]) -> list[Path]:
    """results.json files named, or found under the folders named."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(path.rglob("results.json")))
        elif path.is_file():
            found.append(path)
        else:
            raise UserError(f"results path {path} does not exist")
    if not found:
        raise UserError(f"no results.json under {', '.join(map(str, paths))}")
    return found


def read_result(path: Path) -> dict[str, Any]:
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not a readable results.json ({error})") from None
    if (
        not isinstance(result, dict)
        or "task" not in result
        or METRIC not in result.get("metrics", {})
    ):
        raise UserError(f"{path}: not a codekiln results.json (no task or {METRIC})")
    return result


def win_rates(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """BigCode's win rate per model from {model: {task: score}}.

    >>> win_rates({"a": {"t": 0.5, "u": 0.1}, "b": {"t": 0.2, "u": 0.1}, "c": {"t": 0.2}})
    {'a': 0.75, 'b': 0.375, 'c': 0.25}
    """
    tasks = {task for by_task in scores.values() for task in by_task}
    rates: dict[str, list[float]] = defaultdict(list)
    for task in tasks:
        present = {m: s[task] for m, s in scores.items() if task in s}
        for model, score in present.items():
            others = [v for m, v in present.items() if m != model]
            if others:
                beaten = sum(1.0 if score > v else 0.5 if score == v else 0.0 for v in others)
                rates[model].append(beaten / len(others))
    return {m: sum(rates[m]) / len(rates[m]) if rates[m] else 0.0 for m in scores}


def build_leaderboard(
    paths: list[str | Path],
    site: str | Path,
    *,
    with_published: bool = False,
    name: str | None = None,
) -> Path:
    """Write the leaderboard site for the results under `paths`; returns index.html.

    `name` names the one model those results are of (an error if they hold several);
    `with_published` adds the published reference rows on the same tasks."""
    site = Path(site)
    results = [(path, read_result(path)) for path in find_results(paths)]
    names = [result_name(result, path) for path, result in results]
    if name is not None:
        if not name.strip():
            raise UserError("--name must not be empty")
        if len(set(names)) > 1:
            raise UserError(
                f"--name names one model, but the results hold {len(set(names))}: "
                f"{', '.join(sorted(set(names)))}; build the page from one model's results"
            )
        names = [name.strip()] * len(results)
    entries: dict[str, Entry] = {}
    tasks: set[str] = set()
    for (_, result), model in zip(results, names, strict=True):
        entry = entries.setdefault(model, Entry(model, result.get("model", {}) or {}))
        task = result["task"]
        tasks.add(task)
        entry.scores[task] = float(result["metrics"][METRIC])
        link = f"results/{_slug(model)}/{_slug(task)}.json"
        (site / link).parent.mkdir(parents=True, exist_ok=True)
        write_json(site / link, result)
        entry.links[task] = link
    columns = _ordered(tasks)
    rows = list(entries.values())
    if with_published:
        rows += _published_entries(tasks)
    rates = win_rates({id(e): e.scores for e in rows})
    for entry in rows:
        entry.average = sum(entry.scores.values()) / len(entry.scores)
        entry.win_rate = rates[id(entry)]
    if with_published:
        # Published rows cover different sets of tasks, so averages would compare unlike
        # things: rank on the first column (HumanEval when run); rows without it go last.
        key = columns[0]
        ranked = sorted(rows, key=lambda e: (-e.scores.get(key, -1.0), bool(e.published), e.name))
    else:
        ranked = sorted(rows, key=lambda e: (-round(e.average, 9), e.name))
    write_json(
        site / "leaderboard.json",
        {
            "metric": METRIC,
            "tasks": columns,
            "ranked_by": columns[0] if with_published else "average",
            "models": [_json_row(e) for e in ranked],
        },
    )
    index = site / "index.html"
    write_atomic(index, _page(ranked, columns, columns[0] if with_published else None))
    return index


def _published_entries(tasks: set[str]) -> list[Entry]:
    """One row per reference model with a published number on any of `tasks`."""
    rows: dict[str, Entry] = {}
    for item in published_for(tasks):
        info = {"parameters": PARAMETERS.get(item.model)}
        entry = rows.setdefault(item.model, Entry(item.model, info))
        entry.scores[item.task] = item.pass_at_1
        entry.published[item.task] = item
    return list(rows.values())


def _json_row(entry: Entry) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": entry.name,
        "published": bool(entry.published),
        "average": entry.average,
        "win_rate": entry.win_rate,
        "scores": entry.scores,
        "parameters": entry.info.get("parameters"),
        "tokens_trained": entry.info.get("tokens_trained"),
    }
    if entry.published:
        row["sources"] = {
            task: {
                "metric": item.metric,
                "sampling": item.sampling,
                "source": item.source.citation,
                "url": item.source.url,
            }
            for task, item in entry.published.items()
        }
    else:
        row["results"] = entry.links
    return row


def _ordered(tasks: set[str]) -> list[str]:
    """HumanEval, HumanEval+, the infilling sets, then MultiPL-E languages alphabetically."""
    first = [t for t in FIRST_COLUMNS if t in tasks]
    return first + sorted(tasks - set(first))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def board_view(models: list[dict[str, Any]], columns: list[str], base: str = "") -> dict[str, Any]:
    """The table's rows and the sources its published cells cite, from leaderboard.json's
    `models` (in its row format, `_json_row`); result links are prefixed with `base`.
    Sources are numbered in the order they are first cited."""
    refs: dict[tuple[str, str], dict[str, Any]] = {}
    for model in models:
        for task, item in model.get("sources", {}).items():
            source = refs.setdefault(
                (item["source"], item["url"]),
                {"number": len(refs) + 1, "citation": item["source"], "url": item["url"]},
            )
            source.setdefault("items", []).append(
                {
                    "model": model["name"],
                    "task": task,
                    "shown": _as_printed(model["scores"][task]),
                    "metric": item["metric"],
                    "sampling": item["sampling"],
                }
            )
    rows = []
    for model in models:
        cells = [
            _number_cell(model.get("parameters"), amount(model.get("parameters"))),
            _number_cell(model.get("tokens_trained"), amount(model.get("tokens_trained"))),
            _number_cell(model["average"], f"{model['average']:.1%}"),
            _number_cell(model["win_rate"], f"{model['win_rate']:.2f}"),
        ]
        cited = model.get("sources", {})
        for task in columns:
            score = model["scores"].get(task)
            if task in cited:
                item = cited[task]
                cell = _number_cell(score, _as_printed(score))
                cell["title"] = f"{item['metric']}; sampling: {item['sampling']}; {item['source']}"
                cell["ref"] = refs[(item["source"], item["url"])]["number"]
            elif score is not None:
                cell = _number_cell(score, f"{score:.1%}")
                cell["link"] = base + model["results"][task]
            else:
                cell = _number_cell(None, "-")
            cells.append(cell)
        rows.append({"name": model["name"], "published": model["published"], "cells": cells})
    head = ["model", "parameters", "tokens", "average", "win rate", *columns]
    return {"head": head, "rows": rows, "sources": list(refs.values())}


def _chart(models: list[dict[str, Any]], key: str | None) -> list[dict[str, Any]]:
    """Bars of the average pass@1 (or of pass@1 on `key`) for the `bars` macro."""
    bars = []
    for model in models:
        value = model["average"] if key is None else model["scores"].get(key, 0.0)
        shown = f"{value:.1%}" if key is None or key in model["scores"] else "-"
        kind = "published" if model["published"] else "strong"
        name = model["name"]
        bars.append(
            {"label": name[:28], "value": value, "note": shown, "title": name, "kind": kind}
        )
    return bars


def _page(ranked: list[Entry], columns: list[str], key: str | None = None) -> str:
    models = [_json_row(entry) for entry in ranked]
    return render(
        "leaderboard.html",
        title="codekiln leaderboard",
        metric=METRIC,
        key=key,
        board=board_view(models, columns),
        chart=_chart(models, key),
    )


def _as_printed(fraction: float) -> str:
    """A published number with the digits its source printed: 0.3155 -> '31.55%'."""
    return f"{round(fraction * 100, 2):g}%"


def _number_cell(value: Any, text: str) -> dict[str, Any]:
    """A cell sorted by `value` (-1 where there is no number) and showing `text`."""
    number = value if isinstance(value, int | float) else -1
    return {"value": repr(number), "text": text, "title": None, "ref": None, "link": None}
