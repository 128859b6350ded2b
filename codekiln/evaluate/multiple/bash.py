"""Bash: a shell function that gets its arguments as words and prints its result.

Bash has strings only, so values travel as text, the way MultiPL-E's Bash does it: a
number or a string is one argument; ``true``/``false`` for booleans; a list is one
argument of space-separated items; a list of lists is one argument of newline-separated
rows. The result is what the function prints, compared line by line and item by item (with
awk: numbers within the tolerance, anything else exactly). A problem is dropped when its
values do not fit that scheme: dicts, ``None`` inside lists, list items that are empty or
contain whitespace (a space-separated list could not tell them apart).

The candidate runs in a command substitution, a subshell: its ``exit`` ends only that
subshell, and the test main, which holds the completion token, goes on to compare.
"""

from __future__ import annotations

from typing import Any

from codekiln.evaluate.multiple.base import TOLERANCE, Language, escape
from codekiln.evaluate.multiple.infer import Type, Unexpressible, settle, type_of
from codekiln.evaluate.multiple.translate import Spec
from codekiln.evaluate.sandbox import Limits
from codekiln.evaluate.tasks import Program

HARNESS = r"""
ck_equal() {
  [[ "$1" == "$2" ]] && return 0
  CK_A="$1" CK_B="$2" awk 'BEGIN {
    number = "^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?$"
    na = split(ENVIRON["CK_A"], la, "\n"); nb = split(ENVIRON["CK_B"], lb, "\n")
    if (na != nb) exit 1
    for (i = 1; i <= na; i++) {
      nf = split(la[i], fa, / /); ng = split(lb[i], fb, / /)
      if (nf != ng) exit 1
      for (j = 1; j <= nf; j++) {
        if (fa[j] == fb[j]) continue
        if (fa[j] !~ number || fb[j] !~ number) exit 1
        d = fa[j] - fb[j]; if (d < 0) d = -d
        s = fb[j] < 0 ? -fb[j] : fb[j]; if (s < 1) s = 1
        if (d > TOLERANCE * s) exit 1
      }
    }
    exit 0
  }'
}

ck_check() {
  if ! ck_equal "$2" "$3"; then
    printf 'case %s failed: got %q, expected %q\n' "$1" "$2" "$3" >&2
    exit 1
  fi
}

ck_nonce=""
ck_out=""
if [[ -n "${CODEKILN_TOKEN_IN:-}" && -n "${CODEKILN_TOKEN_OUT:-}" ]]; then
  IFS= read -r -d '' ck_nonce <&"$CODEKILN_TOKEN_IN"
  exec {CODEKILN_TOKEN_IN}<&-
  ck_out="$CODEKILN_TOKEN_OUT"
fi
unset CODEKILN_TOKEN_IN CODEKILN_TOKEN_OUT
""".replace("TOLERANCE", repr(TOLERANCE))

FOOTER = """
if [[ -n "$ck_out" ]]; then
  printf '%s' "$ck_nonce" >&"$ck_out"
fi
"""

_DESCRIPTIONS = {
    "int": "an integer",
    "float": "a floating point",
    "bool": "true or false",
    "str": "a string",
}


class Bash(Language):
    key = "sh"
    name = "Bash"
    extension = "sh"
    comment = "#"
    stop = ("\n}", "\n```")
    binaries = ("bash", "awk")
    null = ""
    limits = Limits(timeout=10.0, cpu_seconds=10, memory_bytes=2 << 30, processes=64)

    def check_type(self, t: Type) -> None:
        if not _flat(t):
            raise Unexpressible(f"Bash passes only scalars, lists and lists of lists, not {t}")

    def render(self, value: Any, t: Type, depth: int = 0) -> str:
        """The text of a value: an argument's word, or what the function prints."""
        if t.kind in ("union", "unknown"):
            t = settle(type_of(value))
        if t.kind == "optional":
            return "" if value is None else self.render(value, t.args[0], depth)
        if value is None:
            return ""
        if t.kind == "bool":
            return "true" if value else "false"
        if t.kind == "int":
            return str(value)
        if t.kind == "float":
            return repr(float(value))
        if t.kind == "str":
            if depth and (not value or any(c.isspace() for c in value)):
                raise Unexpressible(f"the list item {value!r} is empty or has whitespace")
            return value
        if t.kind in ("list", "tuple"):
            types = t.args if t.kind == "tuple" else (t.args[0],) * len(value)
            items = [self.render(v, e, depth + 1) for v, e in zip(value, types, strict=True)]
            rows = any(e.kind in ("list", "tuple") for e in types)
            return ("\n" if rows else " ").join(items)
        raise Unexpressible(f"a value of type {t}")

    def literal(self, value: Any, t: Type) -> str:
        return _quote(self.render(value, t))

    def call(self, spec: Spec, args: list[str]) -> str:
        return " ".join([spec.name, *args])

    def doc_lines(self, spec: Spec) -> list[str]:
        lines = super().doc_lines(spec)
        notes = [f"${i} is {_describe(p.type)}" for i, p in enumerate(spec.params, 1)]
        return [*lines, "", *notes] if notes else lines

    def prompt(self, spec: Spec) -> str:
        return "#!/bin/bash\n" + self.doc_comment(spec) + f"{spec.name}() {{\n"

    def harness(self, spec: Spec) -> str:
        checks = "".join(
            f'ck_check {n} "$({call})" {expected}\n'
            for n, (call, expected) in enumerate(self.cases(spec), 1)
        )
        return self.close + HARNESS + "\n" + checks + FOOTER

    def program(self, source: str) -> Program:
        return Program(files={"main.sh": source}, command=["bash", "main.sh"])


def _flat(t: Type, depth: int = 0) -> bool:
    """Whether values of `t` fit Bash's text scheme: scalars, and lists two levels deep."""
    if t.is_scalar or t.kind == "unknown":
        return True
    if t.kind == "union":
        return all(a.is_scalar for a in t.args)
    if t.kind == "optional":
        return depth == 0 and t.args[0].is_scalar
    if t.kind in ("list", "tuple"):
        return depth < 2 and all(_flat(a, depth + 1) for a in t.args)
    return False


def _describe(t: Type) -> str:
    if t.kind in _DESCRIPTIONS:
        return _DESCRIPTIONS[t.kind]
    if t.kind in ("list", "tuple"):
        if all(a.is_scalar for a in t.args):
            return "a space-separated list"
        return "a newline-separated list of space-separated lists"
    return "a string"


def _quote(text: str) -> str:
    """A Bash word for `text`, in ANSI-C quotes when it has special characters.

    >>> _quote("a b"), _quote("it's\\n")
    ('"a b"', "$'it\\\\'s\\\\n'")
    """
    if all(c.isalnum() or c in " .,_-+:/=" for c in text):
        return f'"{text}"'
    specials = {"'": "\\'", "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    return "$'" + escape(text, specials, lambda c: f"\\U{c:08x}") + "'"
