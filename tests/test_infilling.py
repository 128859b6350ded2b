"""The FIM paper's infilling sets: ids and counts, the official row layout, scoring through the
real sandbox, official files read with --data, and the one-line errors for bad data."""

from __future__ import annotations

import gzip
import json
import re

import pytest

import codekiln.evaluate.infilling  # noqa: F401  (registers the tasks until tasks.py loads it)
from codekiln.errors import UserError
from codekiln.evaluate.config import EvalConfig
from codekiln.evaluate.harness import evaluate, run_programs
from codekiln.evaluate.humaneval import read_humaneval
from codekiln.evaluate.tasks import get_task

PROBLEMS = {p["task_id"]: p for p in read_humaneval()}
FIELDS = ("task_id", "entry_point", "prompt", "suffix", "canonical_solution", "test")


class Middles:
    """A FIM backend that answers each prefix from a table."""

    name = "middles"
    context_length = 4096
    supports_fim = True

    def __init__(self, answers):
        self.answers = answers

    def infill(self, prefixes, suffixes, params):
        from codekiln.generate import Completion

        return [[Completion(self.answers[p], 3, "eos")] for p in prefixes]


def verdicts(task, pairs):
    """Sandbox statuses of (problem, completion) pairs, in order."""
    programs = [task.program(problem, completion) for problem, completion in pairs]
    results = dict(run_programs(programs, task, EvalConfig(workers=4)))
    return [results[i].status for i in range(len(pairs))]


def hole(problem_id: str, start: int, end: int, benchmark: str, number: int) -> dict:
    """A random-span row in the official schema, cut from a HumanEval solution by hand."""
    source = PROBLEMS[problem_id]
    solution = source["canonical_solution"]
    return {
        "task_id": f"{benchmark}/{problem_id}/{number}",
        "entry_point": source["entry_point"],
        "prompt": source["prompt"] + solution[:start],
        "suffix": solution[end:],
        "canonical_solution": solution[start:end],
        "test": source["test"],
    }


def write_rows(path, rows):
    text = "".join(json.dumps(row) + "\n" for row in rows)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as out:
            out.write(text)
    else:
        path.write_text(text)
    return path


def test_line_sets_have_the_official_counts_ids_and_layout():
    single = get_task("humaneval-infill-single").problems()
    multi = get_task("humaneval-infill-multi").problems()
    assert (len(single), len(multi)) == (1033, 5815)
    assert all(re.fullmatch(r"SingleLineInfilling/HumanEval/\d+/L\d+", p.task_id) for p in single)
    assert all(
        re.fullmatch(r"MultiLineInfilling/HumanEval/\d+/L\d+_L\d+", p.task_id) for p in multi
    )
    assert [p.task_id for p in single[:3]] == [
        "SingleLineInfilling/HumanEval/0/L0",
        "SingleLineInfilling/HumanEval/0/L1",
        "SingleLineInfilling/HumanEval/0/L2",
    ]
    assert multi[1].task_id == "MultiLineInfilling/HumanEval/0/L0_L1"
    ids = {p.task_id for p in single}
    # HumanEval/0's line 6 is blank: no hole there, in either set.
    assert "SingleLineInfilling/HumanEval/0/L6" not in ids
    assert "SingleLineInfilling/HumanEval/0/L7" in ids
    first_problem = [
        p.task_id for p in multi if p.task_id.startswith("MultiLineInfilling/HumanEval/0/")
    ]
    assert len(first_problem) == 7 * 8 // 2 and not any("L6" in t for t in first_problem)
    for problem in single + multi:
        source = PROBLEMS["/".join(problem.task_id.split("/")[1:3])]
        middle = problem.data["canonical_solution"]
        assert set(problem.data) == set(FIELDS) and problem.data["test"] == source["test"]
        assert problem.prompt == problem.data["prompt"] and middle.endswith("\n")
        # The official rows put the program back together, with one quirk: a hole at line 0
        # leaves an empty line between the docstring and the hole.
        first = problem.task_id.rsplit("/", 1)[1].split("_")[0]
        gap = "\n" if first == "L0" else ""
        whole = source["prompt"] + gap + source["canonical_solution"]
        assert problem.prompt + middle + problem.suffix == whole
        if "Single" in problem.task_id:
            assert middle.count("\n") == 1 and middle.strip()
    # Multi-line: every pair i <= j of non-blank lines, per problem.
    for source in PROBLEMS.values():
        code = sum(1 for line in source["canonical_solution"].split("\n") if line.strip())
        prefix = f"MultiLineInfilling/{source['task_id']}/"
        assert sum(p.task_id.startswith(prefix) for p in multi) == code * (code + 1) // 2


