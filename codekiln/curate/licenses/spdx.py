"""SPDX license expressions: read them from `SPDX-License-Identifier:` headers, spell them
one way, and decide whether a policy allows them.

A policy is `"permissive"` (StarCoder's choice), `"any"`, or an explicit list of SPDX ids.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

from codekiln.errors import UserError

PERMISSIVE: frozenset[str] = frozenset(
    {
        "0BSD",
        "Apache-2.0",
        "Artistic-2.0",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "BSD-3-Clause-Clear",
        "BSL-1.0",
        "CC0-1.0",
        "ISC",
        "MIT",
        "MIT-0",
        "NCSA",
        "PostgreSQL",
        "PSF-2.0",
        "Python-2.0",
        "UPL-1.0",
        "Unlicense",
        "WTFPL",
        "X11",
        "Zlib",
    }
)
"""SPDX ids whose code may be kept under the "permissive" policy, as for The Stack / StarCoder.

The same ids as `CurateConfig.permissive_licenses`' default. Weak and strong copyleft (MPL,
EPL, LGPL, GPL, AGPL, CC-BY-SA) are deliberately absent.
"""

# Ids we know, so that `mit` or `apache-2.0` in a header comes out as `MIT` / `Apache-2.0`.
_OTHER_KNOWN = (
    "AFL-3.0",
    "Artistic-1.0",
    "BSD-1-Clause",
    "BSD-4-Clause",
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CDDL-1.0",
    "ECL-2.0",
    "EPL-1.0",
    "EPL-2.0",
    "EUPL-1.2",
    "MPL-1.1",
    "MPL-2.0",
    "MS-PL",
    "OFL-1.1",
    "Classpath-exception-2.0",
    "GCC-exception-3.1",
    "Linux-syscall-note",
    "LLVM-exception",
    "NOASSERTION",
    "NONE",
)


def _canonical_table() -> dict[str, str]:
    table = {name.lower(): name for name in (*PERMISSIVE, *_OTHER_KNOWN)}
    for base in ("GPL-1.0", "GPL-2.0", "GPL-3.0", "LGPL-2.0", "LGPL-2.1", "LGPL-3.0", "AGPL-3.0"):
        for name in (f"{base}-only", f"{base}-or-later"):
            table[name.lower()] = name
        # The bare and "+" forms are deprecated SPDX spellings of -only and -or-later.
        table[base.lower()] = f"{base}-only"
        table[base.lower() + "+"] = f"{base}-or-later"
    return table


_CANONICAL = _canonical_table()
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*(?::[A-Za-z0-9][A-Za-z0-9.+-]*)?")
_TOKEN_RE = re.compile(r"\(|\)|[^\s()]+")


def _canonical_id(token: str) -> str:
    """The usual spelling of an SPDX id; unknown ids are returned unchanged.

    >>> _canonical_id("apache-2.0"), _canonical_id("GPL-2.0+"), _canonical_id("LicenseRef-x")
    ('Apache-2.0', 'GPL-2.0-or-later', 'LicenseRef-x')
    """
    known = _CANONICAL.get(token.lower())
    if known:
        return known
    if token.endswith("+") and token[:-1].lower() in _CANONICAL:
        return _CANONICAL[token[:-1].lower()] + "+"
    return token


# A parsed expression is ("ID", license, exception or None) or ("AND" | "OR", children);
# all tuples, since parses are cached and shared.
_Node = tuple


class _Malformed(Exception):
    pass


class _Parser:
    """Recursive descent over SPDX expression tokens; AND binds tighter than OR."""

    def __init__(self, expression: str) -> None:
        self.tokens = _TOKEN_RE.findall(expression)
        self.pos = 0

    def peek(self) -> str | None:
        # Operators may be written in lower case ("mit or apache-2.0") in the wild.
        return self.tokens[self.pos].upper() if self.pos < len(self.tokens) else None

    def take_id(self) -> str:
        token = self.tokens[self.pos] if self.pos < len(self.tokens) else ""
        if token.upper() in ("AND", "OR", "WITH") or not _ID_RE.fullmatch(token):
            raise _Malformed(token)
        self.pos += 1
        return _canonical_id(token)

    def parse(self) -> _Node:
        node = self.chain("OR")
        if self.pos != len(self.tokens):
            raise _Malformed(self.tokens[self.pos])
        return node

    def chain(self, op: str) -> _Node:
        part = self.operand if op == "AND" else lambda: self.chain("AND")
        parts = [part()]
        while self.peek() == op:
            self.pos += 1
            parts.append(part())
        if len(parts) == 1:
            return parts[0]
        # (A OR B) OR C is A OR B OR C: flatten so that equal expressions render alike.
        return (op, tuple(c for p in parts for c in (p[1] if p[0] == op else [p])))

    def operand(self) -> _Node:
        if self.peek() == "(":
            self.pos += 1
            node = self.chain("OR")
            if self.peek() != ")":
                raise _Malformed("(")
            self.pos += 1
            return node
        license_id = self.take_id()
        if self.peek() != "WITH":
            return ("ID", license_id, None)
        self.pos += 1
        return ("ID", license_id, self.take_id())


@functools.lru_cache(maxsize=4096)
def _parse(expression: str) -> _Node | None:
    # Cached: the pipeline asks about the same few expressions for every file.
    try:
        return _Parser(expression).parse()
    except _Malformed:
        return None


def _render(node: _Node, nested: bool = False) -> str:
    if node[0] == "ID":
        return node[1] if node[2] is None else f"{node[1]} WITH {node[2]}"
    text = f" {node[0]} ".join(_render(child, nested=True) for child in node[1])
    return f"({text})" if nested else text


def _satisfiable(node: _Node, allowed: Callable[[str], bool]) -> bool:
    if node[0] == "ID":
        # An exception (WITH) only adds permissions, so the license itself decides.
        return allowed(node[1])
    combine = any if node[0] == "OR" else all
    return combine(_satisfiable(child, allowed) for child in node[1])


def normalize_expression(expression: str) -> str | None:
    """Canonical spelling of an SPDX expression, or None when it does not parse.

    >>> normalize_expression("(mit and bsd-3-clause)")
    'MIT AND BSD-3-Clause'
    >>> normalize_expression("gpl-2.0+ or (Apache-2.0 with llvm-exception)")
    'GPL-2.0-or-later OR Apache-2.0 WITH LLVM-exception'
    """
    node = _parse(expression)
    return None if node is None else _render(node)


_SPDX_TAG_RE = re.compile(r"SPDX-License-Identifier[ \t]*:[ \t]*(.*)", re.IGNORECASE)
# Comment closers and quotes that may follow the expression on the same line.
_TRAILER_RE = re.compile(r"(?:\s|\*/|-->|\*\)|-\}|#\}|%\}|%>|[\"';,])+$")


def spdx_header(text: str) -> str | None:
    """The expression of the first `SPDX-License-Identifier:` tag in the first 30 lines.

    >>> spdx_header("/* SPDX-License-Identifier: mit OR Apache-2.0 */\\nint x;")
    'MIT OR Apache-2.0'
    """
    head = "\n".join(text.split("\n", 30)[:30])
    for match in _SPDX_TAG_RE.finditer(head):
        expression = normalize_expression(_TRAILER_RE.sub("", match.group(1)))
        if expression:
            return expression
    return None


def parse_policy(value: str) -> str | tuple[str, ...]:
    """Read a license policy: "permissive", "any", or a comma-separated list of SPDX ids.

    >>> parse_policy("mit, Apache-2.0"), parse_policy("Permissive")
    (('MIT', 'Apache-2.0'), 'permissive')
    """
    word = value.strip().lower()
    if word in ("permissive", "any"):
        return word
    ids: list[str] = []
    for token in (t.strip() for t in value.split(",")):
        if not token:
            continue
        if not _ID_RE.fullmatch(token):
            raise UserError(
                f"license policy: {token!r} is not an SPDX license id; use 'permissive', "
                "'any' or SPDX ids separated by commas, e.g. 'MIT,Apache-2.0'"
            )
        canonical = _canonical_id(token)
        if canonical not in ids:
            ids.append(canonical)
    if not ids:
        raise UserError(
            f"license policy {value!r} is empty; use 'permissive', 'any' or SPDX ids "
            "separated by commas, e.g. 'MIT,Apache-2.0'"
        )
    return tuple(ids)


def license_allowed(expression: str | None, policy: str | Sequence[str]) -> bool:
    """True when code under `expression` may be kept under `policy`.

    One alternative of an OR is enough; every part of an AND must be allowed. A missing or
    unparsable license is only allowed by the "any" policy. Ids in a list match exactly
    (GPL-2.0-or-later does not satisfy a list that names only GPL-2.0-only).

    >>> license_allowed("MIT OR GPL-3.0-only", "permissive")
    True
    >>> license_allowed("MIT AND GPL-3.0-only", "permissive"), license_allowed(None, "any")
    (False, True)
    """
    if isinstance(policy, str):
        policy = parse_policy(policy)
    if policy == "any":
        return True
    if policy == "permissive":
        allowed = PERMISSIVE
    else:
        allowed = frozenset(_canonical_id(name.strip()) for name in policy)
    node = _parse(expression) if expression else None
    return node is not None and _satisfiable(node, allowed.__contains__)
