"""The MultiPL-E-style tasks: type inference, literals, the translation counts, and, through
the real sandbox and each installed toolchain, reference solutions that pass and wrong
ones (and early exits) that fail. Languages whose toolchain is missing are skipped."""

from __future__ import annotations

import ast
import time

import pytest
from multiple_fixtures import BAD, EXIT_EARLY, GOOD

from codekiln.evaluate.multiple import LANGUAGES, MultipleTask, language, translation_report
from codekiln.evaluate.multiple.infer import (
    FLOAT,
    INT,
    NONE,
    STR,
    Unexpressible,
    dict_of,
    from_annotation,
    list_of,
    optional,
    refine,
    tuple_of,
    type_of,
    unify,
)
from codekiln.evaluate.multiple.translate import Case, narrow, read_spec, translate
from codekiln.evaluate.sandbox import Job, Sandbox
from codekiln.evaluate.tasks import get_task

REQUIRED = ("js", "ts", "cpp", "java", "rs", "go", "php", "rb", "lua", "pl", "sh")


def annotation(text: str):
    return from_annotation(ast.parse(text, mode="eval").body)


def problem(signature: str, asserts: list[str], doc: str = "Do it.") -> dict:
    name = signature.split("(")[0]
    prompt = f"from typing import *\n\ndef {signature}:\n    '''{doc}'''\n"
    test = "def check(candidate):\n" + "".join(f"    assert {a}\n" for a in asserts)
    return {"task_id": "T/0", "entry_point": name, "prompt": prompt, "test": test}


# --- type inference ------------------------------------------------------------------------


def test_types_of_values_and_their_unions():
    assert type_of([[1, 2], []]) == list_of(list_of(INT))
    assert type_of({"a": (1, "x")}) == dict_of(STR, tuple_of(INT, STR))
    assert unify(INT, FLOAT) == FLOAT
    assert unify(NONE, list_of(INT)) == optional(list_of(INT))
    assert unify(tuple_of(STR, STR), tuple_of(STR)) == list_of(STR)
    assert str(unify(INT, STR)) == "union[int, str]"
    assert str(type_of([1, "a", 2.5])) == "list[union[float, str]]"


def test_annotations_are_refined_by_the_values():
    assert annotation("Tuple[int, Optional[str]]") == tuple_of(INT, optional(STR))
    assert refine(annotation("list"), list_of(FLOAT)) == list_of(FLOAT)
    assert refine(annotation("List[Any]"), list_of(STR)) == list_of(STR)
    assert refine(annotation("float"), INT) == FLOAT
    with pytest.raises(Unexpressible):
        annotation("Callable[[int], int]")


def test_spec_reads_cases_of_every_shape_and_infers_types():
    spec = read_spec(
        problem(
            "f(xs: list, t)",
            [
                "candidate([1, 2], 0.5) == [1]",
                "abs(candidate([3], 1) - 2.0 / 4) < 1e-6",
                "candidate([], 2) is None",
                "tuple(candidate([4], 2)) == tuple([4])",
                "not candidate([5], 2)",
                "candidate([], 2) == helper([1])",  # not a literal: skipped
            ],
        )
    )
    assert [str(p.type) for p in spec.params] == ["list[int]", "float"]
    assert str(spec.returns) == "optional[union[bool, float, list[int]]]"
    assert spec.cases[1] == Case(([3], 1), 0.5)
    assert spec.cases[2] == Case(([], 2), None)
    assert spec.skipped == 1


def test_a_problem_without_literal_tests_is_dropped():
    with pytest.raises(Unexpressible, match="no test"):
        read_spec(problem("f(x)", ["candidate(rng()) == 1"]))


def test_narrowing_drops_a_few_odd_cases_for_typed_languages():
    asserts = [f'candidate("{c}") == {i}' for i, c in enumerate("abcdefg")] + ["candidate([]) == 0"]
    spec = read_spec(problem("g(s)", asserts))
    assert str(spec.params[0].type) == "union[list[int], str]"
    narrowed = narrow(spec)
    assert str(narrowed.params[0].type) == "str" and len(narrowed.cases) == 7
    half = read_spec(problem("h(x)", ["candidate(1) == 1", "candidate(2) == 'a'"]))
    with pytest.raises(Unexpressible, match="several types"):
        translate(half, language("java"))
    assert "union" not in translate(half, language("ts")).harness  # TS writes `number | string`


def test_docstring_examples_are_shown_in_the_target_language():
    spec = read_spec(
        problem(
            "inc(xs: List[int]) -> List[int]", ["candidate([1]) == [2]"], ">>> inc([1, 2])\n[2, 3]"
        )
    )
    assert "// >>> inc(std::vector<long>({1, 2}))" in translate(spec, language("cpp")).prompt
    assert "# >>> inc [1, 2]" not in translate(spec, language("sh")).prompt
    assert '# >>> inc "1 2"\n# "2 3"' in translate(spec, language("sh")).prompt
    assert "-- >>> inc({1, 2})\n-- {2, 3}" in translate(spec, language("lua")).prompt


