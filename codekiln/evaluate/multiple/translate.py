"""HumanEval as MultiPL-E's rows: ``translate_rows(key, version)``.

MultiPL-E translates its own copies of the problems (:mod:`.cleaned`: typed signatures,
hand-cleaned doctests, edited tests) expression by expression. A row is made in steps that
every language shares, here, around hooks each language provides (:mod:`.base`):

1. the docstring's prose is reworded with the language's terms (:mod:`.terms`);
2. each doctest example (a ``>>>`` line and the next) is translated through the language's
   ``gen_*`` hooks (``transform_doctests``);
3. the description is laid out as MultiPL-E's version does it (``clean_description``);
4. the language writes the prompt (``translate_prompt``) and one deep-equality line per
   ``assert LEFT == RIGHT`` of the tests (``translate_tests``).

A problem a language cannot express is dropped for that language, with the reason. The three
generations of MultiPL-E's rows that are in use differ in a few rules (``VERSIONS``).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from typing import Any

from codekiln.errors import UserError
from codekiln.evaluate.humaneval import read_humaneval
from codekiln.evaluate.multiple import cleaned
from codekiln.evaluate.multiple.base import Unexpressible
from codekiln.evaluate.multiple.languages import LANGUAGES
from codekiln.evaluate.multiple.terms import DOCTEST, reword
from codekiln.evaluate.multiple.versions import DEFAULT_VERSION, VERSIONS, Version

# --- MultiPL-E's rows ----------------------------------------------------------------------
#
# The offline translator proper: it produces the rows of MultiPL-E's `humaneval-<lang>-reworded`
# files (name, language, prompt, doctests, original, prompt_terminology, tests, stop_tokens).
# MultiPL-E translates its own copies of the HumanEval problems (signatures with types, some
# docstrings and tests cleaned by hand; see `cleaned`), expression by expression: each Python
# literal, list, tuple, dict, name and call of a doctest example or a test is handed to the
# language's `gen_*` hooks, bottom-up, so a literal's own Python type (3 or 3.0) decides how it
# is written. The language then wraps the docstring into its prompt (`translate_prompt`) and
# the `assert LEFT == RIGHT` cases into its test suite.


@dataclass(frozen=True)
class Original:
    """A problem as MultiPL-E's originals state it, in the form its Python rows show it:
    doctest examples and test values written as Python (``repr``)."""

    number: int
    entry_point: str
    signature: str  # "def f(xs: List[int]) -> bool:"
    description: str  # the docstring's text, between the quotes, not dedented
    tests: tuple[str, ...]  # "candidate(...) == value" of each assert, in order

    @property
    def name(self) -> str:
        return f"HumanEval_{self.number}_{self.entry_point}"

    @property
    def task_id(self) -> str:
        return f"HumanEval/{self.number}"

    def function(self) -> ast.FunctionDef:
        node = ast.parse(self.signature + "\n    pass\n").body[0]
        assert isinstance(node, ast.FunctionDef)
        return node


def translate_expr(language: Any, node: ast.expr) -> Any:
    """A Python expression through the language's ``gen_*`` hooks, bottom-up: constants (a
    negated number is one constant), names, lists, tuples, dicts and calls (positional
    arguments only). Anything else raises Unexpressible, as it does in MultiPL-E."""
    if isinstance(node, ast.Constant):
        return language.gen_literal(node.value)
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
    ):
        return language.gen_literal(-node.operand.value)
    if isinstance(node, ast.Name):
        return language.gen_var(node.id)
    if isinstance(node, ast.List):
        return language.gen_list([translate_expr(language, e) for e in node.elts])
    if isinstance(node, ast.Tuple):
        return language.gen_tuple([translate_expr(language, e) for e in node.elts])
    if isinstance(node, ast.Dict):
        keys = [translate_expr(language, k) for k in node.keys]  # type: ignore[arg-type]
        return language.gen_dict(keys, [translate_expr(language, v) for v in node.values])
    if isinstance(node, ast.Call):
        function = translate_expr(language, node.func)
        return language.gen_call(function, [translate_expr(language, a) for a in node.args])
    raise Unexpressible(f"no translation for the expression {ast.unparse(node)[:60]!r}")


def _finalize(language: Any, expr: Any, side: str) -> Any:
    finalize = getattr(language, "finalize", None)
    return finalize(expr, side) if finalize is not None else expr


def transform_doctests(description: str, language: Any) -> str:
    """The description with each doctest example (a ``>>>`` line and the line after it)
    written in `language`: ``>>> CALL`` then the result on a line indented by four spaces.

    The call is the ``>>>`` line's first statement without ``>>>`` (its value, for an
    assignment); the result is the next line's expression. One that cannot be read or
    translated raises Unexpressible: MultiPL-E then drops the problem.
    """
    if ">>>" not in description:
        return description
    out, last = [], 0
    for match in DOCTEST.finditer(description):
        out.append(description[last : match.start()])
        call_line, result_line = match.group().split("\n")[:2]
        try:
            # MultiPL-E strips the characters ">" and " " from both ends.
            call = ast.parse(call_line.strip(">>> ")).body[0].value  # type: ignore[attr-defined]  # noqa: B005
            result = ast.parse(result_line.strip()).body[0].value  # type: ignore[attr-defined]
        except (SyntaxError, IndexError, AttributeError) as error:
            raise Unexpressible(f"the doctest {call_line.strip()!r} cannot be read") from error
        left = _finalize(language, translate_expr(language, call), "lhs")
        right = _finalize(language, translate_expr(language, result), "rhs")
        out.append(f">>> {left}\n    {right}\n")
        last = match.end()
    out.append(description[last:])
    return "".join(out)


def clean_description(description: str) -> str:
    """The description as MultiPL-E's prompts show it (after the examples are translated):
    blank lines dropped, and every line that starts with the second line's indentation (as
    whitespace) loses it. The first line keeps what it has beyond that (HumanEval/0's
    " Check if" keeps its space), and so does a line indented less (HumanEval/147's lines at 4
    spaces stay indented, its second line having 8).

    >>> clean_description(" Add.\\n    More:\\n\\n        deeper\\n  >>> f(1)\\n    2\\n    ")
    ' Add.\\nMore:\\n    deeper\\n  >>> f(1)\\n2'
    """
    lines = [line for line in description.split("\n") if line.strip()]
    width = len(lines[1]) - len(lines[1].lstrip()) if len(lines) > 1 else 0
    return "\n".join(
        line[width:] if line[width:].lstrip() == line.lstrip() else line for line in lines
    )


def translate_tests(original: Original, language: Any, skip_failing: bool = False) -> str:
    """The test suite: the language's prefix, one deep-equality line per assert, its suffix.
    An assert the language cannot write drops the problem, or, with `skip_failing` (the
    2023-09 rows: Bash keeps HumanEval/7 and /29 without their cases of strings with spaces),
    is left out; with none left the problem is dropped."""
    lines = list(language.test_suite_prefix_lines(original.entry_point))
    written = 0
    for text in original.tests:
        compare = ast.parse(text, mode="eval").body
        assert isinstance(compare, ast.Compare), text
        try:
            left = _finalize(language, translate_expr(language, compare.left), "lhs")
            right = _finalize(language, translate_expr(language, compare.comparators[0]), "rhs")
            lines.append(language.deep_equality(left, right))
        except Exception:
            if not skip_failing:
                raise
            continue
        written += 1
    if not written:
        raise Unexpressible("no test could be translated")
    lines.extend(language.test_suite_suffix_lines())
    return "\n".join(lines)


def translate_row(
    original: Original, language: Any, version: Version | None = None
) -> dict[str, Any]:
    """`original` as a row of MultiPL-E's ``humaneval-<lang>-reworded`` file in `version`
    (default: the language's); raises Unexpressible (or whatever a language hook raises) to
    drop it in that language."""
    version = version or getattr(language, "version", VERSIONS[DEFAULT_VERSION])
    function = original.function()
    args, returns = function.args.args, function.returns
    key = language.terms_key or language.key
    description = reword(original.description, key, version.terms)
    # Typed languages read the signature's types here, before the examples need them.
    language.translate_prompt(original.entry_point, args, returns, description)
    description = transform_doctests(description, language)
    if version.deindent and not getattr(language, "raw_description", False):
        description = clean_description(description)
    prompt = language.translate_prompt(original.entry_point, args, returns, description)
    return {
        "name": original.name,
        "language": language.row_language or language.key,
        "prompt": prompt,
        "doctests": "transform",
        "original": "",
        "prompt_terminology": "reworded",
        "tests": translate_tests(original, language, version.skip_failing_tests),
        "stop_tokens": list(language.stop_tokens),
    }


def translate_rows(
    key: str, version: str = DEFAULT_VERSION
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """HumanEval as MultiPL-E's rows for language `key` ("js", "rs", ...) in `version` (see
    VERSIONS): the rows, in HumanEval's order, and {task_id: reason} of the problems dropped."""
    if key not in LANGUAGES:
        raise UserError(f"unknown language {key!r}: one of {', '.join(LANGUAGES)}")
    if version not in VERSIONS:
        raise UserError(f"unknown MultiPL-E version {version!r}: one of {', '.join(VERSIONS)}")
    language = LANGUAGES[key]()  # fresh: translators keep per-problem state
    language.version = VERSIONS[version]
    rows: list[dict[str, Any]] = []
    dropped: dict[str, str] = {}
    for original in originals():
        if isinstance(original, Unexpressible):
            dropped[original.task_id] = str(original)  # type: ignore[attr-defined]
            continue
        try:
            rows.append(translate_row(original, language))
        except Exception as error:  # noqa: BLE001 - MultiPL-E drops a problem that raises
            dropped[original.task_id] = f"{type(error).__name__}: {error}"
    return rows, dropped


