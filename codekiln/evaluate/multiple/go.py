"""Go: MultiPL-E's rows (the hooks translate.translate_row calls).

The prompt is a test package (``package <name>_test``) importing only ``testing`` and ``fmt``,
the docstring as ``//`` comments and the function with the signature's types (``[]int``,
``map[string]int``, a tuple is ``[]interface{}``; Optional and Union have no Go form and drop
the problem); the tests are a ``TestName(t *testing.T)`` table of ``{ actual, expected }`` pairs
compared through their ``%v`` text. Literals carry their Go type, read from the literals
themselves as MultiPL-E reads them (see `element_type`).
"""

from __future__ import annotations

import ast
import re
from typing import Any

from codekiln.evaluate.multiple.base import Language, Unexpressible

ROW_HEADER = """package {name}_test

import (
    "testing"
    "fmt"
)

"""

ROW_TEST_START = (
    "\ttype test struct {",
    "\t\tactual   interface{}",
    "\t\texpected interface{}",
    "\t}",
    "   tests := []test{",
)

ROW_TEST_END = (
    "   }\n",
    "\tfor i, tc := range tests {",
    '\t\tt.Run(fmt.Sprintf("test num % d", i), func(t *testing.T) {',
    '\t\t\tif fmt.Sprintf("%v", tc.actual) != fmt.Sprintf("%v", tc.expected) {',
    "\t\t\t\tt.Errorf(\"expected '%s', got '%s'\", tc.expected, tc.actual)",
    "\t\t\t}",
    "\t\t})",
    "\t}",
    "}\n",
)

# An empty list or dict has no element type to read: it stays this placeholder until the
# parameter or result it is (a whole argument, a whole expected value) gives it one.
PATCH_LIST, PATCH_DICT = "PATCH list", "PATCH dict"
SLICE_LITERAL = re.compile(r"^\[\].*{.*\}$")
# Parameter names that are Go's predeclared types get another name (others stay as they are).
RENAMED = {"string": "myString", "int": "myInt", "float": "myFloat", "bool": "myBool"}


def go_type(annotation: ast.expr | str | None) -> str:
    """A Python annotation as MultiPL-E's Go rows write it: ``List[T]`` is ``[]T``, any
    ``Tuple`` is ``[]interface{}``, ``Dict[K, V]`` is ``map[K]V``, float is ``float64``,
    ``Any`` is ``interface{}``. Optional, Union, a missing annotation and a dict whose key or
    value is a float or a bool (read by name, where only ``int`` and ``str`` are known) raise
    Unexpressible.

    >>> types = ("List[Tuple[int, str]]", "Dict[str, int]")
    >>> [go_type(ast.parse(t, mode="eval").body) for t in types]
    ['[][]interface{}', 'map[string]int']
    """
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name):
        generic, inner = annotation.value.id, annotation.slice
        if generic == "List":
            return "[]" + go_type(inner)
        if generic == "Tuple":
            return "[]interface{}"
        if generic == "Dict" and isinstance(inner, ast.Tuple) and len(inner.elts) == 2:
            key, value = inner.elts
            if isinstance(key, ast.Name) and isinstance(value, ast.Name):
                return f"map[{go_type(key.id)}]{go_type(value.id)}"
        raise Unexpressible(f"Go has no type for {ast.unparse(annotation)}")
    if isinstance(annotation, str):  # a dict's key or value type, by name
        if annotation in ("int", "str"):
            return {"int": "int", "str": "string"}[annotation]
    elif isinstance(annotation, ast.Name):
        simple = {"int": "int", "float": "float64", "bool": "bool", "str": "string"}
        if annotation.id in simple:
            return simple[annotation.id]
        if annotation.id == "Any":
            return "interface{}"
    if annotation is None:
        raise Unexpressible("a parameter or the result has no annotation")
    text = annotation if isinstance(annotation, str) else ast.unparse(annotation)
    raise Unexpressible(f"Go has no type for {text}")


def element_type(literals: list[str]) -> str:
    """The element type MultiPL-E gives a Go slice or map from its elements' texts, each
    read as a Python literal (int, bool, string, float64; a slice literal counts as ``[]int``,
    anything else as ``UNKNOWN``): the type they all have; else ``float64`` when every element
    after the first is a number (so ``"a", 3.14, 5`` makes ``[]float64``); else ``interface{}``.

    >>> element_type(["1", "2.5"]), element_type(['"a"', "1"]), element_type(["1", '"a"'])
    ('float64', 'float64', 'interface{}')
    """
    first = _literal_type(literals[0])
    rest = [_literal_type(text) for text in literals[1:]]
    if all(kind == first for kind in rest):
        return first
    if all(kind in ("int", "float64") for kind in rest):
        return "float64"
    return "interface{}"


