"""MultiPL-E's own copies of the HumanEval problems, as edits of HumanEval's.

MultiPL-E (nuprl/MultiPL-E) translates its copies of the problems, not HumanEval's text:
``datasets/originals-with-cleaned-doctests/`` (docstrings whose examples were cleaned by hand
into ``>>> call`` / result pairs) for most problems, ``datasets/originals/`` for the rest. They
give every signature types, and some tests differ from HumanEval's. These are facts of the
benchmark, stored in ``cleaned.json`` as the edits that turn HumanEval's problem (by number)
into MultiPL-E's:

- ``skipped``: the problems MultiPL-E has no row for, in any language, and why (each has a
  helper function in its prompt, the encoder its tests use or ``poly``, which MultiPL-E's
  prompt reader rejects: only the entry point may be defined);
- ``signatures``: the ``def`` line where MultiPL-E's differs (its originals annotate every
  parameter and result; HumanEval leaves 131 bare);
- ``docstrings``: per problem, ``[start, end, lines]`` edits: the docstring's lines
  ``start:end`` (after its doctest examples are written as Python, see
  ``translate.read_original``) are replaced by ``lines``. These are MultiPL-E's hand
  cleanings: examples rewritten as ``>>> call`` / result pairs, results filled in, unreadable
  ones dropped;
- ``tests``: the same for the list of ``LEFT == RIGHT`` asserts (bare and tolerance asserts
  written as equalities, some cases added, dropped or given floats).

The data was derived by comparing HumanEval with MultiPL-E's Python rows
(``prompts/humaneval-py-reworded.jsonl``), which write each original as it is, with its
examples and tests in Python.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

Edit = tuple[int, int, tuple[str, ...]]


@dataclass(frozen=True)
class Cleanings:
    """``cleaned.json``, keyed by HumanEval problem number (see the module docstring)."""

    skipped: dict[int, str]
    signatures: dict[int, str]
    docstrings: dict[int, tuple[Edit, ...]]
    tests: dict[int, tuple[Edit, ...]]


@functools.cache
def cleanings() -> Cleanings:
    """MultiPL-E's edits of the HumanEval problems, read once from ``cleaned.json``.

    >>> cleanings().docstrings[12]
    ((3, 4, ('    None',)),)
    """
    path = resources.files(__package__).joinpath("cleaned.json")
    data = json.loads(path.read_text(encoding="utf-8"))

    def edits(table: dict[str, list]) -> dict[int, tuple[Edit, ...]]:
        return {
            int(number): tuple((start, end, tuple(lines)) for start, end, lines in changes)
            for number, changes in table.items()
        }

    return Cleanings(
        skipped={int(number): why for number, why in data["skipped"].items()},
        signatures={int(number): line for number, line in data["signatures"].items()},
        docstrings=edits(data["docstrings"]),
        tests=edits(data["tests"]),
    )


def apply(lines: Sequence[str], edits: Sequence[Edit]) -> list[str]:
    """`lines` with each ``(start, end, new)`` edit applied (positions refer to `lines`).

    >>> apply(["a", "b", "c"], [(1, 2, ("B", "B2")), (3, 3, ("d",))])
    ['a', 'B', 'B2', 'c', 'd']
    """
    out = list(lines)
    for start, end, new in sorted(edits, reverse=True):
        out[start:end] = new
    return out


def apply_list(items: Sequence[str], edits: Sequence[Edit]) -> tuple[str, ...]:
    """`apply` for a tuple of test lines."""
    return tuple(apply(items, edits))