@functools.cache
def originals() -> tuple[Original | Unexpressible, ...]:
    """The 164 problems as MultiPL-E's originals have them (or why MultiPL-E has none):
    HumanEval's, with MultiPL-E's signatures, hand-cleaned docstrings and tests applied."""
    out: list[Original | Unexpressible] = []
    for problem in read_humaneval():
        number = int(problem["task_id"].rsplit("/", 1)[1])
        if number in cleaned.cleanings().skipped:
            error = Unexpressible(cleaned.cleanings().skipped[number])
            error.task_id = problem["task_id"]  # type: ignore[attr-defined]
            out.append(error)
            continue
        out.append(read_original(problem))
    return tuple(out)


def read_original(problem: dict[str, Any]) -> Original:
    """One HumanEval problem as MultiPL-E's original of it: its signature, docstring (doctests
    written as Python) and ``assert ... == ...`` tests, with MultiPL-E's edits applied."""
    number = int(problem["task_id"].rsplit("/", 1)[1])
    function = _entry_point_any(problem["prompt"], problem["entry_point"])
    fixes = cleaned.cleanings()
    signature = fixes.signatures.get(number) or python_signature(function)
    description = ast.get_docstring(function, clean=False) or ""
    description = _python_doctests(description)
    description = cleaned.apply(description.split("\n"), fixes.docstrings.get(number, ()))
    tests = python_tests(problem["test"])
    tests = cleaned.apply_list(tests, fixes.tests.get(number, ()))
    return Original(number, problem["entry_point"], signature, "\n".join(description), tests)