def _literal_type(text: str) -> str:
    try:
        value: Any = ast.literal_eval(text)
    except Exception:  # noqa: BLE001 - Go's own literals (nil, []int{...}) are not Python's
        value = None
    kind = {int: "int", bool: "bool", str: "string", float: "float64"}.get(type(value))
    if kind is not None:
        return kind
    return "[]int" if SLICE_LITERAL.match(text) else "UNKNOWN"


class Go(Language):
    key = "go"
    name = "Go"
    null = "nil"

    stop_tokens = ("\nfunc", "struct", "\n// ")
    row_language = "go_test.go"
    # The signature's annotations, kept by translate_prompt for the problem at hand.
    _annotations: list[ast.expr | None]
    _returns: ast.expr | None

    def translate_prompt(
        self, name: str, args: list[ast.arg], returns: ast.expr | None, description: str
    ) -> str:
        """The test package's header, the description as comments and ``func name(a T) R {``;
        keeps the signature's annotations, which type the empty lists and dicts."""
        self._annotations = [arg.annotation for arg in args]
        self._returns = returns
        params = ", ".join(f"{RENAMED.get(a.arg, a.arg)} {go_type(a.annotation)}" for a in args)
        header = f"func {name}({params}) {go_type(returns)} {{\n"
        return ROW_HEADER.format(name=name) + self.line_comments(description, "// ") + header

    def test_suite_prefix_lines(self, entry_point: str) -> list[str]:
        # str.title(): "minSubArraySum" names TestMinsubarraysum, as in the rows.
        return [
            f"func Test{entry_point.title()}(t *testing.T) {{",
            f"  candidate := {entry_point}",
            *ROW_TEST_START,
        ]

    def test_suite_suffix_lines(self) -> list[str]:
        return list(ROW_TEST_END)

    def deep_equality(self, left: Any, right: Any) -> str:
        return f"     {{ actual: {left}, expected: {right} }},"

    def gen_literal(self, value: Any) -> str:
        """The base's (None is ``nil`` here), except that a newline inside a string is
        written ``\\n`` (nothing else is escaped)."""
        if isinstance(value, str):
            value = value.replace("\n", "\\n")
        return super().gen_literal(value)

    def gen_var(self, name: str) -> str:
        return RENAMED.get(name, name)

    def gen_list(self, items: list[Any]) -> str:
        """``[]T{...}`` with T read from the items (see `element_type`); an empty list waits
        for its type (`PATCH_LIST`)."""
        if not items:
            return PATCH_LIST
        patched = ", ".join(self.patch_empty(item, None) for item in items)
        return f"[]{element_type(items)}{{{patched}}}"

    def gen_tuple(self, items: list[Any]) -> str:
        return "[]interface{}{" + ", ".join(self.patch_empty(i, None) for i in items) + "}"

    def gen_dict(self, keys: list[Any], values: list[Any]) -> str:
        if not keys:
            return PATCH_DICT
        pairs = ", ".join(
            f"{self.patch_empty(k, None)}: {self.patch_empty(v, None)}"
            for k, v in zip(keys, values, strict=True)
        )
        return f"map[{element_type(keys)}]{element_type(values)}{{{pairs}}}"

    def gen_call(self, function: Any, args: list[Any]) -> str:
        """A call; an empty list or dict argument takes its parameter's type (a call with
        more arguments than the signature has parameters raises)."""
        patched = [self.patch_empty(a, self._annotations[i]) for i, a in enumerate(args)]
        return f"{function}(" + ", ".join(patched) + ")"

    def finalize(self, expr: Any, side: str) -> str:
        """The expected value (right side) takes the result's type when it is empty."""
        return self.patch_empty(expr, self._returns) if side == "rhs" else expr

    def patch_empty(self, text: str, annotation: ast.expr | None) -> str:
        """An empty list or dict placeholder as the literal of `annotation`'s type, or of
        ``[]interface{}`` / ``map[interface{}]interface{}`` without one; other texts as
        they are."""
        if text not in (PATCH_LIST, PATCH_DICT):
            return text
        if annotation is None:
            return "[]interface{}{}" if text == PATCH_LIST else "map[interface{}]interface{}{}"
        return go_type(annotation) + "{}"
