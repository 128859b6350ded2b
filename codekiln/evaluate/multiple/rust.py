"""Rust as MultiPL-E's rows write it: ``isize``, ``f64``, ``String``, ``Vec``, tuples,
``HashMap`` and ``Option``; literals as Python writes them, with ``String::from``, ``vec![...]``
and a few coercions where a value meets its declared type (``Some(...)``,
``Vec::<isize>::new()`` for an empty list, ``.0`` on an integer where a float is expected);
tests ``assert_eq!`` in ``main``.
"""

from __future__ import annotations

import ast
from typing import Any

from codekiln.evaluate.multiple.base import Language, Unexpressible


def row_type(node: ast.expr | str | None) -> str:
    """A Python annotation as MultiPL-E's Rust rows write it; raises Unexpressible for the
    ones they do not write (no annotation, ``Any``, ``Union``, a one-element ``Tuple``, a
    dict of other than ``int``/``str`` names). A bare string is a name inside ``Dict[...]``."""
    if isinstance(node, str):
        if node in ("int", "str"):
            return {"int": "isize", "str": "String"}[node]
    elif isinstance(node, ast.Name):
        simple = {"int": "isize", "float": "f64", "bool": "bool", "str": "String"}
        if node.id in simple:
            return simple[node.id]
    elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        generic, inner = node.value.id, node.slice
        if generic == "List":
            return f"Vec<{row_type(inner)}>"
        if generic == "Optional":
            return f"Option<{row_type(inner)}>"
        if generic == "Tuple" and isinstance(inner, ast.Tuple):
            return "(" + ", ".join(row_type(e) for e in inner.elts) + ")"
        if generic == "Dict" and isinstance(inner, ast.Tuple) and len(inner.elts) == 2:
            key, value = inner.elts
            if isinstance(key, ast.Name) and isinstance(value, ast.Name):
                return f"HashMap<{row_type(key.id)}, {row_type(value.id)}>"
    shown = node if isinstance(node, str) or node is None else ast.unparse(node)
    raise Unexpressible(f"MultiPL-E's Rust rows have no type for {shown}")


def _generic(node: Any, name: str) -> bool:
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == name
    )


def _named(node: Any, name: str) -> bool:
    return node == name or (isinstance(node, ast.Name) and node.id == name)


def coerce(text: str, t: Any) -> str:
    """A value's text where a value of annotation `t` is expected, with MultiPL-E's few
    coercions: ``Some(...)`` for an optional, a typed empty vector, ``.0`` on an integer
    where a float is expected (also inside a vector of floats), and ``Some`` on each side
    of a pair of optionals. Anything else stays as it is."""
    if _generic(t, "Optional"):
        return text if text == "None" else f"Some({text})"
    if text == "vec![]" and _generic(t, "List"):
        return f"Vec::<{row_type(t.slice)}>::new()"
    if text == "vec![]" and _named(t, "str"):
        return "String::new()"
    if _named(t, "float") and "." not in text:
        return f"{text}.0"
    if _generic(t, "List") and _named(t.slice, "float"):
        return "vec![" + ", ".join(coerce(p, "float") for p in text[5:-1].split(", ")) + "]"
    if (
        _generic(t, "Tuple")
        and isinstance(t.slice, ast.Tuple)
        and len(t.slice.elts) == 2
        and all(_generic(e, "Optional") for e in t.slice.elts)
    ):
        left, right = text.strip("()").split(", ")
        return f"({coerce(left, t.slice.elts[0])}, {coerce(right, t.slice.elts[1])})"
    return text


class Rust(Language):
    key = "rs"
    name = "Rust"
    stop_tokens = ("\n}",)

    # --- MultiPL-E's rows ----------------------------------------------------------------

    def translate_prompt(
        self, name: str, args: list[ast.arg], returns: ast.expr | None, description: str
    ) -> str:
        self._arg_annotations = [a.annotation for a in args]
        self._returns = returns
        params = ", ".join(f"{a.arg}: {row_type(a.annotation)}" for a in args)
        result = row_type(returns)
        uses_map = "HashMap<" in params or "HashMap<" in result
        imports = "use std::collections::HashMap;\n\n" if uses_map else ""
        comment = self.line_comments(description, "/// ")
        return f"{imports}{comment}fn {name}({params}) -> {result} {{\n"

    def gen_literal(self, value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            if '"' in value:
                raise Unexpressible("MultiPL-E's Rust rows write no string with a quote")
            return f'String::from("{value}")'
        return repr(value)  # None is Rust's None too

    def gen_list(self, items: list[str]) -> str:
        return "vec![" + ", ".join(items) + "]"

    def gen_tuple(self, items: list[str]) -> str:
        return "(" + ", ".join(items) + ")"

    def gen_dict(self, keys: list[str], values: list[str]) -> str:
        pairs = ", ".join(f"({k}, {v})" for k, v in zip(keys, values, strict=True))
        return f"HashMap::from([{pairs}])"

    def gen_call(self, function: str, args: list[str]) -> str:
        if function == "candidate":  # an argument past the last parameter: IndexError
            args = [coerce(a, self._arg_annotations[i]) for i, a in enumerate(args)]
        return f"{function}({', '.join(args)})"

    def finalize(self, expr: str, side: str) -> str:
        return expr if side == "lhs" else coerce(expr, self._returns)

    def test_suite_prefix_lines(self, entry_point: str) -> list[str]:
        # The closing brace is the stop token the completion ended at.
        return ["}", "", "fn main() {", f"    let candidate = {entry_point};"]

    def test_suite_suffix_lines(self) -> list[str]:
        return ["}\n"]

    def deep_equality(self, left: str, right: str) -> str:
        return f"    assert_eq!({left}, {right});"
