"""License notices in a file's leading comment, for files without an SPDX header.

A notice is a sentence such as "This program is free software ... GNU General Public License
... either version 2", "This Source Code Form is subject to the terms of the Mozilla Public
License, v. 2.0", "Licensed under the Apache License, Version 2.0", or the MIT or BSD text
itself. `header_notice` runs on every file, so it is a table of notice phrases behind a
substring pre-check, not a license-detection library. Measured on the first 60 lines of
100 stdlib files (CPU time, a loaded 2-core machine): askalono (pyaskalono 0.2) ~185 ms a
file, and it named "or later" notices -only, a GPL-2.0-only one GPL-3.0, an EPL-1.0 one MPL;
scancode-toolkit 32.5 ~130-570 ms a file (accurate, 14 s to load its index). This costs
about as much as `spdx_header` on a file without a notice word (~20 us there, ~2-3 us
unloaded) and ~4x that when its header has one.
"""

from __future__ import annotations

import re

from codekiln.curate.licenses.spdx import normalize_expression
from codekiln.curate.licenses.texts import (
    COMPILED_RULES,
    GNU,
    GNU_NAME_RE,
    GNU_VERSION_RE,
    flatten,
    gnu_id,
)

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
# First match wins. MPL and EPL come before the GNU family, as in `texts._RULES` (tri-licensed
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
        (GNU, ""),
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
    name = GNU_NAME_RE.search(flat) or _NOTICE_GPL_RE.search(flat)
    if name is None:
        return None
    family = name.lastgroup
    # "version 2 of the GNU General Public License", else a version after the name.
    before = _VERSION_BEFORE_RE.search(flat, max(0, name.start() - 40), name.start())
    version = before or GNU_VERSION_RE.search(flat, name.end(), name.end() + 300)
    if version is None:
        return f"{_GNU_UNVERSIONED[family]}-or-later"
    major, minor = version.groups()
    base = gnu_id(family, major, minor)
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
    flat = flatten(_leading_comment(head))
    if not any(word in flat for word in _NOTICE_WORDS):
        return None
    found = []
    for name, pattern in _NOTICE_RULES:
        if name == GNU:
            gnu = _notice_gnu(flat)
            if gnu:
                found.append(gnu)
        elif pattern.search(flat):
            found.append(name)
    if len(found) > 1 and _CHOICE_RE.search(flat):
        return normalize_expression(" OR ".join(sorted(set(found))))
    if found:
        return found[0]
    for name, phrases in COMPILED_RULES:
        if name != GNU and all(phrase.search(flat) for phrase in phrases):
            return name
    return None
