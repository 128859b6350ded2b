"""PHP, Ruby, Lua and Perl as MultiPL-E's rows write them (no types to write):

- the docstring becomes line comments (``Language.line_comments``; Lua, after 2.1.0, puts
  ``-- `` before every line of the deindented description);
- values are Python's literals respelled: Lua writes numbers and strings as Python's ``repr``
  (``'x'``, ``None``), PHP escapes only ``"`` and newlines, Ruby and Perl no character at all;
  Perl writes True as ``1`` and False as ``""``;
- the tests use each language's test library (luaunit, Test::Unit, Test::Deep) or, in PHP, a
  strict ``!==`` comparison that throws.
"""

from __future__ import annotations

import ast
from typing import Any

from codekiln.evaluate.multiple.base import Language, Unexpressible


def _literal(value: Any, true: str, false: str, null: str) -> str:
    """A Python constant other than a string in a dynamic language: numbers as Python writes
    them (``3``, ``3.0``, ``1e-05``), booleans and None as the language's words."""
    if isinstance(value, bool):
        return true if value else false
    return null if value is None else repr(value)


# MultiPL-E's Perl translator writes True as the number 1, not as text: a list or a call that
# holds it cannot be written (its test case is left out, or its problem dropped for a doctest),
# while a tuple, a dict, an expected value or a doctest's result shows it as 1.
PERL_TRUE = 1


def _perl_join(items: list[str | int]) -> str:
    if any(not isinstance(item, str) for item in items):
        raise Unexpressible("MultiPL-E's Perl cannot write True inside a list or a call")
    return ", ".join(items)  # type: ignore[arg-type]


class Php(Language):
    key = "php"
    name = "PHP"
    stop_tokens = ("\nfunction", "\n?>", "\n//", "\n#")

    def translate_prompt(
        self, name: str, args: list[ast.arg], returns: ast.expr | None, description: str
    ) -> str:
        params = ", ".join("$" + arg.arg for arg in args)
        return (
            "<?php\n" + self.line_comments(description, "// ") + f"function {name}({params}) {{\n"
        )

    def gen_literal(self, value: Any) -> str:
        if isinstance(value, str):  # only quotes and line breaks are escaped
            return '"' + value.replace('"', '\\"').replace("\n", "\\n") + '"'
        return _literal(value, "true", "false", "null")

    def gen_list(self, items: list[str]) -> str:
        return "array(" + ", ".join(items) + ")"

    def gen_tuple(self, items: list[str]) -> str:
        return self.gen_list(items)

    def gen_dict(self, keys: list[str], values: list[str]) -> str:
        return self.gen_list([f"{k} => {v}" for k, v in zip(keys, values, strict=True)])

    def test_suite_prefix_lines(self, entry_point: str) -> list[str]:
        return [
            "function candidate(...$args) {",
            f"    return {entry_point}(...$args);",
            "}",
            "",
            "function test(): void {",
        ]

    def test_suite_suffix_lines(self) -> list[str]:
        return ["}", "", "test();"]

    def deep_equality(self, left: str, right: str) -> str:
        return f'    if ({left} !== {right}) {{ throw new Exception("Test failed!"); }}'


class Ruby(Language):
    key = "rb"
    name = "Ruby"
    stop_tokens = ("\nclass", "\ndef", "\n#", "\n\n")

    def translate_prompt(
        self, name: str, args: list[ast.arg], returns: ast.expr | None, description: str
    ) -> str:
        params = ", ".join(arg.arg for arg in args).lower()  # a capital would make a constant
        return self.line_comments(description, "# ") + f"def {name}({params})\n"

    def gen_literal(self, value: Any) -> str:
        if isinstance(value, str):  # in double quotes, nothing escaped
            return f'"{value}"'
        return _literal(value, "true", "false", "nil")

    def gen_list(self, items: list[str]) -> str:
        return "[" + ", ".join(items) + "]"

    def gen_tuple(self, items: list[str]) -> str:
        return self.gen_list(items)

    def gen_dict(self, keys: list[str], values: list[str]) -> str:
        return "{" + ", ".join(f"{k} => {v}" for k, v in zip(keys, values, strict=True)) + "}"

    def gen_call(self, function: str, args: list[str]) -> str:
        return f"{function}.call(" + ", ".join(args) + ")"

    def test_suite_prefix_lines(self, entry_point: str) -> list[str]:
        return [
            "require 'test/unit'",
            "class TestHumanEval < Test::Unit::TestCase",
            f"  def test_{entry_point}",
            f"    candidate = method(:{entry_point})",
        ]

    def test_suite_suffix_lines(self) -> list[str]:
        return ["  end", "end", ""]

    def deep_equality(self, left: str, right: str) -> str:
        return f"    assert_equal({right}, {left})"  # Test::Unit: expected first


