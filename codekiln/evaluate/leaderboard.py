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
from codekiln.manifest import write_atomic, write_json

METRIC = "pass@1"


@dataclass
class Entry:
    """One model's row: its facts and its pass@1 (and result file) per task."""

    name: str
    info: dict[str, Any]
    scores: dict[str, float] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    average: float = 0.0
    win_rate: float = 0.0


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


def build_leaderboard(paths: list[str | Path], site: str | Path) -> Path:
    """Write the leaderboard site for the results under `paths`; returns index.html."""
    site = Path(site)
    entries: dict[str, Entry] = {}
    tasks: set[str] = set()
    for path in find_results(paths):
        result = read_result(path)
        info = result.get("model", {}) or {}
        name = str(info.get("name") or path.parent.parent.name)
        entry = entries.setdefault(name, Entry(name, info))
        task = result["task"]
        tasks.add(task)
        entry.scores[task] = float(result["metrics"][METRIC])
        link = f"results/{_slug(name)}/{_slug(task)}.json"
        (site / link).parent.mkdir(parents=True, exist_ok=True)
        write_json(site / link, result)
        entry.links[task] = link
    columns = _ordered(tasks)
    rates = win_rates({name: e.scores for name, e in entries.items()})
    for entry in entries.values():
        entry.average = sum(entry.scores.values()) / len(entry.scores)
        entry.win_rate = rates[entry.name]
    ranked = sorted(entries.values(), key=lambda e: (-round(e.average, 9), e.name))
    write_json(
        site / "leaderboard.json",
        {
            "metric": METRIC,
            "tasks": columns,
            "models": [
                {
                    "name": e.name,
                    "average": e.average,
                    "win_rate": e.win_rate,
                    "scores": e.scores,
                    "parameters": e.info.get("parameters"),
                    "tokens_trained": e.info.get("tokens_trained"),
                    "results": e.links,
                }
                for e in ranked
            ],
        },
    )
    index = site / "index.html"
    write_atomic(index, _page(ranked, columns))
    return index


def _ordered(tasks: set[str]) -> list[str]:
    """HumanEval first, then its infilling, then MultiPL-E languages alphabetically."""
    first = [t for t in ("humaneval", "humaneval-infill") if t in tasks]
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


def _chart(ranked: list[Entry]) -> str:
    """Horizontal bars of the average pass@1, as inline SVG."""
    height = 24 * len(ranked) + 10
    top = max((e.average for e in ranked), default=0.0) or 1.0
    bars = []
    for i, entry in enumerate(ranked):
        width = 380 * entry.average / top
        y = 5 + 24 * i
        bars.append(
            f'<text x="0" y="{y + 15}" font-size="12">{escape(entry.name[:28])}</text>'
            f'<rect x="200" y="{y}" width="{width:.1f}" height="18" fill="#4a7bd0"></rect>'
            f'<text x="{205 + width:.1f}" y="{y + 14}" font-size="12">'
            f"{entry.average:.1%}</text>"
        )
    return (
        f'<svg id="chart" width="660" height="{height}" role="img" '
        f'aria-label="average {METRIC} per model">{"".join(bars)}</svg>'
    )


def _page(ranked: list[Entry], columns: list[str]) -> str:
    head = ["model", "parameters", "tokens", "average", "win rate", *columns]
    header = "".join(
        f'<th data-col="{i}" data-kind="{"text" if i == 0 else "number"}">{escape(h)}</th>'
        for i, h in enumerate(head)
    )
    rows = []
    for entry in ranked:
        cells = [
            f'<td data-value="{escape(entry.name)}">{escape(entry.name)}</td>',
            _number_cell(entry.info.get("parameters"), _amount(entry.info.get("parameters"))),
            _number_cell(
                entry.info.get("tokens_trained"), _amount(entry.info.get("tokens_trained"))
            ),
            _number_cell(entry.average, f"{entry.average:.1%}"),
            _number_cell(entry.win_rate, f"{entry.win_rate:.2f}"),
        ]
        for task in columns:
            if task in entry.scores:
                score = entry.scores[task]
                link = escape(entry.links[task])
                cells.append(
                    f'<td data-value="{score!r}"><a href="{link}" title="generation settings '
                    f'and per-problem outcomes">{score:.1%}</a></td>'
                )
            else:
                cells.append('<td data-value="-1">-</td>')
        rows.append(f'<tr data-model="{escape(entry.name)}">{"".join(cells)}</tr>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>codekiln leaderboard</title>
<style>body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
th {{ cursor: pointer; background: #f0f0f0; }} td[data-value] {{ text-align: right; }}
td:first-child {{ text-align: left; }} th.sorted-desc::after {{ content: " \\25BC"; }}
th.sorted-asc::after {{ content: " \\25B2"; }}</style></head><body>
<h1>Code model leaderboard</h1>
<p>{METRIC} per task (HumanEval, its infilling variant, and HumanEval translated into other
languages, MultiPL-E style). Average: mean over the model's tasks. Win rate: on each task, the
share of other models it beats (ties count half), averaged. Click a header to sort; click a
score for its generation settings and per-problem outcomes.</p>
<table id="board"><thead><tr>{header}</tr></thead><tbody>
{"".join(rows)}
</tbody></table>
<h2>Average {METRIC}</h2>
{_chart(ranked)}
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


def _number_cell(value: Any, text: str) -> str:
    number = value if isinstance(value, int | float) else -1
    return f'<td data-value="{number!r}">{escape(text)}</td>'
