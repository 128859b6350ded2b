"""One progress bar for every stage: completed units, and running totals with their rates."""

from __future__ import annotations

import time
from typing import Any


def rates(totals: dict[str, float], elapsed: float) -> str:
    """The text after the bar: each total with its rate per second (bytes shown as MB/s).

    >>> rates({"files": 100, "bytes": 5e6}, 2.0)
    '100 files · 50 files/s · 2.5 MB/s'
    """
    elapsed = max(elapsed, 1e-6)
    parts = []
    for name, value in totals.items():
        if name == "bytes":
            parts.append(f"{value / elapsed / 1e6:,.1f} MB/s")
        else:
            parts.append(f"{value:,.0f} {name} · {value / elapsed:,.0f} {name}/s")
    return " · ".join(parts)


class StageProgress:
    """A rich progress bar over `total` units of `unit`, or nothing when disabled.

    `advance(n, files=..., bytes=...)` moves the bar by n units and adds to the totals.
    """

    def __init__(self, label: str, total: int, unit: str, enabled: bool = True) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.enabled = enabled
        self.totals: dict[str, float] = {}
        self.started = time.time()

    def __enter__(self) -> StageProgress:
        if self.enabled:
            self._bar = _bar(self.label, self.unit + " · {task.fields[rate]}")
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, rate="")
        return self

    def advance(self, completed: int = 1, **counts: float) -> None:
        for name, value in counts.items():
            self.totals[name] = self.totals.get(name, 0) + value
        if self.enabled:
            text = rates(self.totals, time.time() - self.started)
            self._bar.update(self._task, advance=completed, rate=text)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self._bar.__exit__(*exc)


class PhaseProgress:
    """One bar per phase ("humaneval: generate", "humaneval: execute", ...), fed by a
    `progress(label, done, total)` callback; nothing when disabled."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> PhaseProgress:
        if self.enabled:
            self._bar = _bar("{task.description}")
            self._bar.__enter__()
        return self

    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if label not in self._tasks:
            self._tasks[label] = self._bar.add_task(label, total=total)
        self._bar.update(self._tasks[label], completed=done, total=total)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self._bar.__exit__(*exc)


def _bar(label: str, after: str | None = None):
    """A rich bar: label, bar, done/total, then `after` (if any) and the time elapsed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn()]
    if after is not None:
        columns.append(TextColumn(after))
    return Progress(*columns, TimeElapsedColumn())
