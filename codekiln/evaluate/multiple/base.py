"""What a target language provides: its types, literals, comments, prompt, harness and toolchain.

A :class:`Language` renders a :class:`~codekiln.evaluate.multiple.translate.Spec`:

- ``prompt``: the docstring as a comment in the language's style (doctest examples shown as
  calls in the language), then the function's header, ending where the body begins, as
  MultiPL-E prompts do; the model writes the body.
- ``harness``: appended after the completion, which was cut at the first stop sequence: the
  text that closes the function (the stop sequence the completion ended at), a deep-equality
  helper (floats within 1e-6, relative for large ones), and a test main that reads the
  completion token *before* calling the candidate, runs every case, exits non-zero at the
  first failure, and writes the token back only after the last case passed (the sandbox's
  completion-token protocol: an ``exit(0)`` inside the candidate cannot pass).

Literals are emitted from a value and its inferred type, recursively (``literal``), through
one hook per kind; a language raises :class:`Unexpressible` for what it cannot write, which
drops the problem for that language only.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any, ClassVar

from codekiln.evaluate.multiple.infer import Type, Unexpressible, settle, type_of
from codekiln.evaluate.multiple.translate import Example, Spec
from codekiln.evaluate.sandbox import Limits
from codekiln.evaluate.tasks import Program

TOKEN_IN, TOKEN_OUT = "CODEKILN_TOKEN_IN", "CODEKILN_TOKEN_OUT"
TOLERANCE = 1e-6


class Language:
    """Base of the languages. Subclasses set the class attributes and the hooks."""

    key: ClassVar[str] = ""  # the task is multiple-<key>
    name: ClassVar[str] = ""
    extension: ClassVar[str] = ""
    comment: ClassVar[str] = "//"
    stop: ClassVar[tuple[str, ...]] = ()
    close: ClassVar[str] = "\n}\n"  # what the first stop sequence cut off: ends the function
    binaries: ClassVar[tuple[str, ...]] = ()
    unions: ClassVar[bool] = True  # dynamic languages hold values of several types
    int_bound: ClassVar[int] = 2**63  # ints must lie in [-bound, bound)
    reserved: ClassVar[frozenset[str]] = frozenset()  # names renamed with a trailing "_"
    limits: ClassVar[Limits] = Limits(timeout=10.0, cpu_seconds=10)
    true, false, null = "true", "false", "null"

    # --- toolchain -----------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        """Whether every binary the programs need is on PATH, and what is missing if not."""
        missing = [b for b in self.binaries if shutil.which(b) is None]
        if missing:
            return False, f"missing {', '.join(missing)} (scripts/install-toolchains.sh)"
        return True, " ".join(self.binaries)

    def ro_paths(self) -> tuple[str, ...]:
        """Folders outside the system directories the sandbox must show (a toolchain)."""
        return ()

    def program(self, source: str) -> Program:
        """The sandbox job for a whole program text; subclasses give compile and command."""
        raise NotImplementedError

    # --- types and literals --------------------------------------------------------------

    def check_type(self, t: Type) -> None:
        """Raise Unexpressible if `t` has no form here (default: unions, for typed languages)."""
        if not self.unions and any(inner.kind == "union" for inner in t.walk()):
            raise Unexpressible(f"{self.name} has no type for values of {t}")

    def type_name(self, t: Type) -> str:
        raise NotImplementedError(f"{self.name} writes no types")

    def literal(self, value: Any, t: Type) -> str:
        """`value` as a literal of type `t` (an int where `t` is float becomes a float)."""
        if t.kind == "union" or t.kind == "unknown":
            t = settle(type_of(value))
        if t.kind == "optional":
            if value is None:
                return self.none_literal(t.args[0])
            return self.some_literal(self.literal(value, t.args[0]), t.args[0])
        if value is None:
            return self.none_literal(t)
        if t.kind == "bool":
            return self.true if value else self.false
        if t.kind == "int":
            if not -self.int_bound <= value < self.int_bound or isinstance(value, float):
                raise Unexpressible(f"{value} is not a {self.name} integer")
            return self.int_literal(value)
        if t.kind == "float":
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):
                raise Unexpressible(f"{value} has no {self.name} literal")
            return self.float_literal(value)
        if t.kind == "str":
            return self.str_literal(value)
        if t.kind == "list":
            return self.list_literal([self.literal(v, t.args[0]) for v in value], t)
        if t.kind == "tuple":
            items = [self.literal(v, e) for v, e in zip(value, t.args, strict=True)]
            return self.tuple_literal(items, t)
        if t.kind == "dict":
            key, val = t.args
            pairs = [(self.literal(k, key), self.literal(v, val)) for k, v in value.items()]
            return self.dict_literal(pairs, t)
        raise Unexpressible(f"a value of type {t}")

    def int_literal(self, value: int) -> str:
        return str(value)

    def float_literal(self, value: float) -> str:
        return repr(value)

    def str_literal(self, value: str) -> str:
        raise NotImplementedError

    def none_literal(self, t: Type) -> str:
        return self.null

    def some_literal(self, text: str, t: Type) -> str:
        return text

    def list_literal(self, items: list[str], t: Type) -> str:
        return "[" + ", ".join(items) + "]"

    def tuple_literal(self, items: list[str], t: Type) -> str:
        return self.list_literal(items, t)

    def dict_literal(self, pairs: list[tuple[str, str]], t: Type) -> str:
        raise NotImplementedError

    # --- prompt and harness --------------------------------------------------------------

    def ident(self, name: str) -> str:
        """A Python name as an identifier here (a reserved word gets a trailing "_")."""
        return name + "_" if name in self.reserved else name

    def call(self, spec: Spec, args: list[str]) -> str:
        return f"{self.ident(spec.name)}({', '.join(args)})"

    def call_literal(self, spec: Spec, args: tuple[Any, ...]) -> str:
        literals = [self.literal(v, p.type) for v, p in zip(args, spec.params, strict=True)]
        return self.call(spec, literals)

    def doc_lines(self, spec: Spec) -> list[str]:
        """The docstring's lines, with its examples written in this language."""
        lines: list[str] = []
        for line in spec.doc:
            if isinstance(line, Example):
                lines.extend(self._example(spec, line))
            else:
                lines.append(line)
        while lines and not lines[-1].strip():
            lines.pop()
        return lines

    def _example(self, spec: Spec, example: Example) -> list[str]:
        try:
            call = self.call_literal(spec, example.args)
            result = self.literal(example.expected, spec.returns)
        except Unexpressible:
            return list(example.text)
        indent = example.text[0][: len(example.text[0]) - len(example.text[0].lstrip())]
        return [f"{indent}>>> {call}", f"{indent}{result}"]

    def doc_comment(self, spec: Spec, indent: str = "") -> str:
        """The docstring as line comments."""
        out = []
        for line in self.doc_lines(spec):
            out.append(f"{indent}{self.comment} {line}".rstrip() if line else indent + self.comment)
        return "".join(line + "\n" for line in out)

    def cases(self, spec: Spec) -> list[tuple[str, str]]:
        """(call of the candidate, expected literal) for every case."""
        return [
            (self.call_literal(spec, case.args), self.literal(case.expected, spec.returns))
            for case in spec.cases
        ]

    def prompt(self, spec: Spec) -> str:
        raise NotImplementedError

    def harness(self, spec: Spec) -> str:
        raise NotImplementedError


def escape(text: str, specials: dict[str, str], other: Callable[[int], str]) -> str:
    """`text` for the inside of a quoted literal: `specials` map characters, printable ASCII
    stays, and `other` writes any other code point.

    >>> escape('a"\\n\\u00e9', {'"': '\\\\"', "\\n": "\\\\n"}, lambda c: f"\\\\u{c:04x}")
    'a\\\\"\\\\n\\\\u00e9'
    """
    out = []
    for char in text:
        if char in specials:
            out.append(specials[char])
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.append(other(ord(char)))
    return "".join(out)


def scalar_keys(t: Type) -> bool:
    """Whether dict keys of type `t` are ints or strings (or both): object/array keys."""
    return all(k.kind in ("int", "str") for k in (t.args if t.kind == "union" else (t,)))


C_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
