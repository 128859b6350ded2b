"""What a target language provides to write MultiPL-E's rows.

A :class:`Language` gives the hooks :func:`~codekiln.evaluate.multiple.translate.translate_row`
calls, named as MultiPL-E's translators name them: ``translate_prompt`` (the description as
comments, then the signature), ``gen_literal``/``gen_var``/``gen_list``/``gen_tuple``/
``gen_dict``/``gen_call`` (a Python expression, bottom-up; ``finalize`` where a language
needs it), ``test_suite_prefix_lines``/``deep_equality``/``test_suite_suffix_lines`` (the
tests), and ``stop_tokens``. ``line_comments`` writes a description as line comments the way
the row's version of MultiPL-E does (``version``, set by ``translate_rows``).
"""

from __future__ import annotations

import ast
from typing import Any, ClassVar

from codekiln.evaluate.multiple.versions import DEFAULT_VERSION, VERSIONS, Version


class Unexpressible(ValueError):
    """A value, test or type that a translation cannot express; the message says why."""


class Language:
    """Base of the languages. Subclasses set the class attributes and the hooks."""

    key: ClassVar[str] = ""  # the task is multiple-<key>
    name: ClassVar[str] = ""
    true, false, null = "true", "false", "null"  # gen_literal's words
    # The row's "language" field and the terms.csv row of the language, when they are not
    # `key`; the row's stop tokens.
    row_language: ClassVar[str] = ""
    terms_key: ClassVar[str] = ""
    stop_tokens: ClassVar[tuple[str, ...]] = ()
    # The generation of MultiPL-E's rows written (versions.VERSIONS); translate_rows sets it.
    version: Version = VERSIONS[DEFAULT_VERSION]
    # Whether translate_prompt gets the docstring as written; by default it gets it cleaned
    # (translate.clean_description), as every MultiPL-E language but Python shows it.
    raw_description: ClassVar[bool] = False

    # --- MultiPL-E's rows: the hooks translate.translate_row calls -------------------------
    #
    # They follow MultiPL-E's translators: the ``gen_*`` hooks receive what the hooks
    # returned for the parts (bottom-up), so a language may carry types along with the text;
    # ``finalize(expr, "lhs" | "rhs")``, where a language defines it, turns a whole side into
    # its text. A hook raises (Unexpressible) where MultiPL-E's translator fails: a test case
    # drops the problem (or, in version 2023-09, a test case is left out).

    def translate_prompt(
        self, name: str, args: list[ast.arg], returns: ast.expr | None, description: str
    ) -> str:
        """The prompt: the description (reworded, examples translated) as a comment, and
        the function's header. Called once before the examples are translated (to read the
        signature's types), then with the final description."""
        raise NotImplementedError(f"{self.name} writes no MultiPL-E prompt yet")

    def line_comments(self, description: str, first: str, rest: str | None = None) -> str:
        """The description as line comments, as MultiPL-E's translators write them: `first`
        before the (stripped) text, and `rest` (default `first`) in place of every line start
        the version's pattern matches, with that line's indentation.

        >>> Language().line_comments("Sum.\\n    >>> f(1)\\n    1\\n", "//", "// ")
        '//Sum.\\n// >>> f(1)\\n// 1\\n'
        """
        rest = first if rest is None else rest
        return first + self.version.line_start.sub("\n" + rest, description.strip()) + "\n"

    def test_suite_prefix_lines(self, entry_point: str) -> list[str]:
        raise NotImplementedError(f"{self.name} writes no MultiPL-E tests yet")

    def test_suite_suffix_lines(self) -> list[str]:
        raise NotImplementedError(f"{self.name} writes no MultiPL-E tests yet")

    def deep_equality(self, left: Any, right: Any) -> str:
        raise NotImplementedError(f"{self.name} writes no MultiPL-E tests yet")

    def gen_literal(self, value: Any) -> Any:
        """A Python constant as its literal; a number as Python writes it (3 or 3.0)."""
        if isinstance(value, bool):
            return self.true if value else self.false
        if value is None:
            return self.null
        if isinstance(value, str):
            return f'"{value}"'
        return repr(value)

    def gen_var(self, name: str) -> Any:
        return name

    def gen_list(self, items: list[Any]) -> Any:
        return "[" + ", ".join(items) + "]"

    def gen_tuple(self, items: list[Any]) -> Any:
        return self.gen_list(items)

    def gen_dict(self, keys: list[Any], values: list[Any]) -> Any:
        raise Unexpressible(f"{self.name} writes no dict")

    def gen_call(self, function: Any, args: list[Any]) -> Any:
        return f"{function}(" + ", ".join(args) + ")"
