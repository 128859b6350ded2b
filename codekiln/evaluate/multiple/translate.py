"""Read a HumanEval problem into a language-neutral :class:`Spec`, and render it in a language.

Reading. The prompt is parsed with ``ast``: the entry point's parameters, their annotations,
its return annotation and its docstring (``>>> f(...)`` examples in it are read as values,
so each language shows them in its own syntax). The test's ``def check(candidate)`` is read
assert by assert; these shapes become a :class:`Case` (arguments, expected value):

- ``candidate(ARGS) == VALUE`` (either side, also wrapped in ``tuple(...)``/``list(...)``);
- ``abs(candidate(ARGS) - VALUE) < TOL`` (the harness compares floats with a tolerance);
- ``candidate(ARGS)``, ``not candidate(ARGS)``, ``candidate(ARGS) is True/False/None``.

ARGS and VALUE must be literals (``[1, 2]``, ``-3``, ``2.0 / 3.0``); asserts of other
shapes (loops over random inputs, calls of the prompt's helpers) are skipped and counted.
A problem with no readable assert is dropped for every language. The types of the
parameters and of the result come from the annotations refined by the values (see
:mod:`codekiln.evaluate.multiple.infer`).

Rendering. A :class:`~codekiln.evaluate.multiple.base.Language` turns a Spec into a prompt
(doc comment + function header, ending where the body starts) and a harness (the function's
closing + a test main), or raises :class:`Unexpressible` when a type or value has no form in
that language: that drops the problem for that language only.
"""

from __future__ import annotations

import ast
import functools
import inspect
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from codekiln.evaluate.multiple.infer import (
    Type,
    Unexpressible,
    evaluate,
    from_annotation,
    refine,
    settle,
    type_of,
    unify,
    unify_all,
)

if TYPE_CHECKING:
    from codekiln.evaluate.multiple.base import Language


@dataclass(frozen=True)
class Param:
    name: str
    type: Type


@dataclass(frozen=True)
class Case:
    """One test: ``candidate(*args)`` must equal ``expected``."""

    args: tuple[Any, ...]
    expected: Any


@dataclass(frozen=True)
class Example:
    """A doctest example of the docstring, ``>>> f(*args)`` then ``expected``."""

    args: tuple[Any, ...]
    expected: Any
    text: tuple[str, str]  # the two original lines, kept when a language cannot show them


@dataclass(frozen=True)
class Spec:
    """One problem in language-neutral form."""

    task_id: str
    name: str
    params: tuple[Param, ...]
    returns: Type
    doc: tuple[str | Example, ...]
    cases: tuple[Case, ...]
    skipped: int = 0  # asserts that were not literal cases
    annotations: tuple[Type | None, ...] = ()  # the parameters' then the result's, as written


@dataclass(frozen=True)
class Translation:
    """A problem in one language: the prompt the model continues, and the text appended
    after its completion (the function's closing and the test main)."""

    task_id: str
    prompt: str
    harness: str
    cases: int


def read_spec(problem: dict[str, Any]) -> Spec:
    """The Spec of one HumanEval problem (as ``read_humaneval`` gives it).

    >>> spec = read_spec({
    ...     "task_id": "X/0", "entry_point": "inc",
    ...     "prompt": "def inc(x: int):\\n    '''Add one.\\n    >>> inc(1)\\n    2\\n    '''\\n",
    ...     "test": "def check(candidate):\\n    assert candidate(2) == 3\\n    assert True\\n",
    ... })
    >>> [str(p.type) for p in spec.params], str(spec.returns), spec.cases, spec.skipped
    (['int'], 'int', (Case(args=(2,), expected=3),), 1)
    """
    function = _entry_point(problem["prompt"], problem["entry_point"])
    names = [a.arg for a in function.args.args]
    cases, skipped = _read_cases(problem["test"], len(names))
    if not cases:
        raise Unexpressible("no test is a literal `assert candidate(...) == value`")
    annotations = tuple(from_annotation(a.annotation) for a in function.args.args)
    annotations += (from_annotation(function.returns),)
    types = infer_types(annotations, cases)
    params = tuple(Param(name, t) for name, t in zip(names, types, strict=False))
    doc = _read_doc(ast.get_docstring(function) or "", function.name, len(names))
    return Spec(
        task_id=problem["task_id"],
        name=function.name,
        params=params,
        returns=types[-1],
        doc=doc,
        cases=tuple(cases),
        skipped=skipped,
        annotations=annotations,
    )


