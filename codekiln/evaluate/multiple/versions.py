"""The three generations of MultiPL-E's rows in use, and the rules that differ between them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from codekiln.evaluate.multiple.terms import TERMS, TERMS_2023_09


@dataclass(frozen=True)
class Version:
    """One generation of MultiPL-E's rows: the rules that changed between them.

    The problems, examples and tests are the same in all three; the prompts' comments are not,
    and a few kept problems and words differ.
    """

    name: str
    commit: str  # the nuprl/MultiPL-E commit that generated the rows
    deindent: bool  # the description goes through clean_description before the final prompt
    line_start: re.Pattern[str]  # where a line comment's marker goes (Language.line_comments)
    skip_failing_tests: bool  # a test the language cannot write is left out (else: problem dropped)
    terms: dict[str, tuple[str, ...]]  # the rewording table
    lua_marks_line_starts: bool  # Lua comments like the others, not simply every line


VERSIONS: dict[str, Version] = {
    # The October 2023 regeneration (after MultiPL-E issue #114): what the dataset serves at the
    # BigCode harness's current pin. Every docstring line is a comment.
    "3": Version(
        "3", "7bc20f2", deindent=True, line_start=re.compile(r"\n(\s*)"),
        skip_failing_tests=False, terms=TERMS, lua_marks_line_starts=False,
    ),
    # The rows of the StarCoder papers' time (dataset 2.1.0, June 2023): no deindenting, so every
    # line is indented and gets its marker.
    "2.1.0": Version(
        "2.1.0", "11b407b", deindent=False, line_start=re.compile(r"\n(\s+)"),
        skip_failing_tests=False, terms=TERMS_2023_09, lua_marks_line_starts=True,
    ),
    # MultiPL-E's prompts/ files of September 2023: deindented, then only the lines still
    # indented get a marker, so most prompts are not valid code in the target language.
    "2023-09": Version(
        "2023-09", "3c9a62a", deindent=True, line_start=re.compile(r"\n(\s+)"),
        skip_failing_tests=True, terms=TERMS_2023_09, lua_marks_line_starts=False,
    ),
}  # fmt: skip
DEFAULT_VERSION = "3"
