"""Types of HumanEval's values, inferred from signatures and test values.

A HumanEval problem is Python: some signatures are annotated (``List[float]``), many are not
(``def f(lst):``), and a few are annotated loosely (``l: list``, ``List[Any]``). The target
languages need one type per parameter and for the result, so we take the annotation where
there is one and refine it with the values the tests pass and expect: ``l: list`` called
with ``[1, 2]`` becomes ``list[int]``, an unannotated parameter that sees both ``1`` and
``2.5`` becomes ``float``, a result that is sometimes ``None`` becomes ``optional[...]``.
Values that no single type covers (an ``int`` here and a ``str`` there) give a ``union``,
which dynamic languages and TypeScript can express and the other typed languages cannot.

A :class:`Type` is a small immutable tree written like Python's typing: ``list[int]``,
``tuple[int, int]``, ``dict[str, int]``, ``optional[str]``, ``union[int, str]``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

SCALARS = ("int", "float", "bool", "str")
KINDS = (*SCALARS, "none", "list", "tuple", "dict", "optional", "union", "unknown")


class Unexpressible(ValueError):
    """A value, test or type that a translation cannot express; the message says why."""


@dataclass(frozen=True)
class Type:
    """A type tree. ``unknown`` is the element type of a list only ever seen empty."""

    kind: str
    args: tuple[Type, ...] = ()

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind

    def __str__(self) -> str:
        if not self.args:
            return self.kind
        return f"{self.kind}[{', '.join(map(str, self.args))}]"

    @property
    def is_scalar(self) -> bool:
        return self.kind in SCALARS

    def walk(self) -> list[Type]:
        """This type and every type inside it, outermost first."""
        return [self, *(inner for arg in self.args for inner in arg.walk())]


INT, FLOAT, BOOL, STR = Type("int"), Type("float"), Type("bool"), Type("str")
NONE, UNKNOWN = Type("none"), Type("unknown")


def list_of(element: Type) -> Type:
    return Type("list", (element,))


def tuple_of(*elements: Type) -> Type:
    return Type("tuple", tuple(elements))


def dict_of(key: Type, value: Type) -> Type:
    return Type("dict", (key, value))


def optional(inner: Type) -> Type:
    if inner.kind in ("optional", "none"):
        return inner if inner.kind == "optional" else NONE
    return Type("optional", (inner,))


def union(*members: Type) -> Type:
    """The union of `members`, flattened and sorted; one member is itself."""
    flat: set[Type] = set()
    for member in members:
        flat.update(member.args if member.kind == "union" else (member,))
    if len(flat) == 1:
        return flat.pop()
    return Type("union", tuple(sorted(flat, key=str)))


def type_of(value: Any) -> Type:
    """The type of one Python value.

    >>> str(type_of([(1, "a"), (2, "b")]))
    'list[tuple[int, str]]'
    >>> str(type_of({"a": [1.5], "b": []}))
    'dict[str, list[float]]'
    """
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return STR
    if value is None:
        return NONE
    if isinstance(value, list):
        return list_of(unify_all(type_of(v) for v in value))
    if isinstance(value, tuple):
        return tuple_of(*(type_of(v) for v in value))
    if isinstance(value, dict):
        keys = unify_all(type_of(k) for k in value)
        return dict_of(keys, unify_all(type_of(v) for v in value.values()))
    raise Unexpressible(f"a value of Python type {type(value).__name__}")


def unify_all(types: Any) -> Type:
    result = UNKNOWN
    for t in types:
        result = unify(result, t)
    return result


def unify(a: Type, b: Type) -> Type:
    """The narrowest type that holds values of both `a` and `b`.

    >>> str(unify(INT, FLOAT)), str(unify(NONE, STR)), str(unify(INT, STR))
    ('float', 'optional[str]', 'union[int, str]')
    >>> str(unify(tuple_of(STR), tuple_of(STR, STR)))  # tuples of any length: a list
    'list[str]'
    """
    if a == b or b.kind == "unknown":
        return a
    if a.kind == "unknown":
        return b
    if {a.kind, b.kind} == {"int", "float"}:
        return FLOAT
    if a.kind == "none" or b.kind == "none":
        return optional(b if a.kind == "none" else a)
    if a.kind == "optional" or b.kind == "optional":
        inner_a = a.args[0] if a.kind == "optional" else a
        inner_b = b.args[0] if b.kind == "optional" else b
        return optional(unify(inner_a, inner_b))
    if a.kind == b.kind == "list":
        return list_of(unify(a.args[0], b.args[0]))
    if a.kind == b.kind == "dict":
        return dict_of(unify(a.args[0], b.args[0]), unify(a.args[1], b.args[1]))
    if a.kind == b.kind == "tuple" and len(a.args) == len(b.args):
        return tuple_of(*(unify(x, y) for x, y in zip(a.args, b.args, strict=True)))
    if {a.kind, b.kind} <= {"tuple", "list"}:
        return list_of(unify_all([*a.args, *b.args]))
    if a.kind == "union" or b.kind == "union":
        return _unify_union(a, b)
    return union(a, b)


def _unify_union(a: Type, b: Type) -> Type:
    """Add `b` to the union `a` (or the reverse), merging it with a member it unifies with."""
    members = list(a.args if a.kind == "union" else (a,))
    for new in b.args if b.kind == "union" else (b,):
        for i, old in enumerate(members):
            merged = unify(old, new)
            if merged.kind != "union":
                members[i] = merged
                break
        else:
            members.append(new)
    return union(*members)


# typing names HumanEval's annotations use, and the kinds they mean.
_ANNOTATION_NAMES = {
    "int": INT,
    "float": FLOAT,
    "bool": BOOL,
    "str": STR,
    "list": list_of(UNKNOWN),
    "List": list_of(UNKNOWN),
    "tuple": Type("tuple"),
    "Tuple": Type("tuple"),
    "dict": dict_of(UNKNOWN, UNKNOWN),
    "Dict": dict_of(UNKNOWN, UNKNOWN),
    "Any": UNKNOWN,
    "None": NONE,
}


def from_annotation(node: ast.expr | None) -> Type | None:
    """The type an annotation names; None for no annotation. Unknown parts stay ``unknown``.

    >>> str(from_annotation(ast.parse("Optional[List[int]]", mode="eval").body))
    'optional[list[int]]'
    >>> str(from_annotation(ast.parse("list", mode="eval").body))
    'list[unknown]'
    """
    if node is None:
        return None
    if isinstance(node, ast.Constant) and node.value is None:
        return NONE
    if isinstance(node, ast.Name):
        if node.id not in _ANNOTATION_NAMES:
            raise Unexpressible(f"annotation {node.id!r}")
        return _ANNOTATION_NAMES[node.id]
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        args = [from_annotation(n) or UNKNOWN for n in inner]
        name = node.value.id
        if name in ("List", "list") and len(args) == 1:
            return list_of(args[0])
        if name in ("Tuple", "tuple"):
            return tuple_of(*args)
        if name in ("Dict", "dict") and len(args) == 2:
            return dict_of(*args)
        if name == "Optional" and len(args) == 1:
            return optional(args[0])
        if name == "Union":
            return union(*args)
    raise Unexpressible(f"annotation {ast.unparse(node)!r}")


def refine(annotated: Type | None, observed: Type) -> Type:
    """The annotation made concrete by the observed values' type; the values win a conflict.

    >>> str(refine(list_of(UNKNOWN), list_of(INT)))
    'list[int]'
    >>> str(refine(FLOAT, INT)), str(refine(optional(STR), NONE))
    ('float', 'optional[str]')
    """
    if annotated is None or annotated.kind == "unknown":
        return observed
    if observed.kind == "unknown":
        return annotated
    if annotated.kind == "tuple" and not annotated.args:
        return observed
    if annotated.kind == observed.kind and len(annotated.args) == len(observed.args):
        return Type(
            annotated.kind,
            tuple(refine(a, o) for a, o in zip(annotated.args, observed.args, strict=True)),
        )
    if annotated.kind == "optional":
        if observed.kind == "none":
            return annotated
        inner = observed.args[0] if observed.kind == "optional" else observed
        return optional(refine(annotated.args[0], inner))
    return unify(annotated, observed)


def settle(t: Type) -> Type:
    """`t` with every ``unknown`` (the element type of lists only seen empty) made ``int``:
    any element type holds no elements, and typed languages need one.

    >>> str(settle(list_of(list_of(UNKNOWN))))
    'list[list[int]]'
    """
    if t.kind == "unknown":
        return INT
    return Type(t.kind, tuple(settle(a) for a in t.args))


_OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}


def evaluate(node: ast.expr) -> Any:
    """The value of a literal expression: constants, containers, unary minus and the
    arithmetic (``2.0/3.0``, ``"ab" * 3``) HumanEval's tests write; anything else raises.

    >>> evaluate(ast.parse("[-1, 2.0 / 4, ('a', None)]", mode="eval").body)
    [-1, 0.5, ('a', None)]
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | None):
        return node.value
    if isinstance(node, ast.List):
        return [evaluate(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(evaluate(e) for e in node.elts)
    if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
        return {evaluate(k): evaluate(v) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = evaluate(node.operand)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = evaluate(node.left), evaluate(node.right)
        if isinstance(left, int | float | str) and isinstance(right, int | float):
            try:
                return _OPERATORS[type(node.op)](left, right)
            except (TypeError, ZeroDivisionError) as error:
                raise Unexpressible(f"expression {ast.unparse(node)!r}") from error
    raise Unexpressible(f"expression {ast.unparse(node)[:60]!r} is not a literal")
