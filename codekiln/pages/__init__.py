"""Every HTML page codekiln writes, from one set of Jinja2 templates and one stylesheet.

    templates/base.html     the layout every page extends; inlines pages.css, so each page
                            is a single file that opens from disk or any static host
    templates/pages.css     the one stylesheet
    templates/macros.html   the pieces pages share: tables, bar charts, the line chart,
                            sample completions, the leaderboard table
    templates/<page>.html   curate.html, evaluation.html, leaderboard.html, workspace.html

Modules build plain values (numbers, strings, lists of dicts) and call `render`; the
templates lay them out. Autoescaping is on: no caller escapes by hand.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2


def count(value: int) -> str:
    """1234567 -> '1,234,567'."""
    return f"{value:,}"


def megabytes(size: int) -> str:
    """1234567 -> '1.23 MB'."""
    return f"{size / 1e6:,.2f} MB"


def amount(value: Any) -> str:
    """A large count in short: 12_345_678 -> '12.3M', 874 -> '874', None -> '-'."""
    if not isinstance(value, int | float):
        return "-"
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return str(int(value))


def percent(fraction: float, digits: int = 1) -> str:
    """0.1234 -> '12.3%'."""
    return f"{fraction:.{digits}%}"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("codekiln.pages", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(count=count, mb=megabytes, percent=percent)
    return env


def render(template: str, **context: Any) -> str:
    """The page `template` (a file in templates/) filled in with `context`.

    >>> "<h1>a &lt;b&gt;</h1>" in render("base.html", title="a <b>")
    True
    """
    return environment().get_template(template).render(**context)
