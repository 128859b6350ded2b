"""Licenses: read them from LICENSE files and SPDX headers, and decide which code may be kept.

A repository's license comes from the license files at its root (`repo_license`); a single
file may also declare its own with an `SPDX-License-Identifier:` header (`spdx_header`). Both
give SPDX expressions such as `Apache-2.0 OR MIT`, which `license_allowed` checks against a
policy: `"permissive"` (StarCoder's choice), `"any"`, or an explicit list of SPDX ids.

Text detection looks for a few distinctive phrases of each license in a flattened copy of the
text (lowercased, every run of punctuation and whitespace turned into one space), in the fixed
order of `_RULES`; see the comment there for why the order matters.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from posixpath import basename

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


_LICENSE_NAME_RE = re.compile(
    r"(?:un)?licen[cs]e|copying"
    r"|(?:(?:un)?licen[cs]e|copying)[-_][a-z0-9][a-z0-9+_-]*(?:\.\d+)*"
    # A dotted suffix only names a license (COPYING.LESSER), never a language (license.py).
    r"|(?:licen[cs]e|copying)\.(?:lesser|library|lib|gpl|lgpl|agpl|mit|apache|apache2|bsd|mpl)"
    r"|[a-z0-9][a-z0-9.+_-]*[-_]licen[cs]e",
)
_DOC_SUFFIX_RE = re.compile(r"\.(?:md|markdown|txt|text|rst|adoc|org|html?)$")


def is_license_file(path: str) -> bool:
    """True when the file name is one that holds a repository's license text.

    >>> [is_license_file(p) for p in ("LICENSE", "sub/COPYING.LESSER", "MIT-LICENSE.txt")]
    [True, True, True]
    >>> is_license_file("src/license.py")
    False
    """
    name = _DOC_SUFFIX_RE.sub("", basename(path.replace("\\", "/")).lower())
    return _LICENSE_NAME_RE.fullmatch(name) is not None


_NON_ALNUM_RE = re.compile(r"[^a-z0-9]+")


def _flatten(text: str) -> str:
    """Lowercase, British spelling folded, every run of other characters one space.

    >>> _flatten("Licence: (c) 2024,\\n  MIT-style!")
    'license c 2024 mit style'
    """
    return _NON_ALNUM_RE.sub(" ", text.lower().replace("licence", "license")).strip()


_MIT_GRANT = "permission is hereby granted free of charge to any person obtaining a copy"
_MIT_NOTICE = "shall be included in all copies or substantial portions"
_ISC_GRANT = (
    r"permission to use copy modify (?:and or |and )?distribute this software for any purpose "
    r"with or without fee is hereby granted"
)
_ISC_NOTICE = "provided that the above copyright notice and this permission notice appear in all"
_BSD_REDIST = "redistribution and use in source and binary forms with or without modification"
_BSD_SOURCE = "redistributions of source code must retain the above copyright notice"
_BSD_BINARY = "redistributions in binary form must reproduce the above copyright notice"
_BSD_ENDORSE = "used to endorse or promote products derived from this software"
_GNU = "GNU"  # stands for the GNU family in _RULES: it needs more than phrases (_gnu_license)

# (SPDX id, phrases that must all be present). The first rule that matches wins, so:
# - PSF, MPL and EPL come first: their texts cite the GNU GPL (CPython's history table, the
#   "Secondary Licenses" of MPL-2.0 and EPL-2.0); CPython's also holds a 0BSD paragraph.
# - The GNU family is decided by which GNU license the text names first (`_gnu_license`),
#   because the GPL names the LGPL ("use the GNU Lesser General Public License instead")
#   and the LGPL-3.0 and AGPL texts name the GPL.
# - NCSA and BSL-1.0 grant rights in MIT-like words, so they precede MIT; X11 is MIT plus
#   the X Consortium clause; MIT-0 is MIT's grant without the notice condition.
# - BSD variants share the redistribution clauses: more specific ones first.
# - 0BSD is ISC's grant without the notice condition.
_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PSF-2.0", ("psf hereby grants licensee",)),
    ("MPL-2.0", (r"mozilla public license (?:version |v )?2 0",)),
    ("EPL-2.0", (r"eclipse public license (?:version |v )?2 0",)),
    ("EPL-1.0", (r"eclipse public license (?:version |v )?1 0",)),
    (_GNU, ()),
    ("Apache-2.0", (r"apache license (?:version |v )?2 0",)),
    ("UPL-1.0", ("universal permissive license",)),
    ("NCSA", ("university of illinois ncsa open source license",)),
    ("BSL-1.0", ("boost software license|any person or organization obtaining a copy of the",)),
    ("Unlicense", ("this is free and unencumbered software released into the public domain",)),
    ("CC0-1.0", ("cc0 1 0 universal|associated cc0 with|creativecommons org publicdomain zero",)),
    ("WTFPL", ("do what the fuck you want to public license",)),
    ("Zlib", ("origin of this software must not be misrepresented", "plainly marked as such")),
    (
        "BSD-4-Clause",
        (_BSD_REDIST, _BSD_SOURCE, "all advertising materials mentioning features or use of"),
    ),
    (
        "BSD-3-Clause-Clear",
        (_BSD_REDIST, _BSD_SOURCE, _BSD_ENDORSE, "no express or implied licenses to any party"),
    ),
    ("BSD-3-Clause", (_BSD_REDIST, _BSD_SOURCE, _BSD_BINARY, _BSD_ENDORSE)),
    ("BSD-2-Clause", (_BSD_REDIST, _BSD_SOURCE, _BSD_BINARY)),
    ("X11", (_MIT_GRANT, _MIT_NOTICE, "the name of the x consortium shall not be used")),
    ("MIT", (_MIT_GRANT, _MIT_NOTICE)),
    ("MIT-0", (_MIT_GRANT,)),
    ("ISC", (_ISC_GRANT, _ISC_NOTICE)),
    ("0BSD", (_ISC_GRANT,)),
)
_COMPILED = tuple((name, tuple(map(re.compile, phrases))) for name, phrases in _RULES)

_GNU_NAME_RE = re.compile(
    r"\bgnu (?:(?P<agpl>affero general public license|agpl)"
    r"|(?P<lgpl>(?:lesser|library) general public license|lgpl)"
    r"|(?P<gpl>general public license|gpl))(?:\b|(?=v\d))"
)
_GNU_VERSION_RE = re.compile(r"(?:\b|(?<=gpl))(?:version|v) ?([1-3])(?: ([01]))?\b")
_GNU_IDS = {
    ("gpl", "1"): "GPL-1.0",
    ("gpl", "2"): "GPL-2.0",
    ("gpl", "3"): "GPL-3.0",
    ("lgpl", "2"): "LGPL-2.0",
    ("lgpl", "2.0"): "LGPL-2.0",
    ("lgpl", "2.1"): "LGPL-2.1",
    ("lgpl", "3"): "LGPL-3.0",
    ("agpl", "3"): "AGPL-3.0",
}


def _gnu_license(flat: str) -> str | None:
    """GPL / LGPL / AGPL with version and -only or -or-later, from flattened text.

    >>> _gnu_license(_flatten("under the GNU Lesser General Public License as published by "
    ...     "the Free Software Foundation; either version 2.1 of the License, or (at your "
    ...     "option) any later version."))
    'LGPL-2.1-or-later'
    """
    name = _GNU_NAME_RE.search(flat)
    if name is None:
        return None
    family = name.lastgroup
    version = _GNU_VERSION_RE.search(flat, name.end(), name.end() + 300)
    if version is None:
        return None
    major, minor = version.groups()
    base = _GNU_IDS.get((family, f"{major}.{minor}" if minor else major))
    base = base or _GNU_IDS.get((family, major))
    if base is None:
        return None
    # The full texts end with a sample notice ("How to Apply These Terms") that says "or any
    # later version"; only a notice before the end of the terms speaks for the project.
    terms = flat.split("end of terms and conditions", 1)[0]
    later = rf"version {major}(?: \d)? of the license or at your option any later version"
    return f"{base}-or-later" if re.search(later, terms) else f"{base}-only"


def detect_license_text(text: str) -> str | None:
    """SPDX id of a LICENSE / COPYING file's text, or None when it is not recognised.

    A file that carries an SPDX tag is taken at its word.

    >>> detect_license_text("Permission to use, copy, modify, and/or distribute this software "
    ...     "for any purpose with or without fee is hereby granted.")
    '0BSD'
    """
    tagged = spdx_header(text)
    if tagged:
        return tagged
    flat = _flatten(text)
    for name, phrases in _COMPILED:
        if name == _GNU:
            found = _gnu_license(flat)
            if found:
                return found
        elif all(phrase.search(flat) for phrase in phrases):
            return name
    return None


# A license notice in a file's leading comment ("This program is free software ... GNU General
# Public License ... either version 2", "This Source Code Form is subject to the terms of the
# Mozilla Public License, v. 2.0", "Licensed under the Apache License, Version 2.0", the MIT
# or BSD text itself). It runs on every file, so it is a table of notice phrases behind a
# substring pre-check, not a license-detection library. Measured on the first 60 lines of
# 100 stdlib files (CPU time, a loaded 2-core machine): askalono (pyaskalono 0.2) ~185 ms a
# file, and it named "or later" notices -only, a GPL-2.0-only one GPL-3.0, an EPL-1.0 one MPL;
# scancode-toolkit 32.5 ~130-570 ms a file (accurate, 14 s to load its index). This costs
# about as much as `spdx_header` on a file without a notice word (~20 us there, ~2-3 us
# unloaded) and ~4x that when its header has one.
NOTICE_LINES = 60
NOTICE_CHARS = 4000
_NOTICE_WORDS = ("licen", "permission", "redistribution")
# Openers of block comments (and docstrings) and what closes them.
_BLOCKS = (
    ("/*", "*/"),
    ('"""', '"""'),
    ("'''", "'''"),
    ("<!--", "-->"),
    ("(*", "*)"),
    ("{-", "-}"),
    ("--[[", "]]"),
    ("#|", "|#"),
    ("%{", "%}"),
    ("=begin", "=end"),
    ("=pod", "=cut"),
    ("=head", "=cut"),
)
_BLOCK_OPENERS = tuple(opener for opener, _ in _BLOCKS)
_LINE_COMMENTS = ("#", "//", "*", "--", ";", "%", "!", "'", "::", "rem ", "REM ", "@rem", "@REM")
_LINE_COMMENTS += ("dnl", "<?php", "<%")
# C preprocessor lines start with "#" but are code: an include ends the leading comment, an
# include guard (which may come before the notice) is passed over.
_GUARDS = ("#ifndef", "#define", "#if ", "#endif", "#pragma once")
_DIRECTIVES = ("#include", "#import", "#pragma", "#if", "#undef", "#line", "#error")
# First match wins. MPL and EPL come before the GNU family, as in _RULES (tri-licensed
# MPL-1.1/GPL/LGPL headers). The GNU family comes before the permissive texts: a header that
# quotes a BSD text and names the GPL is taken as GPL, since dropping a file by mistake costs
# less than keeping copyleft code under a permissive policy.
_NOTICE_RULES = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("MPL-2.0", r"mozilla public license (?:version |v ?)?2 0"),
        ("MPL-1.1", r"mozilla public license (?:version |v ?)?1 1"),
        ("EPL-2.0", r"eclipse public license (?:version |v ?)?2 0"),
        ("EPL-1.0", r"eclipse public license (?:version |v ?)?1 0"),
        (_GNU, ""),
        ("Apache-2.0", r"apache license (?:version |v ?)?2 0|apache 2 0 license"),
        ("MIT", r"\bunder (?:the )?(?:terms of (?:the )?)?mit license|\bmit style license"),
        ("PSF-2.0", r"\bpsf license\b|\bpython software foundation license\b"),
    )
)
# A header that offers a choice ("You can choose between two licenses: 1) GNU GPLv2 2) PSF
# license", "dual licensed under the MIT or GPL") names each license it lists, joined with OR.
_CHOICE_RE = re.compile(
    r"\bchoose (?:between|either|one of)\b|\bchoice of\b|\bdual(?:ly)? licen[sc]ed\b"
    r"|\b(?:licensed )?under either\b|\btwo licenses\b|\bthe licenses? of your choice\b"
)
# A GNU license without the word GNU, in a grant: "licensed under the GPLv2".
_NOTICE_GPL_RE = re.compile(
    r"\bunder (?:the )?(?:terms of (?:the )?)?(?:(?P<agpl>agpl)|(?P<lgpl>lgpl)|(?P<gpl>gpl))"
    r"(?:\b|(?=v\d))"
)
_VERSION_BEFORE_RE = re.compile(r"\bversion ([1-3])(?: ([01]))? of (?:the )?$")
_LATER_RE = re.compile(r"(?: of the license)?(?: or at your option| or)? (?:any )?later\b")
# Without a version, the GPL lets one choose any version ever published (GPL-2.0 section 9).
_GNU_UNVERSIONED = {"gpl": "GPL-1.0", "lgpl": "LGPL-2.0", "agpl": "AGPL-3.0"}


def _leading_comment(head: str) -> str:
    """The comment lines at the top of a file, up to its first line of code.

    >>> _leading_comment("#!/bin/sh\\n# Copyright A\\n\\nset -e\\n# not this\\n")
    '#!/bin/sh\\n# Copyright A\\n'
    """
    kept = []
    closer = None
    for line in head.split("\n", NOTICE_LINES)[:NOTICE_LINES]:
        text = line.strip()
        if closer is not None:
            if closer in text:
                closer = None
        elif text.startswith(_BLOCK_OPENERS):
            opener, end = next(block for block in _BLOCKS if text.startswith(block[0]))
            if end not in text[len(opener) :]:
                closer = end
        elif text.startswith(_GUARDS):
            continue
        elif text and (not text.startswith(_LINE_COMMENTS) or text.startswith(_DIRECTIVES)):
            break
        kept.append(text)
    return "\n".join(kept)


def _notice_gnu(flat: str) -> str | None:
    """GPL / LGPL / AGPL from a notice's grant, -only unless it allows any later version."""
    name = _GNU_NAME_RE.search(flat) or _NOTICE_GPL_RE.search(flat)
    if name is None:
        return None
    family = name.lastgroup
    # "version 2 of the GNU General Public License", else a version after the name.
    before = _VERSION_BEFORE_RE.search(flat, max(0, name.start() - 40), name.start())
    version = before or _GNU_VERSION_RE.search(flat, name.end(), name.end() + 300)
    if version is None:
        return f"{_GNU_UNVERSIONED[family]}-or-later"
    major, minor = version.groups()
    base = _GNU_IDS.get((family, f"{major}.{minor}" if minor else major))
    base = base or _GNU_IDS.get((family, major))
    if base is None:
        return None
    later = _LATER_RE.match(flat, version.end(), version.end() + 60) or (
        before and "any later version" in flat[name.end() : name.end() + 150]
    )
    return f"{base}-or-later" if later else f"{base}-only"


