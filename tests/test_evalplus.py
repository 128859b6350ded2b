"""HumanEval+ judged as EvalPlus judges it, on a small file in EvalPlus's format."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from codekiln.errors import UserError
from codekiln.evaluate.config import EvalConfig
from codekiln.evaluate.evalplus import HumanEvalPlus
from codekiln.evaluate.harness import evaluate, execute, write_results
from codekiln.evaluate.tasks import get_task
from codekiln.generate import Completion


def row(number: int, prompt: str, solution: str, entry: str, base, plus, atol=0) -> dict:
    return {
        "task_id": f"HumanEval/{number}",
        "prompt": prompt,
        "canonical_solution": solution,
        "entry_point": entry,
        "base_input": base,
        "plus_input": plus,
        "atol": atol,
        "contract": "",
        "test": "",
    }


ROWS = [
    row(
        0,
        'def add(a: int, b: int) -> int:\n    """Sum of a and b."""\n',
        "    return a + b\n",
        "add",
        [[1, 2], [3, 4]],
        [[10**6, 1], [-5, 5], [2**70, 2**70]],
    ),
    row(
        2,
        'def frac(x: float) -> float:\n    """The fractional part of positive x."""\n',
        "    return x % 1.0\n",
        "frac",
        [[3.5], [1.25]],
        [[123456.789], [0.1]],
        atol=1e-6,
    ),
    row(
        5,
        'def mean(xs: list) -> float:\n    """The mean of xs."""\n',
        "    return sum(xs) / len(xs)\n",
        "mean",
        [[[1, 2]]],
        [[[1, 2, 4]]],
    ),
    row(
        3,
        'def pair(xs: list) -> tuple:\n    """(sum, count) of xs; sorts xs in place."""\n',
        "    xs.sort()\n    return sum(xs), len(xs)\n",
        "pair",
        [[[3, 1, 2]], [[]]],
        [[[5] * 50], [[-1, 1]]],
    ),
    row(
        32,
        "import math\n\n\ndef poly(xs: list, x: float):\n"
        "    return sum(c * math.pow(x, i) for i, c in enumerate(xs))\n\n\n"
        'def find_zero(xs: list):\n    """One zero of the polynomial xs."""\n',
        # bisection from [-1, 1] widening: finds -1 for x^3 - x
        "    lo, hi = -1.0, 1.0\n"
        "    while poly(xs, lo) * poly(xs, hi) > 0:\n"
        "        lo, hi = lo * 2, hi * 2\n"
        "    while hi - lo > 1e-10:\n"
        "        mid = (lo + hi) / 2\n"
        "        if poly(xs, mid) * poly(xs, lo) > 0:\n"
        "            lo = mid\n"
        "        else:\n"
        "            hi = mid\n"
        "    return lo\n",
        "find_zero",
        [[[0, -1, 0, 1]]],
        [[[-6, 11, -6, 1]]],
        atol=1e-4,
    ),
    row(
        4,
        'def slow_double(x: int) -> int:\n    """2x, taking a tenth of a second."""\n',
        "    import time\n    time.sleep(0.1)\n    return 2 * x\n",
        "slow_double",
        [[1]],
        [[2]],
    ),
]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "HumanEvalPlus.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS).encode()))
    return path


@pytest.fixture
def task(data: Path) -> HumanEvalPlus:
    # Small limits where EvalPlus's defaults (4 s, 60 s) would make the slow cases slow.
    task = HumanEvalPlus(min_time_limit=0.1, per_task_timeout=0.5)
    task.load_data(data)
    return task


def judge(task: HumanEvalPlus, task_id: str, completions: list[str], tmp_path: Path):
    problems = [p for p in task.problems() if p.task_id == task_id]
    config = EvalConfig(tasks=["humaneval-plus"], workers=4, n_samples=len(completions))
    verdicts = execute(task, problems, {task_id: completions}, tmp_path, config)
    results = write_results(task, problems, {task_id: completions}, verdicts, tmp_path, config, {})
    return verdicts[task_id], results


def test_loads_rows_and_prompts_as_humaneval(task: HumanEvalPlus) -> None:
    problems = task.problems()
    assert [p.task_id for p in problems] == [f"HumanEval/{n}" for n in (0, 2, 3, 4, 5, 32)]
    assert problems[0].prompt == ROWS[0]["prompt"].strip()
    assert task.stop == get_task("humaneval").stop
    assert get_task("humaneval-plus").needs_data
    assert task.info()["rows"] == 6 and task.info()["min_time_limit"] == 0.1


def test_right_wrong_and_wrong_only_on_plus(task: HumanEvalPlus, tmp_path: Path) -> None:
    right = "    return b + a\n"
    wrong = "    return a - b\n"
    small_only = "    return a + b if abs(a) < 1000 else 0\n"
    raising = "    raise ValueError('no')\n"
    verdicts, results = judge(task, "HumanEval/0", [right, wrong, small_only, raising], tmp_path)
    assert [v["metrics"] for v in verdicts] == [
        {"humaneval": True, "humaneval+": True},
        {"humaneval": False, "humaneval+": False},
        {"humaneval": True, "humaneval+": False},
        {"humaneval": False, "humaneval+": False},
    ]
    assert [v["status"] for v in verdicts] == ["passed", "failed", "failed", "failed"]
    assert verdicts[1]["detail"] == "base input 1 of 2: got -1, expected 3"
    assert verdicts[2]["detail"].startswith("plus input 1 of 3: got 0, expected 1000001")
    assert "ValueError" in verdicts[3]["detail"]
    assert results["by_metric"]["humaneval"]["pass@1"] == pytest.approx(0.5)
    assert results["by_metric"]["humaneval+"]["pass@1"] == pytest.approx(0.25)
    assert results["metrics"]["pass@1"] == pytest.approx(0.25)  # the main verdict: humaneval+
    assert results["per_problem"][0]["passed_by_metric"] == {"humaneval": 2, "humaneval+": 1}
    rows = [json.loads(line) for line in (tmp_path / "verdicts.jsonl").open()]
    assert [r["metrics"]["humaneval"] for r in rows if r["sample"] == 2] == [True]
    # a resumed run reuses the verdicts, both metrics included
    again, results = judge(task, "HumanEval/0", [right, wrong, small_only, raising], tmp_path)
    assert again == verdicts and len(list((tmp_path / "verdicts.jsonl").open())) == 4
    assert results["by_metric"]["humaneval"]["pass@1"] == pytest.approx(0.5)


@pytest.mark.slow
def test_floats_within_atol_and_types(task: HumanEvalPlus, tmp_path: Path) -> None:
    close = "    return x - int(x) + 1e-7\n"
    far = "    return x - int(x) + 1e-3\n"
    verdicts, _ = judge(task, "HumanEval/2", [close, far], tmp_path)
    assert [v["metrics"]["humaneval+"] for v in verdicts] == [True, False]
    # atol 0 but float outputs: EvalPlus compares them with atol 1e-6
    verdicts, _ = judge(
        task,
        "HumanEval/5",
        [
            close.replace("x - int(x)", "sum(xs) / len(xs)"),
            far.replace("x - int(x)", "sum(xs) / len(xs)"),
        ],
        tmp_path,
    )
    assert [v["metrics"]["humaneval+"] for v in verdicts] == [True, False]
    # a list where the canonical returns a tuple fails: outputs keep their Python types
    as_list = "    return [sum(xs), len(xs)]\n"
    as_tuple = "    return (sum(sorted(xs)), len(xs))\n"
    verdicts, _ = judge(task, "HumanEval/3", [as_list, as_tuple], tmp_path)
    assert [v["status"] for v in verdicts] == ["failed", "passed"]


def test_find_zero_accepts_any_root(task: HumanEvalPlus, tmp_path: Path) -> None:
    other_root = "    return 1.0 if xs == [0, -1, 0, 1] else 3.0\n"  # canonical: -1.0 and 1.0
    not_a_root = "    return 0.5\n"
    verdicts, _ = judge(task, "HumanEval/32", [other_root, not_a_root], tmp_path)
    assert [v["metrics"]["humaneval+"] for v in verdicts] == [True, False]
    assert "poly" in verdicts[1]["detail"]


@pytest.mark.slow
def test_time_limit_comes_from_the_canonical_time(task: HumanEvalPlus, tmp_path: Path) -> None:
    task.prepare(task.problems())
    limits = task._truth["HumanEval/4"]["time_limits"]["base"]
    assert limits[0] == pytest.approx(0.4, abs=0.1)  # 4 x the canonical's 0.1 s, over min 0.1
    a_bit_slower = "    import time\n    time.sleep(0.2)\n    return 2 * x\n"
    too_slow = "    import time\n    time.sleep(5)\n    return 2 * x\n"
    endless = "    while True:\n        pass\n"
    verdicts, results = judge(task, "HumanEval/4", [a_bit_slower, too_slow, endless], tmp_path)
    assert [v["status"] for v in verdicts] == ["passed", "timeout", "timeout"]
    assert "limit" in verdicts[1]["detail"] and verdicts[1]["seconds"] < 3
    assert results["outcomes"]["timeout"] == 2


@pytest.mark.slow
def test_a_program_that_swallows_the_alarm_is_killed_at_the_deadline(
    task: HumanEvalPlus, tmp_path: Path
) -> None:
    stubborn = (
        "    import time\n    while True:\n        try:\n            time.sleep(10)\n"
        "        except BaseException:\n            pass\n"
    )
    start = time.monotonic()
    verdicts, _ = judge(task, "HumanEval/0", [stubborn], tmp_path)
    # base: min(0.5, 0.1 + 0.1) + 2 s, as EvalPlus waits before killing the process
    assert verdicts[0]["status"] == "timeout"
    assert "did not finish in 2.2 s" in verdicts[0]["detail"]
    assert time.monotonic() - start < 10


def test_output_and_exit_of_the_candidate_do_not_fake_a_pass(
    task: HumanEvalPlus, tmp_path: Path
) -> None:
    forged = (
        '    print(\'codekiln-evalplus {"phase": "base", "status": "pass"}\')\n'
        "    import os\n    os._exit(0)\n"
    )
    exits = "    import sys\n    sys.exit(0)\n"
    # EvalPlus's reliability guard takes open(), os.getcwd()... away from the candidate
    reads = "    open('/etc/hostname')\n    return a + b\n"
    verdicts, _ = judge(task, "HumanEval/0", [forged, exits, reads], tmp_path)
    assert [v["metrics"]["humaneval"] for v in verdicts] == [False, False, False]
    assert "TypeError" in verdicts[2]["detail"]


def test_default_limits_are_evalplus(data: Path) -> None:
    task = HumanEvalPlus()
    assert task.time_limits([0.001, 2.0]) == [4.0, 8.0]
    assert task.deadline([4.0] * 100) == 62.0  # min(60, 400) + 2
    assert task.limits.memory_bytes == 4 << 30


def test_bad_data_gives_one_clear_line(tmp_path: Path) -> None:
    task = HumanEvalPlus()
    with pytest.raises(UserError, match="pass --data HumanEvalPlus"):
        task.problems()
    humaneval = tmp_path / "HumanEval.jsonl"
    humaneval.write_text(json.dumps({"task_id": "HumanEval/0", "prompt": "", "test": ""}) + "\n")
    with pytest.raises(UserError, match="not a HumanEvalPlus row .*base_input"):
        task.load_data(humaneval)
    mbpp = tmp_path / "MbppPlus.jsonl"
    mbpp.write_text(json.dumps({**ROWS[0], "task_id": "Mbpp/2"}) + "\n")
    with pytest.raises(UserError, match="MBPP"):
        task.load_data(mbpp)
    with pytest.raises(UserError, match="does not exist"):
        task.load_data(tmp_path / "missing.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({**ROWS[0], "canonical_solution": "    return a / 0\n"}) + "\n")
    task.load_data(broken)
    with pytest.raises(UserError, match="canonical solution fails .*ZeroDivisionError"):
        task.prepare(task.problems())


class Answers:
    """A backend that answers every prompt with the canonical solution, cut by a stop word."""

    name = "answers"

    def complete(self, prompts, params):
        by_prompt = {r["prompt"].strip(): r["canonical_solution"] for r in ROWS}
        return [
            [Completion("\n" + by_prompt[p] + "\ndef junk():\n", 3, "eos")] * params.n
            for p in prompts
        ]


@pytest.mark.slow
def test_codekiln_eval_end_to_end(data: Path, tmp_path: Path) -> None:
    config = EvalConfig(tasks=["humaneval-plus"], data={"humaneval-plus": str(data)}, greedy=True)
    results = evaluate(Answers(), tmp_path / "out", config, allow_code_execution=True)
    result = results["humaneval-plus"]
    assert result["by_metric"] == {"humaneval": {"pass@1": 1.0}, "humaneval+": {"pass@1": 1.0}}
    assert result["metrics"] == {"pass@1": 1.0}
    rows = [json.loads(line) for line in (tmp_path / "out/humaneval-plus/generations.jsonl").open()]
    assert all("junk" not in r["completion"] for r in rows)  # the humaneval stop words


# Candidates judged by both sides; slow ones are left to the timing tests above.
AGAINST_EVALPLUS = {
    "HumanEval/0": [
        "    return b + a\n",
        "    return a - b\n",
        "    return a + b if abs(a) < 1000 else 0\n",
        "    raise ValueError('no')\n",
        "    return float(a + b)\n",
        "    return str(a + b)\n",
        "    import sys\n    sys.exit(0)\n",
        "    open('/etc/hostname').read()\n    return a + b\n",
    ],
    "HumanEval/2": [
        "    return x - int(x) + 1e-7\n",
        "    return x - int(x) + 1e-3\n",
        "    return [x % 1.0]\n",
    ],
    "HumanEval/3": [
        "    return [sum(xs), len(xs)]\n",
        "    return (float(sum(xs)), len(xs))\n",
        "    xs.append(1)\n    return (sum(xs) - 1, len(xs) - 1)\n",
    ],
    "HumanEval/5": ["    return sum(xs) / len(xs) + 1e-9\n", "    return sum(xs) // len(xs)\n"],
    # Not HumanEval/32: the released evalplus 0.3.1 fails every find_zero output (its oracle
    # `continue`s before recording the pass); EvalPlus's repository has the fix we follow.
}


@pytest.mark.slow
def test_verdicts_equal_evalplus_own_check(task: HumanEvalPlus, tmp_path: Path) -> None:
    """The reference: EvalPlus's own `trusted_exec` and `untrusted_check` (the evalplus
    package, installed without its generators' dependencies) on the same rows."""
    evaluation = pytest.importorskip("evalplus.eval")
    from evalplus.gen.util import trusted_exec

    problems = [p for p in task.problems() if p.task_id in AGAINST_EVALPLUS]
    config = EvalConfig(tasks=["humaneval-plus"], workers=2, n_samples=8)
    ours = execute(task, problems, AGAINST_EVALPLUS, tmp_path, config)
    for row in (r for r in ROWS if r["task_id"] in AGAINST_EVALPLUS):
        truth = {}
        for phase in ("base", "plus"):
            truth[phase] = trusted_exec(
                row["prompt"] + row["canonical_solution"],
                row[f"{phase}_input"],
                row["entry_point"],
                record_time=True,
            )
        candidates = AGAINST_EVALPLUS[row["task_id"]]
        for completion, verdict in zip(candidates, ours[row["task_id"]], strict=True):
            status = {
                phase: evaluation.untrusted_check(
                    "humaneval",
                    row["prompt"] + completion,
                    row[f"{phase}_input"],
                    row["entry_point"],
                    truth[phase][0],
                    row["atol"],
                    truth[phase][1],
                    fast_check=True,
                    min_time_limit=0.1,
                )[0]
                for phase in ("base", "plus")
            }
            base = status["base"] == evaluation.PASS
            theirs = {"humaneval": base, "humaneval+": base and status["plus"] == evaluation.PASS}
            assert verdict["metrics"] == theirs, (row["task_id"], completion, status)
