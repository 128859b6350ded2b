"""Java as MultiPL-E's rows write it: its C++ rules
(:class:`~codekiln.evaluate.multiple.cpp.CppRows`) with Java's vocabulary: ``long`` and
``float``, ``ArrayList``, ``HashMap``, ``Optional``, javatuples' ``Pair`` for every tuple, a
static method of ``class Problem`` named in camelCase, and tests that ``assert`` in ``main``
(``==`` where the result is primitive, ``.equals`` otherwise; ``java -ea`` turns them on).
"""

from __future__ import annotations

import ast
import re

from codekiln.evaluate.multiple.base import Language, Unexpressible
from codekiln.evaluate.multiple.cpp import CppRows, Typed

ROW_IMPORTS = (
    "java.util.*",
    "java.lang.reflect.*",
    "org.javatuples.*",
    "java.security.*",
    "java.math.*",
    "java.io.*",
    "java.util.stream.*",
)
BOXES = {"long": "Long", "float": "Float", "boolean": "Boolean"}


def camel_case(name: str) -> str:
    """A snake_case name in camelCase, as MultiPL-E's Java rows write the entry point
    (``str.title`` on each later part: ``x_or_y`` -> ``xOrY``)."""
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


class Java(CppRows, Language):
    key = "java"
    name = "Java"
    stop_tokens = ("\n    }\n",)
    # --- MultiPL-E's rows: C++'s rules, Java's vocabulary ---------------------------------

    string_type, float_type, int_type, bool_type = "String", "float", "long", "boolean"
    none_type, any_type, optional_type = "Optional.empty()", "Object", "Optional"
    list_type, tuple_type, dict_type = "ArrayList", "Pair", "HashMap"
    make_tuple = "Pair.with"
    comment_start = "    //"
    imports = "".join(f"import {module};\n" for module in ROW_IMPORTS)

    def box(self, type_text: str) -> str:
        return BOXES.get(type_text, type_text)

    def list_of(self, element: str) -> str:
        return f"ArrayList<{self.box(element)}>"

    def tuple_of(self, elements: list[str]) -> str:
        return f"Pair<{', '.join(self.box(e) for e in elements)}>"

    def dict_of(self, key: str, value: str) -> str:
        return f"HashMap<{self.box(key)},{self.box(value)}>"

    def optional_of(self, inner: str) -> str:
        return f"Optional<{self.box(inner)}>"

    def union_of(self, members: list[str]) -> str:
        raise Unexpressible("Java has no union type")

    def row_prompt(self, name: str, params: str, description: str) -> str:
        self._entry_point = camel_case(name)
        header = f"    public static {self._returns} {self._entry_point}({params}) {{\n"
        return self.imports + "class Problem {\n" + self.row_comment(description) + header

    def gen_literal(self, value: object) -> Typed:
        if isinstance(value, float):
            return repr(value) + "f", ast.Name(id="float")
        if isinstance(value, int) and not isinstance(value, bool):
            return repr(value) + "l", ast.Name(id="int")
        return super().gen_literal(value)

    def make_list(self, element: str, literal: str) -> str:
        return f"new {self.list_of(element)}(Arrays.asList{literal or '()'})"

    def array_literal(self, items: str) -> str:
        return f"({items})"

    def wrap_optional(self, inner: str, text: str) -> str:
        return f"Optional.of({text})"

    def map_literal(self, pairs: list[tuple[str, str]]) -> str:
        return ", ".join(f"{k}, {v}" for k, v in pairs)

    def make_map(self, type_text: str, literal: str) -> str:
        return f"new {type_text}(Map.of({literal}))"

    def gen_call(self, function: Typed, args: list[Typed]) -> Typed:
        name = camel_case(function[0])
        if name == "candidate":
            name = self._entry_point
        return f"{name}({self.call_args(args)})", None

    def coerce(self, value: Typed, expected: str) -> str:
        text, t = value
        if self.is_primitive(expected) and self.row_type(t) != expected:
            return f"({expected}){text}"
        if self.optional_type in expected and self.none_type not in text:
            return f"Optional.of({text})"
        return super().coerce(value, expected)

    def constructor_of(self, text: str) -> list[str]:
        """The type a literal constructs: a list's ``ArrayList<...>(`` (its whole prefix
        after ``new ``), nothing for ``Optional.of``, else ``new T(`` up to the last ``(``."""
        if "Arrays.asList(" in text:
            return [text[text.index("new ") + len("new ") : text.index("Arrays.asList(")]]
        if "Optional.of(" in text:
            return []
        return re.findall(r"new (.+)\(", text)

    def test_suite_prefix_lines(self, entry_point: str) -> list[str]:
        return ["    }", "    public static void main(String[] args) {"]

    def test_suite_suffix_lines(self) -> list[str]:
        return ["    }\n", "}\n"]

    def deep_equality(self, left: str, right: str) -> str:
        if self.is_primitive(self._returns):
            return f"    assert({left} == {right});"
        return f"    assert({left}.equals({right}));"