def header_notice(text: str) -> str | None:
    """SPDX id of a license notice in a file's leading comment, or None.

    For files without an `SPDX-License-Identifier:` tag; a notice names the file's own license,
    which may differ from its repository's.

    >>> header_notice("/*\\n * This program is free software; you can redistribute it under "
    ...     "the terms of\\n * the GNU General Public License as published by the Free "
    ...     "Software Foundation;\\n * either version 2 of the License, or (at your option) "
    ...     "any later version.\\n */\\nint x;\\n")
    'GPL-2.0-or-later'
    >>> header_notice("import os  # see the GNU General Public License v3\\n") is None
    True
    >>> header_notice("# Copyright (C) 2000 B. K.\\n# You can choose between two licenses:\\n"
    ...     "# 1) GNU GPLv2\\n# 2) PSF license for Python 2.2\\nimport os\\n")
    'GPL-2.0-only OR PSF-2.0'
    """
    head = text[:NOTICE_CHARS]
    lower = head.lower()
    if not any(word in lower for word in _NOTICE_WORDS):
        return None
    flat = _flatten(_leading_comment(head))
    if not any(word in flat for word in _NOTICE_WORDS):
        return None
    found = []
    for name, pattern in _NOTICE_RULES:
        if name == _GNU:
            gnu = _notice_gnu(flat)
            if gnu:
                found.append(gnu)
        elif pattern.search(flat):
            found.append(name)
    if len(found) > 1 and _CHOICE_RE.search(flat):
        return normalize_expression(" OR ".join(sorted(set(found))))
    if found:
        return found[0]
    for name, phrases in _COMPILED:
        if name != _GNU and all(phrase.search(flat) for phrase in phrases):
            return name
    return None


def repo_license(license_files: dict[str, str]) -> str | None:
    """The license expression of a repository, from the texts of its root license files.

    Several recognised licenses mean a choice (dual licensing), joined with OR in sorted
    order; unrecognised files add nothing. LGPL-3.0 projects ship the GPL-3.0 text next to it
    (the LGPL-3.0 is a set of additional permissions on the GPL), so that pair counts as LGPL.

    >>> repo_license({"LICENSE-MIT": "SPDX-License-Identifier: MIT",
    ...               "LICENSE-APACHE": "Apache License, Version 2.0"})
    'Apache-2.0 OR MIT'
    """
    found = {detect_license_text(text) for _, text in sorted(license_files.items())}
    found.discard(None)
    if any(name.startswith("LGPL-3.0") for name in found):
        found -= {"GPL-3.0-only", "GPL-3.0-or-later"}
    if len(found) <= 1:
        return next(iter(found), None)
    return normalize_expression(" OR ".join(f"({e})" for e in sorted(found)))


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
