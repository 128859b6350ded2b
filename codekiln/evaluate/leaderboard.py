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
from html import escape
from pathlib import Path
from typing import Any

from codekiln.errors import UserError
from codekiln.evaluate.published import PARAMETERS, Published, published_for
from codekiln.manifest import write_atomic, write_json

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


def _amount(value: Any) -> str:
    """12_345_678 -> '12.3M'."""
    if not isinstance(value, int | float):
        return "-"
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return str(int(value))


def _chart(ranked: list[Entry], key: str | None) -> str:
    """Horizontal bars of the average pass@1 (or of pass@1 on `key`), as inline SVG."""

    def value(entry: Entry) -> float:
        return entry.average if key is None else entry.scores.get(key, 0.0)

    label = f"average {METRIC}" if key is None else f"{METRIC} on {key}"
    height = 24 * len(ranked) + 10
    top = max((value(e) for e in ranked), default=0.0) or 1.0
    bars = []
    for i, entry in enumerate(ranked):
        width = 380 * value(entry) / top
        y = 5 + 24 * i
        colour = "#9aa5b8" if entry.published else "#4a7bd0"
        shown = f"{value(entry):.1%}" if key is None or key in entry.scores else "-"
        bars.append(
            f'<text x="0" y="{y + 15}" font-size="12">{escape(entry.name[:28])}</text>'
            f'<rect x="200" y="{y}" width="{width:.1f}" height="18" fill="{colour}"></rect>'
            f'<text x="{205 + width:.1f}" y="{y + 14}" font-size="12">{shown}</text>'
        )
    return (
        f'<svg id="chart" width="660" height="{height}" role="img" '
        f'aria-label="{label} per model">{"".join(bars)}</svg>'
    )


def _sources(ranked: list[Entry]) -> list[Published]:
    """Every published number shown, grouped by source in first-seen order."""
    items = [item for entry in ranked for item in entry.published.values()]
    order = {key: i for i, key in enumerate(dict.fromkeys(i.source.key for i in items))}
    return sorted(items, key=lambda item: order[item.source.key])


def _sources_section(items: list[Published], refs: dict[str, int]) -> str:
    if not items:
        return ""
    blocks = []
    for key, number in refs.items():
        mine = [item for item in items if item.source.key == key]
        source = mine[0].source
        lines = "".join(
            f"<li>{escape(item.model)}, {escape(item.task)}: {_as_printed(item.pass_at_1)} "
            f"({escape(item.metric)}; sampling: {escape(item.sampling)})</li>"
            for item in mine
        )
        blocks.append(
            f'<li id="src-{number}"><a href="{escape(source.url)}">'
            f"{escape(source.citation)}</a><ul>{lines}</ul></li>"
        )
    return (
        '<h2 id="published">Published rows and their sources</h2>\n<p>Rows marked '
        "<em>published</em> are numbers copied from papers, model cards and the BigCode "
        "leaderboard, not run here: "
        "each was measured with its source's prompts, sampling and sandbox, listed below."
        f'</p>\n<ol class="sources">{"".join(blocks)}</ol>'
    )