# --- literals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, type_, expected",
    [
        ("cpp", [(1, 2.0)], list_of(tuple_of(INT, FLOAT)),
         "std::vector<std::tuple<long, double>>({std::tuple<long, double>(1, 2.0)})"),
        ("cpp", None, optional(STR), "std::optional<std::string>()"),
        ("java", {"a": [1]}, dict_of(STR, list_of(INT)),
         'new HashMap<String, ArrayList<Long>>(Map.ofEntries(Map.entry("a", '
         "new ArrayList<Long>(Arrays.asList(1L)))))"),
        ("java", [], list_of(FLOAT), "new ArrayList<Double>()"),
        ("rs", ["a\n"], list_of(STR), 'vec![String::from("a\\n")]'),
        ("rs", (None, 3), tuple_of(optional(INT), optional(INT)), "(None, Some(3))"),
        ("go", 2, optional(INT), "ckPtr[int](2)"),
        ("go", {"k": 1.5}, dict_of(STR, FLOAT), 'map[string]float64{"k": 1.5}'),
        ("js", {"x": None}, dict_of(STR, optional(INT)), '{"x": undefined}'),
        ("ts", 3, FLOAT, "3.0"),
        ("php", "$x", STR, '"\\$x"'),
        ("rb", "#{x}", STR, '"\\#{x}"'),
        ("lua", {"a": 1}, dict_of(STR, INT), '{["a"] = 1}'),
        ("pl", [True, False], list_of(type_of(True)), '[1, ""]'),
        ("sh", [[1, 2], [3]], list_of(list_of(INT)), "$'1 2\\n3'"),
        ("sh", "it's", STR, "$'it\\'s'"),
    ],
)  # fmt: skip
def test_literals(key, value, type_, expected):
    assert language(key).literal(value, type_) == expected


def test_values_a_language_cannot_hold_raise():
    with pytest.raises(Unexpressible):
        language("js").literal(2**60, INT)  # beyond exact doubles
    with pytest.raises(Unexpressible):
        language("cpp").literal(2**70, INT)
    with pytest.raises(Unexpressible):
        language("sh").literal(["a b"], list_of(STR))  # would split into two items
    with pytest.raises(Unexpressible):
        language("lua").check_type(list_of(optional(INT)))  # nil ends a Lua list


# --- the translation of HumanEval ----------------------------------------------------------


def test_translation_report_counts_every_problem():
    report = translation_report()
    assert set(REQUIRED) <= set(report)
    for key, entry in report.items():
        assert entry["kept"] + len(entry["dropped"]) == 164, key
        assert set(entry["dropped"]) == set(entry["reasons"])
        # The three problems whose tests use random inputs or the prompt's helpers.
        assert {"HumanEval/32", "HumanEval/38", "HumanEval/50"} <= set(entry["dropped"])
    print({key: entry["kept"] for key, entry in report.items()})
    assert min(report[k]["kept"] for k in REQUIRED if k != "sh") >= 155
    assert report["sh"]["kept"] >= 145
    assert report["rb"]["kept"] == report["pl"]["kept"] == 161


def test_every_task_is_registered_with_stops_limits_and_a_prompt():
    for key in REQUIRED:
        task = get_task(f"multiple-{key}")
        assert isinstance(task, MultipleTask) and task.language == key
        assert task.stop and task.limits.timeout == task.timeout
        first = task.problems()[0]
        assert first.task_id == "HumanEval/0" and "has_close_elements" in first.prompt
        # A correct completion never contains a stop sequence: the body is indented.
        assert task.postprocess(first, "    x\n  y" + task.lang.close + "junk") == "    x\n  y"


# --- through the sandbox -------------------------------------------------------------------


def run_all(task: MultipleTask, completions: list[tuple[str, str]]) -> list:
    problems = {p.task_id: p for p in task.problems()}
    jobs = []
    for task_id, completion in completions:
        # Every body is followed by what a model writes next; postprocess must cut it there.
        raw = completion + task.lang.close + "\nthis is not code (\n"
        text = task.postprocess(problems[task_id], raw)
        program = task.program(problems[task_id], text)
        jobs.append(Job(program.files, program.command, program.compile, b"", True))
    sandbox = Sandbox(task.limits, ro_paths=task.ro_paths)
    outcomes = dict(sandbox.run_many(jobs, workers=2))
    return [outcomes[i] for i in range(len(jobs))]


@pytest.mark.parametrize("key", REQUIRED)
def test_reference_solutions_pass_and_wrong_ones_fail(key):
    task = MultipleTask(key)
    ready, note = task.ready()
    if not ready:
        pytest.skip(f"{LANGUAGES[key].name} toolchain: {note}")
    good, bad = GOOD[key], BAD[key]
    assert len(good) >= 10 and set(good) == set(bad)
    completions = [*good.items(), *bad.items(), ("HumanEval/13", EXIT_EARLY[key])]
    start = time.monotonic()
    outcomes = run_all(task, completions)
    seconds = time.monotonic() - start
    verdicts = {
        (kind, task_id): (o.status, o.detail, o.stderr[-600:])
        for kind, (task_id, _), o in zip(
            ["good"] * len(good) + ["bad"] * len(bad) + ["exit"], completions, outcomes, strict=True
        )
    }
    wrong = {k: v for k, v in verdicts.items() if (v[0] == "passed") != (k[0] == "good")}
    assert not wrong, wrong
    for (kind, _), (status, detail, _) in verdicts.items():
        if kind != "good":
            assert status == "failed" and "compilation failed" not in detail, (kind, detail)
    print(f"{key}: {len(completions)} programs in {seconds:.1f} s")
