"""JavaScript and TypeScript: MultiPL-E's rows (the hooks translate.translate_row calls).

The prompt is the docstring as ``//`` comments (see ``Language.line_comments``) and the
function's header, with the signature's annotations as types in TypeScript (`ts_type`); the
tests are a ``test()`` of ``assert.deepEqual(actual,expected)`` lines on node's ``assert``;
values are written as Python writes them (``3``, ``3.0``), lists and tuples as arrays, dicts as
objects, None as ``undefined``.
"""

from __future__ import annotations

import ast
from typing import Any

from codekiln.evaluate.multiple.base import Language, Unexpressible


class JavaScript(Language):
    key = "js"
    name = "JavaScript"
    null = "undefined"

    stop_tokens = ("\nfunction ", "\n/*", "\n//", "\nconsole.log")
    # The first line of the test suite: node's assert module (its loose deepEqual).
    requires = "const assert = require('node:assert');\n"

    def translate_prompt(
        self, name: str, args: list[ast.arg], returns: ast.expr | None, description: str
    ) -> str:
        """The description as comments, then ``function name(a, b){`` (no types)."""
        params = ", ".join(arg.arg for arg in args)
        return self.line_comments(description, "//", "// ") + f"function {name}({params}){{\n"

    def test_suite_prefix_lines(self, entry_point: str) -> list[str]:
        return [self.requires, "", "function test() {", f"  let candidate = {entry_point};"]

    def test_suite_suffix_lines(self) -> list[str]:
        return ["}", "", "test();"]

    def deep_equality(self, left: Any, right: Any) -> str:
        return f"  assert.deepEqual({left},{right});"

    # gen_literal is the base's: a string between double quotes with nothing escaped, None as
    # `null` (``undefined`` here), a number as Python writes it.

    def gen_dict(self, keys: list[Any], values: list[Any]) -> str:
        return "{" + ", ".join(f"{k}: {v}" for k, v in zip(keys, values, strict=True)) + "}"


class TypeScript(JavaScript):
    key = "ts"
    name = "TypeScript"

    stop_tokens = ("\nfunction ", "\n/*", "\n//", "\nclass")
    requires = "declare var require: any;\nconst assert = require('node:assert');\n"

    def translate_prompt(
        self, name: str, args: list[ast.arg], returns: ast.expr | None, description: str
    ) -> str:
        """The description as comments, then ``function name(a: T, b: U): R {``; a parameter
        or result whose annotation has no TypeScript form (see `ts_type`) drops the problem."""
        params = ", ".join(f"{arg.arg}: {ts_type(arg.annotation)}" for arg in args)
        header = f"function {name}({params}): {ts_type(returns)} {{\n"
        return self.line_comments(description, "//", "// ") + header

    def gen_literal(self, value: Any) -> str:
        """As JavaScript's, except that a newline inside a string is written ``\\n``."""
        if isinstance(value, str):
            value = value.replace("\n", "\\n")
        return super().gen_literal(value)


def ts_type(annotation: ast.expr | str | None) -> str:
    """A Python annotation as MultiPL-E's TypeScript rows write it: ``List[T]`` is ``T[]``
    (no parentheses, even around a union), ``Union[A, B]`` is ``A| B``, ``Tuple[A, B]`` is
    ``[A, B]``, ``Dict[K, V]`` is ``{[key: K]: V}``, ``Optional[T]`` is ``T | undefined``;
    int and float are ``number``, ``Any`` is ``any``. A missing annotation, a lowercase
    generic, or a dict whose key or value is a float or a bool (read by name, where only
    ``int`` and ``str`` are known) raises Unexpressible.

    >>> ts_type(ast.parse("List[Union[int, str]]", mode="eval").body)
    'number| string[]'
    """
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name):
        generic, inner = annotation.value.id, annotation.slice
        members = inner.elts if isinstance(inner, ast.Tuple) else None
        if generic == "List":
            return ts_type(inner) + "[]"
        if generic == "Union" and members is not None:
            return "| ".join(ts_type(m) for m in members)
        if generic == "Tuple" and members is not None:
            return "[" + ", ".join(ts_type(m) for m in members) + "]"
        if generic == "Dict" and members is not None and len(members) == 2:
            key, value = members
            if isinstance(key, ast.Name) and isinstance(value, ast.Name):
                return f"{{[key: {ts_type(key.id)}]: {ts_type(value.id)}}}"
        if generic == "Optional":
            return ts_type(inner) + " | undefined"
        raise Unexpressible(f"TypeScript has no type for {ast.unparse(annotation)}")
    if isinstance(annotation, str):  # a dict's key or value type, by name
        if annotation in ("int", "str"):
            return {"int": "number", "str": "string"}[annotation]
    elif isinstance(annotation, ast.Name):
        simple = {"int": "number", "float": "number", "bool": "boolean", "str": "string"}
        if annotation.id in simple:
            return simple[annotation.id]
        if annotation.id == "Any":
            return "any"
    if annotation is None:
        raise Unexpressible("a parameter or the result has no annotation")
    text = annotation if isinstance(annotation, str) else ast.unparse(annotation)
    raise Unexpressible(f"TypeScript has no type for {text}")
