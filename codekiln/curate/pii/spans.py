"""What the PII detectors share: the span they report and how they read the text around it.

Context checks look along a candidate's line (`start_of_line`, `end_of_line`), and the scans that
need a word on the line read only the lines that hold it (`first_per_line`, `lines_holding`,
`finditer_lines`). KEY and PASSWORD rules read names and config lines alike (`NAME_PARTS`,
`CONFIG_LINE_PREFIXES`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PII_KINDS = ("EMAIL", "IP_ADDRESS", "KEY", "PASSWORD")


@dataclass(frozen=True)
class PiiSpan:
    """One piece of PII: `text[start:end] == value`, of one of `PII_KINDS`."""

    start: int
    end: int
    kind: str
    value: str


# How far context checks look along a line. Bounded so that a minified file, one line of
# megabytes, costs linear time instead of a full-line scan per candidate.
_LINE_WINDOW = 1000


def start_of_line(text: str, pos: int) -> int:
    """Start of the line holding `pos`, or `_LINE_WINDOW` characters back on a longer line."""
    lo = max(0, pos - _LINE_WINDOW)
    newline = text.rfind("\n", lo, pos)
    return newline + 1 if newline != -1 else lo


def end_of_line(text: str, pos: int) -> int:
    """End of the line holding `pos`, or `_LINE_WINDOW` characters on."""
    hi = min(len(text), pos + _LINE_WINDOW)
    newline = text.find("\n", pos, hi)
    return newline if newline != -1 else hi


def lines_holding(text: str, positions: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each line, newline excluded, that holds one of `positions`, in order.

    >>> lines_holding("ab\\ncd\\nef", [4, 1, 3])
    [(0, 2), (3, 5)]
    """
    lines: list[tuple[int, int]] = []
    last_end = -1
    for pos in sorted(positions):
        if pos <= last_end:
            continue
        end = text.find("\n", pos)
        last_end = len(text) if end == -1 else end
        lines.append((text.rfind("\n", 0, pos) + 1, last_end))
    return lines


def first_per_line(haystack: str | bytes, needle: str | bytes, text: str) -> list[int]:
    """Offsets of the first `needle` on each line of `haystack` that holds one; lines end at
    the newlines of `text`, which has the same length (the text itself, or a mapped copy).

    >>> first_per_line("key key\\nno\\nkey", "key", "key key\\nno\\nkey")
    [0, 11]
    """
    positions = []
    pos = haystack.find(needle)
    while pos != -1:
        positions.append(pos)
        end = text.find("\n", pos)
        pos = -1 if end == -1 else haystack.find(needle, end)
    return positions


def finditer_lines(regex: re.Pattern, text: str, lines: list[tuple[int, int]]):
    """`regex.finditer(text)` for a regex whose matches never span a newline, scanning only
    `lines`: the same matches as the whole text gives there. With pos and endpos, lookbehinds
    still see the text before the line, and a lookahead at the line's end sees its end, as at
    a newline."""
    for start, end in lines:
        yield from regex.finditer(text, start, end)


# The parts of a name, to be lowercased: `DB_PASSWORD_2` gives DB, PASSWORD, 2 and
# `HTTPPasswordMgr` gives HTTP, Password, Mgr.
NAME_PARTS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
# What may precede a name on a line that assigns a literal: shell `export`/`set`, Dockerfile
# `ENV`/`ARG`, a YAML list dash.
CONFIG_LINE_PREFIXES = frozenset(("", "export", "set", "SET", "-", "ENV", "ARG"))
