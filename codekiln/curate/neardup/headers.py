"""A file's leading license header, found so that shingling can skip it: two files that
differ only in their notice stay duplicates, and two short files that share a long notice
do not."""

from __future__ import annotations

import re

# Leading headers are looked for in the first characters only, so the scan costs the same for
# any file size; a header that does not end within them is left in place.
_HEADER_SCAN = 16384
# Block comments, by opener: `/* */` (C family, CSS, Go, Rust, Java...), `<!-- -->` (markup),
# `(* *)` (OCaml, Pascal), `{- -}` (Haskell), `--[[ ]]` (Lua), and Python's module docstrings.
_BLOCK_COMMENTS = (
    ("/*", "*/"),
    ("<!--", "-->"),
    ("(*", "*)"),
    ("{-", "-}"),
    ("--[[", "]]"),
    ('"""', '"""'),
    ("'''", "'''"),
)
# A run of line-comment lines: `#` (shell, Python, Ruby, R...), `//`, `--` (SQL, Haskell,
# Lua, Ada), `;` (Lisp, assembly, INI), `%` (Erlang, MATLAB, TeX). `--`, `;` and `%` need a
# space or a repeat after them (`--i;` and JavaScript's leading `;(function` are code);
# preprocessor lines and Rust attributes start with `#` but are code.
_COMMENT_LINES = re.compile(
    r"(?:(?![ \t]*#(?:!?\[|[ \t]*(?:include|define|undef|if|ifdef|ifndef|elif|else|endif|pragma|"
    r"import|error|warning|line|region|endregion|using)\b))"
    r"[ \t]*(?:#|//|--(?=[-\s])|;(?=[;\s])|%(?=[%\s]))[^\n]*\n)+"
)
_BLANK = re.compile(r"[\s\ufeff]*")
# Phrases of license and copyright notices, lowercase (not the bare word "license", which
# module documentation uses for other things). Substring tests: one case-insensitive regex
# alternation of these ran ~50x slower.
_NOTICE_PHRASES = (
    "copyright",
    "\u00a9",
    "spdx-license-identifier",
    "licensed under",
    "licensed to",
    "permission is hereby granted",
    "all rights reserved",
    "warrant",
    "gnu general",
    "gnu lesser",
    "gnu library",
    "gnu affero",
    "mozilla public",
    "apache license",
    "eclipse public",
    "redistribution and use",
    "is free software",
    "see the license",
)
_C_IN_PARENS = re.compile(r"\(c\)\s*\w")
_TOKEN = re.compile(r"[A-Za-z0-9_]")  # a token begins here: the rest is not all header


def _is_notice(block: str) -> bool:
    low = block.lower()
    return any(p in low for p in _NOTICE_PHRASES) or (
        "(c)" in low and _C_IN_PARENS.search(low) is not None
    )


def _comment_blocks(text: str, limit: int):
    """(start, end) of each leading comment block of `text[:limit]`: a delimited block comment,
    or a run of line-comment lines. Stops at the first code, or at a block that does not end
    before `limit`."""
    pos = 0
    while True:
        pos = _BLANK.match(text, pos, limit).end()
        if pos >= limit:
            return
        for opener, closer in _BLOCK_COMMENTS:
            if text.startswith(opener, pos):
                end = text.find(closer, pos + len(opener), limit)
                if end < 0:
                    return
                start, pos = pos, end + len(closer)
                yield start, pos
                break
        else:
            run = _COMMENT_LINES.match(text, pos, limit)
            if run is None:
                return
            start, pos = pos, run.end()
            if limit < len(text) and _COMMENT_LINES.match(text, pos, pos + 4096):
                return  # the run goes on past the limit
            yield start, pos


def strip_leading_header(text: str) -> str:
    r"""The text without its leading license header, for shingling: two files that differ only
    in their notice stay duplicates, and two short files that share a long notice do not.

    The header is the leading comment blocks (line comments in `#`, `//`, `--`, `;`, `%`, block
    comments in `/* */`, `<!-- -->`, `(* *)`, `{- -}`, `--[[ ]]`, Python module docstrings) up
    to the last one that reads as a license or copyright notice; later comment blocks (module
    documentation) stay. A text with no such notice, or with no code token after it, comes
    back whole. Only the first 16 KB are scanned.

    >>> strip_leading_header("# Copyright 2024 Ann\n# MIT License\n\nimport os\n")
    'import os\n'
    >>> strip_leading_header("# Reads files.\nimport os\n")
    '# Reads files.\nimport os\n'
    """
    cut = 0
    for start, end in _comment_blocks(text, min(len(text), _HEADER_SCAN)):
        if _is_notice(text[start:end]):
            cut = end
    if cut == 0 or _TOKEN.search(text, cut) is None:
        return text
    return text[cut:].lstrip("\r\n")