def _page(ranked: list[Entry], columns: list[str], key: str | None = None) -> str:
    head = ["model", "parameters", "tokens", "average", "win rate", *columns]
    header = "".join(
        f'<th data-col="{i}" data-kind="{"text" if i == 0 else "number"}">{escape(h)}</th>'
        for i, h in enumerate(head)
    )
    cited = _sources(ranked)
    refs = {k: i for i, k in enumerate(dict.fromkeys(i.source.key for i in cited), 1)}
    rows = []
    for entry in ranked:
        name = escape(entry.name)
        if entry.published:
            name += ' <span class="tag">published</span>'
        cells = [
            f'<td data-value="{escape(entry.name)}">{name}</td>',
            _number_cell(entry.info.get("parameters"), _amount(entry.info.get("parameters"))),
            _number_cell(
                entry.info.get("tokens_trained"), _amount(entry.info.get("tokens_trained"))
            ),
            _number_cell(entry.average, f"{entry.average:.1%}"),
            _number_cell(entry.win_rate, f"{entry.win_rate:.2f}"),
        ]
        for task in columns:
            if task in entry.published:
                item = entry.published[task]
                title = escape(f"{item.metric}; sampling: {item.sampling}; {item.source.citation}")
                number = refs[item.source.key]
                shown = _as_printed(item.pass_at_1)
                cells.append(
                    f'<td data-value="{item.pass_at_1!r}" title="{title}">{shown}'
                    f'<sup><a href="#src-{number}">[{number}]</a></sup></td>'
                )
            elif task in entry.scores:
                score = entry.scores[task]
                link = escape(entry.links[task])
                cells.append(
                    f'<td data-value="{score!r}"><a href="{link}" title="generation settings '
                    f'and per-problem outcomes">{score:.1%}</a></td>'
                )
            else:
                cells.append('<td data-value="-1">-</td>')
        kind = ' class="published"' if entry.published else ""
        rows.append(f'<tr data-model="{escape(entry.name)}"{kind}>{"".join(cells)}</tr>')
    ranking = (
        "Rows are ranked by average."
        if key is None
        else f"Rows are ranked by {METRIC} on {escape(key)}; published rows are greyed."
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>codekiln leaderboard</title>
<style>body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
th {{ cursor: pointer; background: #f0f0f0; }} td[data-value] {{ text-align: right; }}
td:first-child {{ text-align: left; }} th.sorted-desc::after {{ content: " \\25BC"; }}
th.sorted-asc::after {{ content: " \\25B2"; }}
tr.published {{ background: #f4f4f4; color: #555; font-style: italic; }}
.tag {{ font-size: 75%; font-style: normal; border: 1px solid #999; border-radius: 3px;
padding: 0 3px; }}</style></head><body>
<h1>Code model leaderboard</h1>
<p>{METRIC} per task (HumanEval, HumanEval+, the FIM paper's infilling sets, and MultiPL-E's
translations of HumanEval into other languages). Average: mean over the model's tasks. Win
rate: on each task, the share of other models it beats (ties count half), averaged. Click a
header to sort; click a score for its generation settings and per-problem outcomes.
{ranking}</p>
<table id="board"><thead><tr>{header}</tr></thead><tbody>
{"".join(rows)}
</tbody></table>
{_sources_section(cited, refs)}
<h2>{"Average " + METRIC if key is None else METRIC + " on " + escape(key)}</h2>
{_chart(ranked, key)}
<script>
function sortBoard(col, dir) {{
  const table = document.getElementById("board");
  const th = table.tHead.rows[0].cells[col];
  const text = th.dataset.kind === "text";
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {{
    const x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
    const order = text ? x.localeCompare(y) : parseFloat(x) - parseFloat(y);
    return dir === "asc" ? order : -order;
  }});
  rows.forEach(r => body.appendChild(r));
  for (const cell of table.tHead.rows[0].cells) cell.className = "";
  th.className = "sorted-" + dir;
  history.replaceState(null, "", "#sort=" + col + "&dir=" + dir);
}}
document.querySelectorAll("#board th").forEach(th => th.addEventListener("click", () => {{
  const dir = th.className === "sorted-desc" ? "asc" : "desc";
  sortBoard(parseInt(th.dataset.col), dir);
}}));
const wanted = new URLSearchParams(location.hash.slice(1));
if (wanted.has("sort")) sortBoard(parseInt(wanted.get("sort")), wanted.get("dir") || "desc");
</script>
</body></html>
"""


def _as_printed(fraction: float) -> str:
    """A published number with the digits its source printed: 0.3155 -> '31.55%'."""
    return f"{round(fraction * 100, 2):g}%"


def _number_cell(value: Any, text: str) -> str:
    number = value if isinstance(value, int | float) else -1
    return f'<td data-value="{number!r}">{escape(text)}</td>'