def test_right_middles_pass_and_wrong_ones_fail_in_the_sandbox(tmp_path):
    single = get_task("humaneval-infill-single")
    multi = get_task("humaneval-infill-multi")
    by_id = {p.task_id: p for p in single.problems()} | {p.task_id: p for p in multi.problems()}
    chosen = [
        "SingleLineInfilling/HumanEval/0/L7",
        "SingleLineInfilling/HumanEval/12/L3",
        "SingleLineInfilling/HumanEval/163/L0",
        "MultiLineInfilling/HumanEval/0/L0_L7",
        "MultiLineInfilling/HumanEval/31/L1_L4",
        "MultiLineInfilling/HumanEval/99/L0_L0",
    ]
    assert set(chosen) <= set(by_id)
    pairs = [(by_id[t], by_id[t].data["canonical_solution"]) for t in chosen]
    wrong = [
        (by_id["SingleLineInfilling/HumanEval/0/L7"], "    return True\n"),
        (by_id["MultiLineInfilling/HumanEval/0/L0_L7"], "    return True\n"),
    ]
    task_of = {True: single, False: multi}
    statuses = [verdicts(task_of["Single" in p.task_id], [(p, c)])[0] for p, c in pairs + wrong]
    assert statuses == ["passed"] * len(chosen) + ["failed", "failed"]
    # End to end: the harness sends prompt and suffix, scores the middle, reports exact match.
    answers = {p.prompt: p.data["canonical_solution"] for p in single.problems()[:4]}
    answers[single.problems()[3].prompt] = "    pass\n"  # not the reference
    config = EvalConfig(tasks=["humaneval-infill-single"], limit=4, greedy=True)
    result = evaluate(Middles(answers), tmp_path, config, allow_code_execution=True)
    metrics = result["humaneval-infill-single"]["metrics"]
    assert metrics["pass@1"] == 0.75
    problems = single.problems()[:4]
    generations = {p.task_id: [answers[p.prompt]] for p in problems}
    assert single.extra_metrics(problems, generations) == {"exact_match": 0.75}


def test_generation_stops_only_at_the_end_of_the_middle():
    task = get_task("humaneval-infill-single")
    problem = task.problems()[0]
    two_lines = "    for idx, elem in enumerate(numbers):\n        pass\n"
    assert task.postprocess(problem, two_lines + "<|endoftext|>junk") == two_lines
    assert task.postprocess(problem, "x = 1\n<file_sep>b.py") == "x = 1\n"
    assert task.stop == ("<|endoftext|>", "<|filename|>", "<file_sep>")


@pytest.mark.parametrize("name", ["rows.jsonl.gz", "rows.jsonl"])
def test_random_span_reads_the_official_file_gzipped_or_plain(tmp_path, name):
    rows = [
        hole("HumanEval/0", 5, 60, "RandomSpanInfilling", 1),
        hole("HumanEval/0", 100, 131, "RandomSpanInfilling", 2),
        hole("HumanEval/2", 4, 20, "RandomSpanInfilling", 1),
    ]
    task = get_task("humaneval-infill-random")
    task.load_data(write_rows(tmp_path / name, rows))
    problems = task.problems()
    assert [p.task_id for p in problems] == [r["task_id"] for r in rows]
    assert [p.suffix for p in problems] == [r["suffix"] for r in rows]
    assert task.info()["data"]["rows"] == 3
    right = [(p, p.data["canonical_solution"]) for p in problems]
    wrong = [(problems[0], problems[0].data["canonical_solution"][:-3])]
    assert verdicts(task, right + wrong) == ["passed"] * 3 + ["failed"]


