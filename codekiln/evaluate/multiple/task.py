"""The ``multiple-<lang>`` tasks: translated HumanEval, compiled and run in the sandbox.

A problem's prompt is the translation's prompt; the model's completion (cut at the
language's first stop sequence, which the harness text then puts back) is followed by the
harness, and the whole program is compiled (where the language compiles) and run. Task ids
stay HumanEval's (``HumanEval/0``), so results line up across languages.

Each task carries the sandbox ``limits`` its toolchain needs (compilers and runtimes want
more address space, threads and time than Python) and the ``ro_paths`` the sandbox must
show (a toolchain outside the system directories, such as rustup's).
"""

from __future__ import annotations

import functools
from typing import Any

from codekiln.evaluate.multiple.base import Language
from codekiln.evaluate.multiple.bash import Bash
from codekiln.evaluate.multiple.cpp import Cpp
from codekiln.evaluate.multiple.go import Go
from codekiln.evaluate.multiple.java import Java
from codekiln.evaluate.multiple.js import JavaScript, TypeScript
from codekiln.evaluate.multiple.rust import Rust
from codekiln.evaluate.multiple.scripting import Lua, Perl, Php, Ruby
from codekiln.evaluate.multiple.translate import Translation, translate_all
from codekiln.evaluate.sandbox import Limits
from codekiln.evaluate.tasks import Problem, Program, Task, register

LANGUAGES: dict[str, type[Language]] = {
    cls.key: cls
    for cls in (JavaScript, TypeScript, Cpp, Java, Rust, Go, Php, Ruby, Lua, Perl, Bash)
}
END_OF_TEXT = "<|endoftext|>"


@functools.cache
def language(key: str) -> Language:
    """The Language of a key ("js", "cpp", ...)."""
    if key not in LANGUAGES:
        raise ValueError(f"unknown language {key!r}: one of {', '.join(LANGUAGES)}")
    return LANGUAGES[key]()


@functools.cache
def translations(key: str) -> tuple[tuple[Translation, ...], dict[str, str]]:
    """HumanEval in language `key`: the translations, and {task_id: reason} of the drops."""
    kept, dropped = translate_all(language(key))
    return tuple(kept), dropped


def translation_report() -> dict[str, dict[str, Any]]:
    """Per language: how many problems were kept, which were dropped, and why.

    ``{"js": {"kept": 161, "dropped": ["HumanEval/32", ...], "reasons": {...}}, ...}``
    """
    report = {}
    for key in LANGUAGES:
        kept, dropped = translations(key)
        report[key] = {
            "kept": len(kept),
            "dropped": sorted(dropped, key=_number),
            "reasons": dropped,
        }
    return report


def _number(task_id: str) -> int:
    return int(task_id.rsplit("/", 1)[1])


class MultipleTask(Task):
    """HumanEval translated into one language."""

    mode = "complete"

    def __init__(self, key: str) -> None:
        self.lang = language(key)
        self.name = f"multiple-{key}"
        self.description = f"MultiPL-E-style HumanEval in {self.lang.name}"
        self.language = key
        self.stop = (*self.lang.stop, END_OF_TEXT)
        self.limits: Limits = self.lang.limits
        self.timeout = self.limits.timeout

    @property
    def ro_paths(self) -> tuple[str, ...]:
        """Folders the sandbox must show read-only for this toolchain (see Sandbox)."""
        return self.lang.ro_paths()

    def problems(self) -> list[Problem]:
        kept, _ = translations(self.language)
        return [
            Problem(
                task_id=t.task_id,
                prompt=t.prompt,
                data={"harness": t.harness, "cases": t.cases, "language": self.language},
            )
            for t in kept
        ]

    def program(self, problem: Problem, completion: str) -> Program:
        return self.lang.program(problem.prompt + completion + problem.data["harness"])

    def ready(self) -> tuple[bool, str]:
        return self.lang.ready()


for _key in LANGUAGES:
    register(f"multiple-{_key}", functools.partial(MultipleTask, _key))
