"""Bash as MultiPL-E's rows write it: every value is a double-quoted word (``"3"``,
``"true"``, ``"None"``); a list is carried as its items' words until a call or a test writes
it, as one word of space-separated items (``"1 2 3"``), of rows joined by a backslash-n
(``"1 2\\n3 4"``), or, for a dict, of ``key,value`` rows. An item with whitespace in it cannot
be written (the problem is dropped; version 2023-09 leaves the test out). A test compares the
call's output as text, ``[[ $(candidate ...) = "..." ]]``; the prompt ends with a note per
argument on how it is encoded. A doctest's result is shown as Python prints the carried value
(``['"1"', '"2"']`` for a list).
"""

from __future__ import annotations

import ast
from typing import Any

from codekiln.evaluate.multiple.base import Language, Unexpressible


class Bash(Language):
    key = "sh"
    name = "Bash"
    stop_tokens = ("\n}",)

    def translate_prompt(
        self, name: str, args: list[ast.arg], returns: ast.expr | None, description: str
    ) -> str:
        notes = "".join(_argument_note(arg.annotation, i) for i, arg in enumerate(args, 1))
        comment = "#!/bin/bash\n" + self.line_comments(description, "# ")
        return comment + ("#\n" + notes if notes else "") + f"{name}() {{\n"

    def gen_literal(self, value: Any) -> str:
        if isinstance(value, bool):
            return _word("true" if value else "false")
        if isinstance(value, str):
            for char, escaped in (
                ("\\", "\\\\"),
                ("\n", "\\n"),
                ('"', '\\"'),
                ("$", "\\$"),
                ("!", "\\!"),
            ):
                value = value.replace(char, escaped)
            return _word(value)
        return _word("None" if value is None else repr(value))

    def gen_list(self, items: list[Any]) -> list[Any]:
        if any(isinstance(item, str) and _has_space(item) for item in items):
            raise Unexpressible("a Bash list item cannot hold whitespace")
        return list(items)

    def gen_tuple(self, items: list[Any]) -> list[Any]:
        return self.gen_list(items)

    def gen_dict(self, keys: list[Any], values: list[Any]) -> dict[Any, Any]:
        if any(isinstance(x, str) and _has_space(x) for x in [*keys, *values]):
            raise Unexpressible("a Bash CSV row cannot hold whitespace")
        return dict(zip(keys, values, strict=True))

    def gen_call(self, function: str, args: list[Any]) -> str:
        return f"$({function} " + " ".join(_text(arg) for arg in args) + ")"

    def test_suite_prefix_lines(self, entry_point: str) -> list[str]:
        # The prompt's function is closed here: its "}" was the stop token.
        return [
            "}",
            "",
            "candidate() {",
            f'    {entry_point} "$@"',
            "}",
            "",
            "set -e",
            "run_test() {",
        ]

    def test_suite_suffix_lines(self) -> list[str]:
        return ["}", "", "run_test"]

    def deep_equality(self, left: Any, right: Any) -> str:
        return f"    [[ {_text(left)} = {_text(right)} ]]"


def _word(text: str) -> str:
    """`text` in double quotes, unless it already begins and ends with one."""
    return text if _quoted(text) else f'"{text}"'


def _quoted(text: str) -> bool:
    return text[:1] == '"' and text[-1:] == '"'


def _unquote(text: str) -> str:
    return text[1:-1] if _quoted(text) else text


def _has_space(text: str) -> bool:
    return any(char in text for char in " \t\n\r")


def _text(value: Any) -> str:
    """A carried value as the one word MultiPL-E's Bash writes for it.

    >>> _text(['"1"', '"2"']), _text([['"1"', '"2"'], ['"3"']]), _text([]), _text({'"a"': '"1"'})
    ('"1 2"', '"1 2\\\\n3"', '""', '"a,1"')
    """
    if isinstance(value, list):
        if not value:
            return '""'
        if all(isinstance(v, dict) for v in value):
            raise Unexpressible("a Bash list cannot hold dicts")
        # Iterating each item (a word's characters, a list's items, a dict's keys): when all
        # are lists, the value is nested three deep (or holds only empty lists).
        if all(isinstance(inner, list) for v in value for inner in v):
            raise Unexpressible("a Bash list cannot be nested three deep")
        if all(isinstance(v, list) for v in value):
            return _word("\\n".join(_unquote(_text(v)) for v in value))
        return _word(" ".join(_unquote(_text(v)) for v in value))
    if isinstance(value, dict):
        if any(not isinstance(v, str) for v in value.values()):
            raise Unexpressible("a Bash CSV cannot hold lists or dicts")
        return _word("\\n".join(f"{_unquote(k)},{_unquote(v)}" for k, v in value.items()))
    return value


def _argument_note(annotation: ast.expr | None, position: int) -> str:
    """The prompt's comment on how argument `position` is encoded, from its annotation."""
    head = f"# ${position} is"
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name):
        outer, inner = annotation.value.id, annotation.slice
        if (
            outer == "List"
            and isinstance(inner, ast.Subscript)
            and isinstance(inner.value, ast.Name)
        ):
            return f"{head} a newline-separated, space-separated list\n"
        if outer in ("List", "Tuple"):
            return f"{head} a space-separated list\n"
        if outer == "Dict":
            return f"{head} a two column CSV in key,value order\n"
        return f"{head} an argument\n"
    if isinstance(annotation, ast.Name):
        known = {"int": "an integer", "float": "a floating point", "str": "a string"}
        # Any other name is written with a dollar sign: "$1 is a $bool".
        return f"{head} {known.get(annotation.id, 'a $' + annotation.id)}\n"
    return f"{head} an argument\n"