def _entry_point_any(prompt: str, name: str) -> ast.FunctionDef:
    for node in ast.parse(prompt).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise Unexpressible(f"the prompt does not define {name}")


class PythonExpr:
    """Python as MultiPL-E's Python rows write it: the form `Original` keeps values in."""

    def gen_literal(self, value: Any) -> str:
        return repr(value)

    def gen_var(self, name: str) -> str:
        return name

    def gen_list(self, items: list[str]) -> str:
        return "[" + ", ".join(items) + "]"

    def gen_tuple(self, items: list[str]) -> str:
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"

    def gen_dict(self, keys: list[str], values: list[str]) -> str:
        return "{ " + ", ".join(f"{k}: {v}" for k, v in zip(keys, values, strict=True)) + " }"

    def gen_call(self, function: str, args: list[str]) -> str:
        return function + "(" + ", ".join(args) + ")"


def python_signature(function: ast.FunctionDef) -> str:
    """The ``def`` line as MultiPL-E's Python rows write it (annotations kept, no defaults)."""

    def arg(a: ast.arg) -> str:
        return a.arg if a.annotation is None else f"{a.arg}: {ast.unparse(a.annotation)}"

    returns = "" if function.returns is None else f" -> {ast.unparse(function.returns)}"
    return f"def {function.name}({', '.join(arg(a) for a in function.args.args)}){returns}:"


def _python_doctests(description: str) -> str:
    """HumanEval's docstring with the doctest examples that can be read written as Python
    rows write them; the others stay as they are (MultiPL-E's cleaning rewrote those)."""
    out, last = [], 0
    for match in DOCTEST.finditer(description):
        out.append(description[last : match.start()])
        try:
            out.append(transform_doctests(match.group(), PythonExpr()))
        except (Unexpressible, ValueError):
            out.append(match.group())
        last = match.end()
    out.append(description[last:])
    return "".join(out)


def python_tests(test: str) -> tuple[str, ...]:
    """The ``LEFT == RIGHT`` asserts of HumanEval's ``check`` written as Python rows write
    them; the other statements and the asserts that cannot be translated are left out."""
    check = next(
        node
        for node in ast.parse(test).body
        if isinstance(node, ast.FunctionDef) and node.name == "check"
    )
    python, out = PythonExpr(), []
    for statement in check.body:
        if not isinstance(statement, ast.Assert):
            continue
        compare = statement.test
        if not (
            isinstance(compare, ast.Compare)
            and len(compare.ops) == 1
            and isinstance(compare.ops[0], ast.Eq)
        ):
            continue
        try:
            left = translate_expr(python, compare.left)
            right = translate_expr(python, compare.comparators[0])
        except Unexpressible:
            continue
        out.append(f"{left} == {right}")
    return tuple(out)
