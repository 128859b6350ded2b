"""The ``multiple-<lang>`` tasks: MultiPL-E's rows, generated and judged as in the BigCode harness.

A task runs rows (see :mod:`.official`): the user's MultiPL-E files (``--data``), else the
``nuprl/MultiPL-E`` dataset at the harness's pinned revision when it can be loaded, else our
translator's rows. As the harness's ``multiple`` task does, the model continues
``row["prompt"].strip()``, the completion is cut at the row's ``stop_tokens`` (plus the
``<file_sep>`` the harness adds, and the end of text), and the program is the stripped prompt,
the completion, a newline and the row's ``tests``, run as MultiPL-E's evaluator for the language
runs it (see :mod:`.runners`). Task ids stay HumanEval's (``HumanEval/0``), so results line up
across languages; the row's name is kept in the problem's data and in results.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codekiln.evaluate.multiple.languages import LANGUAGES, language
from codekiln.evaluate.multiple.official import (
    Rows,
    dataset_rows,
    read_rows,
    task_id,
    translator_rows,
)
from codekiln.evaluate.multiple.runners import runner
from codekiln.evaluate.multiple.translate import translate_rows
from codekiln.evaluate.sandbox import Limits
from codekiln.evaluate.tasks import Problem, Program, Task
from codekiln.generate.text import cut_at_stop

END_OF_TEXT = "<|endoftext|>"
# What the BigCode harness adds to a row's stop tokens: <file_sep>, and the tokenizer's end of
# text (StarCoder's; a backend also stops at its own).
HARNESS_STOP = ("<file_sep>", END_OF_TEXT)


def translation_report() -> dict[str, dict[str, Any]]:
    """Per language: how many problems were kept, which were dropped, and why.

    ``{"js": {"kept": 161, "dropped": ["HumanEval/32", ...], "reasons": {...}}, ...}``
    """
    report = {}
    for key in LANGUAGES:
        rows, dropped = translate_rows(key)
        report[key] = {
            "kept": len(rows),
            "dropped": sorted(dropped, key=_number),
            "reasons": dropped,
        }
    return report


def _number(task_id: str) -> int:
    return int(task_id.rsplit("/", 1)[1])


class MultipleTask(Task):
    """MultiPL-E's HumanEval in one language."""

    mode = "complete"
    reads_data = True

    def __init__(self, key: str) -> None:
        self.lang = language(key)
        self.runner = runner(key)
        self.name = f"multiple-{key}"
        self.description = f"MultiPL-E HumanEval in {self.lang.name}"
        self.language = key
        self.limits: Limits = self.runner.limits
        self.timeout = self.limits.timeout
        self._rows: Rows | None = None
        self._not_dataset = ""  # why the dataset was not used, when the translator was
        self.version: str | None = None  # the MultiPL-E generator our translator reproduces

    def configure(self, config: Any) -> None:
        """Take `multiple_version` (which MultiPL-E rows the translator writes offline)."""
        version = getattr(config, "multiple_version", None)
        if (
            version != self.version
            and self._rows
            and self._rows.source["source"] == "codekiln translator"
        ):
            self._rows = None  # translated for another version: translate again
        self.version = version

    def load_data(self, path: Path) -> None:
        """Use the rows of this language in a MultiPL-E file or folder (see official)."""
        self._rows = read_rows(Path(path), self.language, self.runner.languages)

    def rows(self) -> Rows:
        """The rows this task runs: --data's, else the pinned dataset's, else ours."""
        if self._rows is None:
            rows, self._not_dataset = dataset_rows(self.language, self.runner.languages)
            self._rows = rows if rows is not None else translator_rows(self.language, self.version)
        return self._rows

    @property
    def stop(self) -> tuple[str, ...]:  # type: ignore[override]
        """The rows' stop tokens (one list per language) and what the harness adds."""
        tokens = [t for row in self.rows().rows for t in row["stop_tokens"]]
        return (*dict.fromkeys(tokens), *HARNESS_STOP)

    @property
    def ro_paths(self) -> tuple[str, ...]:
        """Folders the sandbox must show read-only for this toolchain (see Sandbox)."""
        return self.runner.ro_paths()

    def problems(self) -> list[Problem]:
        return [
            Problem(
                task_id=task_id(row["name"]),
                prompt=row["prompt"].strip(),
                data={
                    "name": row["name"],
                    "tests": row["tests"],
                    "stop_tokens": tuple(row["stop_tokens"]),
                    "language": self.language,
                },
            )
            for row in self.rows().rows
        ]

    def postprocess(self, problem: Problem, text: str) -> str:
        """`text` up to the first of the row's stop tokens (or what the harness adds)."""
        return cut_at_stop(text, (*problem.data["stop_tokens"], *HARNESS_STOP))[0]

    def program(self, problem: Problem, completion: str) -> Program:
        """The harness's program, run as MultiPL-E runs the language: the stripped prompt,
        the completion, a newline and the row's tests."""
        return self.runner.program(problem.prompt + completion + "\n" + problem.data["tests"])

    def ready(self) -> tuple[bool, str]:
        return self.runner.ready()

    def info(self) -> dict[str, Any]:
        """For results.json: the rows' source and names, the toolchain and how it ran."""
        rows = self.rows()
        ready, note = self.ready()
        source = dict(rows.source)
        if self._not_dataset and source["source"] != "files":
            source["dataset_not_used"] = self._not_dataset
        return {
            "benchmark": "MultiPL-E HumanEval",
            "language": self.language,
            "row_languages": sorted({row["language"] for row in rows.rows}),
            "rows": source,
            "problems": len(rows.rows),
            "names": [row["name"] for row in rows.rows],
            "prompt": "row prompt, stripped (the BigCode harness's get_prompt)",
            "program": 'stripped prompt + completion + "\\n" + row tests',
            "toolchain": {"ready": ready, "versions" if ready else "missing": note},
            "runner": {
                "file": self.runner.file,
                "compile": list(self.runner.compile) if self.runner.compile else None,
                "command": list(self.runner.command),
                "timeout_s": self.runner.timeout,
                "run_timeout_s": self.runner.run_timeout,
                "fails_if_output_contains": {
                    k: list(v) for k, v in self.runner.fails_if_output_contains.items()
                },
            },
        }