def infer_types(annotations: tuple[Type | None, ...], cases: list[Case]) -> list[Type]:
    """The parameters' types then the result's: each annotation refined by the values."""
    columns = [[*case.args, case.expected] for case in cases]
    return [
        settle(refine(annotation, unify_all(type_of(row[i]) for row in columns)))
        for i, annotation in enumerate(annotations)
    ]


def narrow(spec: Spec) -> Spec:
    """`spec` without the few cases whose values make a parameter or the result a union,
    for languages without union types; raises Unexpressible if more than a quarter would go.

    HumanEval/78 passes ``[]`` once to a function of a string, HumanEval/103 returns -1 in
    2 of 12 cases and a string in the others: their other cases still test the problem.
    """
    cases = list(spec.cases)
    for position, t in enumerate([*(p.type for p in spec.params), spec.returns]):
        if t.kind != "union":
            continue
        values = [[*case.args, case.expected][position] for case in cases]
        best = max(
            t.args,
            key=lambda member: sum(_fits(value, member) for value in values),
        )
        cases = [case for case, value in zip(cases, values, strict=True) if _fits(value, best)]
    if len(cases) == len(spec.cases):
        return spec
    if 4 * (len(spec.cases) - len(cases)) > len(spec.cases) or not cases:
        raise Unexpressible(f"values of several types: {_union_of(spec)}")
    types = infer_types(spec.annotations, cases)
    params = tuple(Param(p.name, t) for p, t in zip(spec.params, types, strict=False))
    return replace(spec, params=params, returns=types[-1], cases=tuple(cases))


def _fits(value: Any, member: Type) -> bool:
    return unify(member, type_of(value)) == member


def _union_of(spec: Spec) -> str:
    types = [*(p.type for p in spec.params), spec.returns]
    return next(str(t) for t in types if any(x.kind == "union" for x in t.walk()))


def _entry_point(prompt: str, name: str) -> ast.FunctionDef:
    for node in ast.parse(prompt).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            if node.args.vararg or node.args.kwarg or node.args.kwonlyargs or node.args.defaults:
                raise Unexpressible("the signature has default, * or ** parameters")
            return node
    raise Unexpressible(f"the prompt does not define {name}")


def _read_cases(test: str, arity: int) -> tuple[list[Case], int]:
    """The literal cases of ``def check(candidate)`` and how many asserts were not."""
    check = next(
        node
        for node in ast.parse(test).body
        if isinstance(node, ast.FunctionDef) and node.name == "check"
    )
    cases, skipped = [], 0
    for statement in check.body:
        if not isinstance(statement, ast.Assert | ast.For | ast.While | ast.With):
            continue
        case = _read_assert(statement.test, arity) if isinstance(statement, ast.Assert) else None
        if case is None:
            skipped += 1
        else:
            cases.append(case)
    return cases, skipped


def _read_assert(test: ast.expr, arity: int) -> Case | None:
    """The Case an assert's condition states, or None if it is not of a literal shape."""
    try:
        if isinstance(test, ast.Call):
            return _case(test, True, arity)
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return _case(test.operand, False, arity)
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
            return None
        left, op, right = test.left, test.ops[0], test.comparators[0]
        if isinstance(op, ast.Eq):
            if _call_of(left) is None:
                left, right = right, left
            return _case(_call_of(left), evaluate(_unwrap(right)), arity)
        if isinstance(op, ast.Is) and isinstance(right, ast.Constant):
            return _case(left, right.value, arity)
        if isinstance(op, ast.Lt) and _is_abs(left):
            difference = left.args[0]  # type: ignore[attr-defined]
            if isinstance(difference, ast.BinOp) and isinstance(difference.op, ast.Sub):
                call, value = difference.left, difference.right
                if _call_of(call) is None:
                    call, value = value, call
                return _case(call, evaluate(value), arity)
    except Unexpressible:
        return None
    return None


