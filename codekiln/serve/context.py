"""The prompt an editor's document gives: text around the cursor, within a token budget.

An editor asks for a completion at a cursor; the model sees the text before it (the prefix)
and, with fill-in-the-middle, the text after it (the suffix). A long file does not fit, so
`fit_context` keeps the lines nearest the cursor: `prefix_share` of the budget for the
prefix, the rest for the suffix, and whatever one side leaves unused goes to the other.
Lines are dropped whole (the farthest first), so the model never sees half an identifier at
the edge of its window, except for a single line longer than the whole budget.

`completion_mode` follows llm-ls: with code after the cursor on its line, the completion
ends at the line's end (single line); at the end of a line, it may run over several.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Counter = Callable[[str], int]


@dataclass(frozen=True)
class CursorContext:
    """What to send the model for a completion at one cursor."""

    prefix: str
    suffix: str
    multiline: bool


def completion_mode(line_after_cursor: str) -> bool:
    """True (multi-line) when only whitespace follows the cursor on its line.

    >>> completion_mode("\\n"), completion_mode(")\\n")
    (True, False)
    """
    return not line_after_cursor.strip()


def cursor_context(
    text: str, offset: int, budget: int, count: Counter, prefix_share: float = 0.75
) -> CursorContext:
    """The prefix and suffix at character `offset` of `text`, fitted to `budget` tokens.

    >>> cursor_context("a = 1\\nb = f(\\nc = 3\\n", 11, 100, len)
    CursorContext(prefix='a = 1\\nb = f', suffix='(\\nc = 3\\n', multiline=False)
    """
    offset = max(0, min(offset, len(text)))
    prefix, suffix = text[:offset], text[offset:]
    line_end = suffix.find("\n")
    rest_of_line = suffix if line_end < 0 else suffix[:line_end]
    prefix, suffix = fit_context(prefix, suffix, budget, count, prefix_share)
    return CursorContext(prefix, suffix, completion_mode(rest_of_line))


def fit_context(
    prefix: str, suffix: str, budget: int, count: Counter, prefix_share: float = 0.75
) -> tuple[str, str]:
    """The end of `prefix` and the start of `suffix` that fit `budget` tokens together.

    >>> fit_context("l1\\nl2\\nl3\\n", "r1\\nr2\\n", 9, len, prefix_share=0.5)
    ('l2\\nl3\\n', 'r1\\n')
    >>> fit_context("l1\\nl2\\n", "r1\\nr2\\nr3\\n", 100, len)
    ('l1\\nl2\\n', 'r1\\nr2\\nr3\\n')
    """
    if budget <= 0:
        return "", ""
    prefix_tokens, suffix_tokens = count(prefix), count(suffix)
    if prefix_tokens + suffix_tokens <= budget:
        return prefix, suffix
    suffix_budget = max(budget - prefix_tokens, int(budget * (1 - prefix_share)))
    suffix = keep_start(suffix, suffix_budget, count)
    prefix = keep_end(prefix, budget - count(suffix), count)
    return prefix, suffix


def keep_end(text: str, budget: int, count: Counter) -> str:
    """The longest run of whole last lines of `text` within `budget` (the last line's end if
    even that line is too long).

    >>> keep_end("one\\ntwo\\nthree", 10, len)
    'two\\nthree'
    >>> keep_end("abcdef", 3, len)
    'def'
    """
    lines = text.splitlines(keepends=True)
    fits = _longest(len(lines), lambda k: count("".join(lines[len(lines) - k :])) <= budget)
    if fits or not lines:
        return "".join(lines[len(lines) - fits :])
    last = lines[-1]
    chars = _longest(len(last), lambda k: count(last[len(last) - k :]) <= budget)
    return last[len(last) - chars :]


def keep_start(text: str, budget: int, count: Counter) -> str:
    """The longest run of whole first lines of `text` within `budget` (the first line's start
    if even that line is too long).

    >>> keep_start("one\\ntwo\\nthree", 8, len)
    'one\\ntwo\\n'
    """
    lines = text.splitlines(keepends=True)
    fits = _longest(len(lines), lambda k: count("".join(lines[:k])) <= budget)
    if fits or not lines:
        return "".join(lines[:fits])
    first = lines[0]
    return first[: _longest(len(first), lambda k: count(first[:k]) <= budget)]


def _longest(upper: int, ok: Callable[[int], bool]) -> int:
    """The largest k in [0, upper] with ok(k), for ok true up to some k and false after
    (binary search: O(log n) token counts, not one per line).

    >>> _longest(10, lambda k: k * k <= 30)
    5
    """
    low, high = 0, upper
    while low < high:
        middle = (low + high + 1) // 2
        if ok(middle):
            low = middle
        else:
            high = middle - 1
    return low
