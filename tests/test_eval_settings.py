"""The generation length limits mean what the BigCode harness means: `max_length_generation`
counts prompt + generated tokens (as transformers' `max_length`, one token when the prompt is
already that long), `max_new_tokens` counts generated tokens only; results say which applied."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from test_generate import GOOD_PY, export, write_tokenizer
from typer.testing import CliRunner

from codekiln.cli import app
from codekiln.errors import UserError
from codekiln.evaluate.config import EvalConfig
from codekiln.evaluate.harness import evaluate
from codekiln.evaluate.multiple.translate import DEFAULT_VERSION
from codekiln.evaluate.tasks import TASKS, Task, get_task, parse_tasks
from codekiln.generate import SamplingParams, load_backend


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("length")
    return export(root / "model", write_tokenizer(root / "tokenizer"))


@pytest.mark.parametrize("engine", ["codekiln", "transformers"])
@pytest.mark.parametrize("extra", [6, 1])
def test_max_length_counts_the_prompt_as_transformers_does(folder, engine, extra):
    transformers = pytest.importorskip("transformers")
    backend = load_backend(folder, engine=engine)
    ids = backend.prompt_ids(GOOD_PY)
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        out = reference.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_length=len(ids) + extra,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    expected = out[0, len(ids) :].tolist()
    assert len(expected) == extra
    params = SamplingParams(
        greedy=True, max_new_tokens=512, max_length=len(ids) + extra, ignore_eos=True
    )
    [[sample]] = backend.complete([GOOD_PY], params)
    assert list(sample.token_ids) == expected


@pytest.mark.parametrize("engine", ["codekiln", "transformers"])
@pytest.mark.parametrize("extra", [0, -5])
def test_a_prompt_that_fills_max_length_gets_an_empty_completion(folder, engine, extra):
    """transformers refuses to extend such a prompt; the harness then keeps the input as the
    generation, so the completion is empty (and it is not an error)."""
    backend = load_backend(folder, engine=engine)
    n = len(backend.prompt_ids(GOOD_PY))
    params = SamplingParams(greedy=True, max_new_tokens=512, max_length=n + extra, n=2)
    [samples] = backend.complete([GOOD_PY], params)
    assert [(s.text, s.tokens, s.finish_reason) for s in samples] == [("", 0, "length")] * 2
    stream = backend.stream(GOOD_PY, SamplingParams(greedy=True, max_length=n + extra))
    assert list(stream) == [] and stream.completion.tokens == 0


def test_max_new_tokens_still_caps_under_max_length(folder):
    backend = load_backend(folder)
    n = len(backend.prompt_ids(GOOD_PY))
    params = SamplingParams(greedy=True, max_new_tokens=3, max_length=n + 20, ignore_eos=True)
    [[sample]] = backend.complete([GOOD_PY], params)
    assert sample.tokens == 3


def test_config_picks_one_rule():
    assert EvalConfig().length == ("max_length_generation", 512)
    assert EvalConfig().sampling_lengths() == {"max_new_tokens": 512, "max_length": 512}
    assert EvalConfig(max_length_generation=300).length == ("max_length_generation", 300)
    assert EvalConfig(max_new_tokens=64).sampling_lengths() == {
        "max_new_tokens": 64,
        "max_length": None,
    }
    with pytest.raises(UserError, match="not both"):
        EvalConfig(max_new_tokens=64, max_length_generation=300)
    with pytest.raises(UserError, match="positive integer"):
        EvalConfig(max_length_generation=0)
    assert EvalConfig().multiple_version == DEFAULT_VERSION
    with pytest.raises(UserError, match="multiple_version must be one of 3, 2.1.0, 2023-09"):
        EvalConfig(multiple_version="9")


def test_results_record_the_rule_and_generation_obeys_it(folder, tmp_path):
    backend = load_backend(folder)
    config = EvalConfig(tasks=["humaneval"], limit=2, greedy=True, max_length_generation=200)
    results = evaluate(backend, tmp_path / "a", config, allow_code_execution=True)["humaneval"]
    length = results["generation"]["length"]
    assert length["rule"] == "max_length_generation" and length["value"] == 200
    assert "prompt + generated" in length["counts"]
    rows = [json.loads(x) for x in (tmp_path / "a/humaneval/generations.jsonl").open()]
    prompts = {p.task_id: p for p in get_task("humaneval").problems()[:2]}
    for row in rows:
        prompt_tokens = len(backend.prompt_ids(prompts[row["task_id"]].prompt))
        assert row["tokens"] <= max(1, 200 - prompt_tokens)

    config = EvalConfig(tasks=["humaneval"], limit=1, greedy=True, max_new_tokens=5)
    results = evaluate(backend, tmp_path / "b", config, allow_code_execution=True)["humaneval"]
    assert results["generation"]["length"] == {
        "rule": "max_new_tokens",
        "value": 5,
        "counts": "generated tokens",
    }


def test_cli_flags_replace_each_other(folder, tmp_path):
    runner = CliRunner()
    args = ["eval", str(folder), "--tasks", "humaneval", "--limit", "1", "--greedy", "-q"]
    result = runner.invoke(
        app, [*args, "--max-new-tokens", "4", "--generate-only", "-o", str(tmp_path / "x")]
    )
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "x/humaneval/settings.json").read_text())
    assert settings["max_new_tokens"] == 4 and "max_length_generation" not in settings
    both = subprocess.run(
        [
            sys.executable,
            "-m",
            "codekiln",
            *args,
            "--max-length-generation",
            "300",
            "--max-new-tokens",
            "4",
            "--generate-only",
            "-o",
            str(tmp_path / "y"),
        ],
        capture_output=True,
        text=True,
    )
    assert both.returncode == 2 and both.stderr.count("\n") == 1 and "not both" in both.stderr


class _RowsTask(Task):
    """A task that reads rows from --data, to test the plumbing alone."""

    name = "rows-test"
    reads_data = True
    needs_data = True

    def __init__(self) -> None:
        self.path = None

    def load_data(self, path):
        if path.suffix != ".jsonl":
            raise UserError(f"{path}: not a .jsonl file of rows")
        self.path = path

    def info(self):
        return {"source": str(self.path)}


def test_data_goes_to_the_tasks_that_read_it(tmp_path, monkeypatch):
    monkeypatch.setitem(TASKS, _RowsTask.name, (f"{__name__}:_RowsTask",))  # gone after the test
    rows = tmp_path / "rows.jsonl"
    rows.write_text("{}\n")
    [task] = parse_tasks("rows-test", {"": rows})
    assert task.path == rows and task.info() == {"source": str(rows)}
    [task, plain] = parse_tasks("rows-test,humaneval", {"rows-test": str(rows)})
    assert task.path == rows and not plain.reads_data
    with pytest.raises(UserError, match="needs the official benchmark file"):
        parse_tasks("rows-test")
    with pytest.raises(UserError, match="not a .jsonl"):
        parse_tasks("rows-test", {"": tmp_path})
    with pytest.raises(UserError, match="does not exist"):
        parse_tasks("rows-test", {"": tmp_path / "missing.jsonl"})
    with pytest.raises(UserError, match="not in --tasks"):
        parse_tasks("humaneval", {"rows-test": rows})
    with pytest.raises(UserError, match="none of humaneval reads data"):
        parse_tasks("humaneval", {"": rows})
    with pytest.raises(UserError, match="reads no --data"):
        parse_tasks("humaneval", {"humaneval": rows})


def test_data_flags_parse_task_and_path(tmp_path):
    from codekiln.commands.evaluation import _data_flags

    odd = tmp_path / "a=b.jsonl"
    odd.write_text("")
    assert _data_flags(["multiple-lua=rows/", "x.jsonl"]) == {
        "multiple-lua": "rows/",
        "": "x.jsonl",
    }
    assert _data_flags([str(odd)]) == {"": str(odd)}
    with pytest.raises(UserError, match="given twice"):
        _data_flags(["a.jsonl", "b.jsonl"])