class Lua(Language):
    key = "lua"
    name = "Lua"
    # The function is never closed for the model: a blank line ends the completion.
    stop_tokens = ("\nlocal", "\nfunction", "\n--", "\n\n")

    def translate_prompt(
        self, name: str, args: list[ast.arg], returns: ast.expr | None, description: str
    ) -> str:
        if self.version.lua_marks_line_starts:
            comment = self.line_comments(description, "-- ")
        else:  # every line, as the (deindented) description has it
            comment = "-- " + description.replace("\n", "\n-- ") + "\n" if description else ""
        return comment + f"local function {name}({', '.join(arg.arg for arg in args)})\n"

    def gen_literal(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return repr(value)  # Python's spelling: 'text', 1.0, None

    def gen_list(self, items: list[str]) -> str:
        return "{" + ", ".join(items) + "}"

    def gen_tuple(self, items: list[str]) -> str:
        return self.gen_list(items)

    def gen_dict(self, keys: list[str], values: list[str]) -> str:
        return self.gen_list([f"[{k}] = {v}" for k, v in zip(keys, values, strict=True)])

    def test_suite_prefix_lines(self, entry_point: str) -> list[str]:
        return [
            "lu = require('luaunit')",
            "",
            "function test_humaneval()",
            f"local candidate = {entry_point}",
        ]

    def test_suite_suffix_lines(self) -> list[str]:
        return ["end", "", "os.exit(lu.LuaUnit.run())"]

    def deep_equality(self, left: str, right: str) -> str:
        return f"    lu.assertEquals({left}, {right})"


class Perl(Language):
    key = "pl"
    name = "Perl"
    stop_tokens = ("\nsub", "\n#", "\n\n")

    def translate_prompt(
        self, name: str, args: list[ast.arg], returns: ast.expr | None, description: str
    ) -> str:
        params = ", ".join("$" + arg.arg for arg in args)
        return self.line_comments(description, "# ") + f"sub {name} {{\n    my({params}) = @_;\n"

    def gen_literal(self, value: Any) -> str | int:
        if value is True:
            return PERL_TRUE
        if isinstance(value, str):  # in double quotes, nothing escaped
            return f'"{value}"'
        return _literal(value, "1", '""', "undef")

    def gen_list(self, items: list[str | int]) -> str:
        return "[" + _perl_join(items) + "]"

    def gen_tuple(self, items: list[str | int]) -> str:
        return "[" + ", ".join(str(item) for item in items) + "]"

    def gen_dict(self, keys: list[str | int], values: list[str | int]) -> str:
        return "{" + ", ".join(f"{k} => {v}" for k, v in zip(keys, values, strict=True)) + "}"

    def gen_call(self, function: str, args: list[str | int]) -> str:
        if function == "candidate":
            function = "$candidate->"
        return f"{function}(" + _perl_join(args) + ")"

    def test_suite_prefix_lines(self, entry_point: str) -> list[str]:
        return [
            "use Test::Deep;\n",
            "",
            "sub testhumaneval {",
            f"    my $candidate = \\&{entry_point};",
        ]

    def test_suite_suffix_lines(self) -> list[str]:
        return ["}", "", "testhumaneval();"]

    def deep_equality(self, left: str | int, right: str | int) -> str:
        return (
            f"        if(eq_deeply({left},{right})) {{\n"
            '        print "ok!" }else{\n        exit 1;\n        }'
        )
