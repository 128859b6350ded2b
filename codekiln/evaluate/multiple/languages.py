"""The languages of the ``multiple-<lang>`` tasks, by key."""

from __future__ import annotations

import functools

from codekiln.errors import UserError
from codekiln.evaluate.multiple.base import Language
from codekiln.evaluate.multiple.bash import Bash
from codekiln.evaluate.multiple.cpp import Cpp
from codekiln.evaluate.multiple.go import Go
from codekiln.evaluate.multiple.java import Java
from codekiln.evaluate.multiple.js import JavaScript, TypeScript
from codekiln.evaluate.multiple.rust import Rust
from codekiln.evaluate.multiple.scripting import Lua, Perl, Php, Ruby

LANGUAGES: dict[str, type[Language]] = {
    cls.key: cls
    for cls in (JavaScript, TypeScript, Cpp, Java, Rust, Go, Php, Ruby, Lua, Perl, Bash)
}


@functools.cache
def language(key: str) -> Language:
    """The Language of a key ("js", "cpp", ...)."""
    if key not in LANGUAGES:
        raise UserError(f"unknown language {key!r}: one of {', '.join(LANGUAGES)}")
    return LANGUAGES[key]()
