"""C++ as MultiPL-E's rows write it (:class:`CppRows`, shared with Java): ``long`` and
``float``, every literal cast to its declared type (``(long)1``, ``(float)1.0f``), tuples through
``std::make_tuple``, ``std::optional`` and ``std::any`` where the signature says so, and the
tests a ``main`` of ``assert(candidate(...) == ...)``.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from codekiln.evaluate.multiple.base import Language, Unexpressible

# MultiPL-E's translator works on (text, type) pairs: the type is a Python annotation-like
# node, the literal's own type for values (``1`` is an int even where a float is expected), None
# for what has no known type (a call's result, a name).
Typed = tuple[str, "ast.expr | None"]


def _named(name: str) -> ast.Name:
    return ast.Name(id=name)


class CppRows:
    """MultiPL-E's C++ rows, and the base of its Java ones: one set of rules over a
    vocabulary of type names that each language sets.

    Values carry the Python type of their literal; where a value meets a declared type (an
    argument, the expected result) it is coerced as MultiPL-E coerces it: wrapped in
    parentheses when its type is already the declared one, else re-typed by rewriting the
    text up to its first ``(`` (``std::vector<long>({...})`` becomes
    ``std::vector<float>({...})``) or by wrapping it in a constructor call.
    """

    name: str  # the Language's
    string_type, float_type, int_type, bool_type = "std::string", "float", "long", "bool"
    none_type, any_type, optional_type = "std::nullopt", "std::any", "std::optional"
    list_type, tuple_type, dict_type = "std::vector", "std::tuple", "std::map"
    make_tuple = "std::make_tuple"
    renamed: dict[str, str] = {"operator": "op", "strlen": "string_length"}
    comment_start = "//"
    imports = "#include<assert.h>\n#include<bits/stdc++.h>\n"

    def _reset(self) -> None:
        self._unions: dict[str, dict[str, str]] = {}
        self._ellipsis = False  # a Tuple[int, ...] annotation: tuples are written as lists

    # --- types ---------------------------------------------------------------------------

    def row_type(self, node: Any) -> str:
        """A Python annotation (or a value's type node) as a type of the language."""
        if node is None:
            raise Unexpressible("a parameter or the result has no annotation")
        if isinstance(node, ast.Name):
            simple = {
                "str": self.string_type,
                "int": self.int_type,
                "float": self.float_type,
                "bool": self.bool_type,
                "None": self.none_type,
                "Any": self.any_type,
            }
            if node.id in simple:
                return simple[node.id]
        elif isinstance(node, ast.List):
            return self.list_of(self.row_type(node.elts[0]))
        elif isinstance(node, ast.Tuple):
            return self.tuple_of([self.row_type(e) for e in node.elts])
        elif isinstance(node, ast.Dict):  # built by gen_dict: one key node, one value node
            return self.dict_of(self.row_type(node.keys), self.row_type(node.values))
        elif isinstance(node, ast.Constant) and node.value is None:
            return self.none_type
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            generic, inner = node.value.id, node.slice
            if generic == "Dict" and isinstance(inner, ast.Tuple):
                return self.dict_of(self.row_type(inner.elts[0]), self.row_type(inner.elts[1]))
            if generic == "List":
                return self.list_of(self.row_type(inner))
            if generic == "Tuple":
                if isinstance(inner, ast.Tuple) and any(
                    isinstance(e, ast.Constant) and e.value is Ellipsis for e in inner.elts
                ):
                    self._ellipsis = True
                    return self.list_of(self.row_type(inner.elts[0]))
                return self.row_type(inner)  # Tuple[int] is just long
            if generic == "Optional":
                return self.optional_of(self.row_type(inner))
            if generic == "Union" and isinstance(inner, ast.Tuple):
                return self.union_of([self.row_type(e) for e in inner.elts])
        raise Unexpressible(f"no {self.name} type for {ast.unparse(node)}")

    def list_of(self, element: str) -> str:
        return f"{self.list_type}<{element}>"

    def tuple_of(self, elements: list[str]) -> str:
        return f"{self.tuple_type}<{', '.join(elements)}>"

    def dict_of(self, key: str, value: str) -> str:
        return f"{self.dict_type}<{key},{value}>"

    def optional_of(self, inner: str) -> str:
        return f"{self.optional_type}<{inner}>"

    def union_of(self, members: list[str]) -> str:
        """A union type declared in the prompt: ``Union_std_string_long`` with a field per
        member type (``f0``, ``f1``), its constructors and ``==`` against each member."""
        name = "Union_" + "_".join(members)
        for old in ("::", "<", ">"):
            name = name.replace(old, "_")
        self._unions.setdefault(name, {member: f"f{i}" for i, member in enumerate(members)})
        return name

    def is_primitive(self, type_text: str) -> bool:
        return type_text in (self.float_type, self.bool_type, self.int_type)

    # --- the prompt ----------------------------------------------------------------------

    def translate_prompt(
        self, name: str, args: list[ast.arg], returns: ast.expr | None, description: str
    ) -> str:
        self._reset()
        self._arg_types = [self.row_type(a.annotation) for a in args]
        params = ", ".join(f"{self.row_type(a.annotation)} {self.gen_var(a.arg)[0]}" for a in args)
        self._returns = self.row_type(returns)
        return self.row_prompt(name, params, description)

    def row_prompt(self, name: str, params: str, description: str) -> str:
        """The prompt around the types read: includes, unions, comment, header."""
        header = f"{self._returns} {self.gen_var(name)[0]}({params}) {{\n"
        return self.imports + self._union_declarations() + self.row_comment(description) + header

    def row_comment(self, description: str) -> str:
        """The description as line comments (which lines get a marker depends on the
        version: Language.line_comments)."""
        return self.line_comments(description, self.comment_start + " ")

    def _union_declarations(self) -> str:
        out = ""
        for union, fields in self._unions.items():
            out += f"union {union}{{\n"
            out += "\n".join(f"    {member} {field};" for member, field in fields.items())
            for member, field in fields.items():
                out += f"    {union}({member} _{field}) : {field}(_{field}) {{}}\n"
            out += f"    ~{union}() {{}}\n"
            for member, field in fields.items():
                out += f"    bool operator==({member} f) {{\n        return {field} == f ;\n    }}"
            out += "\n};\n"
        return out

    # --- expressions ---------------------------------------------------------------------

    def gen_literal(self, value: Any) -> Typed:
        if isinstance(value, bool):
            return ("true" if value else "false"), _named("bool")
        if isinstance(value, str):
            return f'"{value}"'.replace("\n", "\\n"), _named("str")
        if isinstance(value, int):
            return repr(value), _named("int")
        if isinstance(value, float):
            return repr(value) + "f", _named("float")
        return self.none_type, _named("None")

    def gen_var(self, name: str) -> Typed:
        return self.renamed.get(name, name), None

    def gen_list(self, items: list[Typed]) -> Typed:
        if not items:
            return self.make_list(self.int_type, ""), ast.List(elts=[_named("int")])
        first = items[0][1]
        # A list of values of one type (primitives count as one) is typed by its first
        # item; otherwise it holds `Any`.
        mixed = any(
            self.row_type(first) != self.row_type(t) and not self.is_primitive(self.row_type(t))
            for _, t in items
        )
        element: ast.expr = _named("Any") if mixed else first  # type: ignore[assignment]
        text = self.array_literal(", ".join(self.cast(e, element) for e, _ in items))
        return self.make_list(self.row_type(element), text), ast.List(elts=[first])

    def cast(self, text: str, to: ast.expr) -> str:
        target = self.row_type(to)
        return text if target == self.any_type else f"({target}){text}"

    def make_list(self, element: str, literal: str) -> str:
        return f"{self.list_of(element)}({literal})"

    def array_literal(self, items: str) -> str:
        return "{" + items + "}"

    def gen_tuple(self, items: list[Typed]) -> Typed:
        if self._ellipsis:
            return self.gen_list(items)
        if not items:
            return f"{self.make_tuple}()", ast.Tuple(elts=[_named("int")])
        types = ast.Tuple(elts=[t for _, t in items])
        if self.none_type in ", ".join(text for text, _ in items):
            # A tuple holding None: every item becomes an optional of the others' type.
            others = [t for _, t in items if self.row_type(t) != self.none_type]
            inner = self.row_type(others[0]) if others else self.int_type
            texts = ", ".join(self.wrap_optional(inner, text) for text, _ in items)
            return f"{self.make_tuple}({texts})", types
        return f"{self.make_tuple}({', '.join(text for text, _ in items)})", types

    def wrap_optional(self, inner: str, text: str) -> str:
        return f"{self.optional_of(inner)}({text})"

    def gen_dict(self, keys: list[Typed], values: list[Typed]) -> Typed:
        if not keys:
            t = ast.Dict(keys=_named("int"), values=_named("int"))  # type: ignore[arg-type]
            return self.make_map(self.row_type(t), ""), t
        t = ast.Dict(keys=keys[0][1], values=values[0][1])  # type: ignore[arg-type]
        pairs = [(k, v) for (k, _), (v, _) in zip(keys, values, strict=True)]
        return self.make_map(self.row_type(t), self.map_literal(pairs)), t

    def map_literal(self, pairs: list[tuple[str, str]]) -> str:
        return "{" + ", ".join(f"{{{k}, {v}}}" for k, v in pairs) + "}"

    def make_map(self, type_text: str, literal: str) -> str:
        return f"{type_text}({literal})"

    def gen_call(self, function: Typed, args: list[Typed]) -> Typed:
        name = self.gen_var(function[0])[0]
        return f"{name}({self.call_args(args)})", None

    def call_args(self, args: list[Typed]) -> str:
        """Each argument coerced to its parameter's type (IndexError past the last one, as
        in MultiPL-E: that test is left out)."""
        return ", ".join(self.coerce(arg, self._arg_types[i]) for i, arg in enumerate(args))

    def finalize(self, expr: Typed, side: str) -> str:
        return expr[0] if side == "lhs" else self.coerce(expr, self._returns)

    def coerce(self, value: Typed, expected: str) -> str:
        """`value` where a value of type `expected` is needed, as MultiPL-E writes it."""
        text, t = value
        if expected in self._unions:
            return text
        if self.row_type(t) == expected:
            return f"({text})"
        if self.make_tuple and text.startswith(self.make_tuple):
            return text
        if text.startswith(self.none_type) or self.optional_type in expected:
            return text
        found = self.constructor_of(text)
        if not found:
            coerced = f"{expected}({text})"
        else:  # every occurrence, nested ones too, as str.replace does in MultiPL-E
            coerced = text.replace(found[0], expected + "(")
        return "(" + coerced.replace("(())", "()") + ")"

    def constructor_of(self, text: str) -> list[str]:
        """What `coerce` rewrites to re-type a literal: here the text up to and including
        its first ``(`` (``std::vector<long>(``), if it has one."""
        return re.findall(r".+?\(", text)

    # --- the tests -----------------------------------------------------------------------

    def test_suite_prefix_lines(self, entry_point: str) -> list[str]:
        return ["}", "int main() {", f"    auto candidate = {self.gen_var(entry_point)[0]};"]

    def test_suite_suffix_lines(self) -> list[str]:
        return ["}\n"]

    def deep_equality(self, left: str, right: str) -> str:
        return f"    assert({left} == {right});"


class Cpp(CppRows, Language):
    key = "cpp"
    name = "C++"
    stop_tokens = ("\n}",)