def test_random_span_through_the_harness_with_data_for_the_task(tmp_path):
    rows = [hole("HumanEval/0", 5, 60, "RandomSpanInfilling", 1)]
    path = write_rows(tmp_path / "spans.jsonl.gz", rows)
    answers = {rows[0]["prompt"]: rows[0]["canonical_solution"]}
    config = EvalConfig(
        tasks=["humaneval-infill-random"], data={"humaneval-infill-random": str(path)}, greedy=True
    )
    result = evaluate(Middles(answers), tmp_path / "out", config, allow_code_execution=True)
    result = result["humaneval-infill-random"]
    assert result["problems"] == 1 and result["metrics"]["pass@1"] == 1.0
    assert result["benchmark"]["data"]["benchmark"] == "RandomSpanInfilling"


def test_folders_official_line_files_and_the_light_set(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    light = [hole("HumanEval/2", 4, 20, "RandomSpanInfillingLight", 1)]
    write_rows(folder / "HumanEval-RandomSpanInfillingLight.jsonl.gz", light)
    task = get_task("humaneval-infill-random-light")
    task.load_data(folder)
    assert [p.task_id for p in task.problems()] == ["RandomSpanInfillingLight/HumanEval/2/1"]
    # A folder without the line sets' files leaves them derived; a file is used as given.
    single = get_task("humaneval-infill-single")
    single.load_data(folder)
    assert len(single.problems()) == 1033 and "derived" in single.info()["data"]["source"]
    derived = single.problems()[:2]
    given = [{**p.data, "task_id": p.task_id} for p in derived]
    write_rows(folder / "HumanEval-SingleLineInfilling.jsonl", given)
    single = get_task("humaneval-infill-single")
    single.load_data(folder)
    assert [p.task_id for p in single.problems()] == [p.task_id for p in derived]


def one_line_error(match, call, *args):
    with pytest.raises(UserError, match=match) as error:
        call(*args)
    assert "\n" not in str(error.value)


def test_missing_data_and_wrong_files_are_one_clear_line(tmp_path):
    for name in ("humaneval-infill-random", "humaneval-infill-random-light"):
        task = get_task(name)
        assert task.reads_data and task.needs_data
        one_line_error("pass --data HumanEval-RandomSpanInfilling", task.problems)
        one_line_error("no HumanEval-RandomSpanInfilling", task.load_data, tmp_path)
    assert get_task("humaneval-infill-single").reads_data
    assert not get_task("humaneval-infill-multi").needs_data
    task = get_task("humaneval-infill-random")
    one_line_error("does not exist", task.load_data, tmp_path / "nope.jsonl")
    spans = write_rows(
        tmp_path / "spans.jsonl", [hole("HumanEval/0", 5, 9, "RandomSpanInfilling", 1)]
    )
    # Another set's rows: the light task refuses the full set's file, and the other way round.
    one_line_error("Light rows", get_task("humaneval-infill-random-light").load_data, spans)
    light = write_rows(
        tmp_path / "light.jsonl", [hole("HumanEval/0", 5, 9, "RandomSpanInfillingLight", 1)]
    )
    one_line_error("a RandomSpanInfillingLight row", task.load_data, light)
    humaneval = write_rows(tmp_path / "he.jsonl", [{**PROBLEMS["HumanEval/0"], "suffix": ""}])
    one_line_error("a HumanEval row", task.load_data, humaneval)
    missing = hole("HumanEval/0", 5, 9, "RandomSpanInfilling", 1)
    del missing["suffix"]
    bad = write_rows(tmp_path / "bad.jsonl", [missing])
    one_line_error(r"bad.jsonl:1: not a human-eval-infilling row", task.load_data, bad)
    (tmp_path / "text.jsonl").write_text("{not json\n")
    one_line_error("text.jsonl:1: not a JSON line", task.load_data, tmp_path / "text.jsonl")
    (tmp_path / "broken.jsonl.gz").write_bytes(b"\x1f\x8b not really gzip")
    one_line_error("cannot read", task.load_data, tmp_path / "broken.jsonl.gz")
    (tmp_path / "empty.jsonl").write_text("\n")
    one_line_error("no rows", task.load_data, tmp_path / "empty.jsonl")
    twice = write_rows(
        tmp_path / "twice.jsonl", [hole("HumanEval/0", 5, 9, "RandomSpanInfilling", 1)] * 2
    )
    one_line_error("appears twice", task.load_data, twice)