def _is_abs(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and ast.unparse(node.func) in ("abs", "math.fabs")
        and len(node.args) == 1
    )


def _unwrap(node: ast.expr) -> ast.expr:
    """``tuple(x)`` and ``list(x)`` compare as x: the translations have only lists."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("tuple", "list")
        and len(node.args) == 1
    ):
        return node.args[0]
    return node


def _call_of(node: ast.expr | None) -> ast.Call | None:
    node = _unwrap(node) if node is not None else None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "candidate"
        and not node.keywords
    ):
        return node
    return None


def _case(node: ast.expr | None, expected: Any, arity: int) -> Case | None:
    call = _call_of(node)
    if call is None or len(call.args) != arity:
        return None
    return Case(tuple(evaluate(arg) for arg in call.args), expected)


def _read_doc(doc: str, name: str, arity: int) -> tuple[str | Example, ...]:
    """Docstring lines, with ``>>> name(...)`` + result line pairs read as Examples."""
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str | Example] = []
    i = 0
    while i < len(lines):
        example = _read_example(lines, i, name, arity)
        if example is None:
            out.append(lines[i].rstrip())
            i += 1
        else:
            out.append(example)
            i += 2
    return tuple(out)


def _read_example(lines: list[str], i: int, name: str, arity: int) -> Example | None:
    line = lines[i].strip()
    if not line.startswith(">>>") or i + 1 >= len(lines):
        return None
    try:
        call = ast.parse(line[3:].strip(), mode="eval").body
        if not (isinstance(call, ast.Call) and ast.unparse(call.func) == name):
            return None
        if len(call.args) != arity or call.keywords:
            return None
        args = tuple(evaluate(arg) for arg in call.args)
        result = lines[i + 1].strip()  # a blank line: the call printed nothing, it was None
        expected = evaluate(ast.parse(result, mode="eval").body) if result else None
    except (SyntaxError, Unexpressible):
        return None
    return Example(args, expected, (lines[i].rstrip(), lines[i + 1].rstrip()))


def translate(spec: Spec, language: Language) -> Translation:
    """`spec` in `language`; raises Unexpressible (with the reason) to drop it there."""
    if not language.unions:
        spec = narrow(spec)
    for param in spec.params:
        language.check_type(param.type)
    language.check_type(spec.returns)
    return Translation(spec.task_id, language.prompt(spec), language.harness(spec), len(spec.cases))


@functools.cache
def humaneval_specs() -> tuple[Spec | Unexpressible, ...]:
    """Every HumanEval problem read (or the reason it cannot be), in task-id order."""
    from codekiln.evaluate.humaneval import read_humaneval

    specs: list[Spec | Unexpressible] = []
    for problem in read_humaneval():
        try:
            specs.append(read_spec(problem))
        except Unexpressible as error:
            error.task_id = problem["task_id"]  # type: ignore[attr-defined]
            specs.append(error)
    return tuple(specs)


def translate_all(language: Language) -> tuple[list[Translation], dict[str, str]]:
    """HumanEval in `language`: the translations kept, and {task_id: reason} of the drops."""
    kept: list[Translation] = []
    dropped: dict[str, str] = {}
    for spec in humaneval_specs():
        if isinstance(spec, Unexpressible):
            dropped[spec.task_id] = str(spec)  # type: ignore[attr-defined]
            continue
        try:
            kept.append(translate(spec, language))
        except Unexpressible as error:
            dropped[spec.task_id] = str(error)
    return kept, dropped
