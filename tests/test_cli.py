import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import codekiln

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "codekiln", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_help_and_version():
    out = cli("--help")
    assert out.returncode == 0
    assert "curate" in out.stdout and "run" in out.stdout
    version = cli("--version")
    assert version.returncode == 0 and codekiln.__version__ in version.stdout


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.slow
def test_bad_inputs_give_one_line_and_exit_2(tmp_path):
    assert_one_line_error(
        cli("curate", str(tmp_path / "nope"), "-o", str(tmp_path / "o")), "not found"
    )
    cut = tmp_path / "cut.parquet"
    pq.write_table(pa.table({"content": ["x = 1\n"] * 100}), cut)
    cut.write_bytes(cut.read_bytes()[:-30])
    assert_one_line_error(
        cli("curate", str(cut), "-o", str(tmp_path / "o")), "not a readable Parquet"
    )
    bare = tmp_path / "bare.parquet"
    pq.write_table(pa.table({"text": ["x"]}), bare)
    assert_one_line_error(
        cli("curate", str(bare), "-o", str(tmp_path / "o")), "no 'content' column"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(cli("curate", str(empty), "-o", str(tmp_path / "o")), "no files")
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "cat.jpg").write_bytes(b"\xff\xd8\xff\x00")
    assert_one_line_error(cli("curate", str(pictures), "-o", str(tmp_path / "o")), "no code")
    assert_one_line_error(
        cli("curate", str(ROOT / "codekiln"), "-o", str(tmp_path / "o"), "--set", "bogus=1"),
        "unknown curate setting",
    )
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_curate_then_rerun_then_force(fixture_repo, tmp_path):
    out = tmp_path / "out"
    first = cli("curate", str(fixture_repo), "-o", str(out), "-q", "-j", "2")
    assert first.returncode == 0, first.stderr
    assert "kept" in first.stdout and "report.html" in first.stdout
    again = cli("curate", str(fixture_repo), "-o", str(out), "-q")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    other = cli("curate", str(fixture_repo), "-o", str(out), "-q", "--languages", "Python")
    assert_one_line_error(other, "--force")
    forced = cli(
        "curate", str(fixture_repo), "-o", str(out), "-q", "--languages", "Python", "--force"
    )
    assert forced.returncode == 0
    report = json.loads((out / "report.json").read_text())
    assert "language_not_allowed" in report["totals"]["dropped"]


@pytest.mark.slow
def test_run_main_job_on_given_source(fixture_repo, tmp_path):
    ws = tmp_path / "ws"
    small = [
        "--set",
        "train.batch_size=1",
        "--set",
        "train.seq_len=32",
        "--set",
        "train.max_steps=3",
    ]
    small += ["--set", "train.eval_every=2", "--set", 'train.model_overrides={"n_layer": 1}']
    small += ["--set", "eval.limit=2", "--set", "eval.max_new_tokens=8"]
    result = cli("run", "-w", str(ws), str(fixture_repo), "-q", "--allow-code-execution", *small)
    assert result.returncode == 0, result.stderr
    assert (ws / "curated" / "manifest.json").exists()
    assert (ws / "tokenizer" / "tokenizer.json").exists()
    assert (ws / "tokenizer" / "manifest.json").exists()
    meta = json.loads((ws / "tokens" / "meta.json").read_text())
    assert meta["splits"]["train"]["tokens"] > 0 and (ws / "tokens" / "manifest.json").exists()
    assert (ws / "report.html").exists() and (ws / "manifest.json").exists()
    assert "workspace report" in result.stdout
    assert (ws / "train" / "model" / "config.json").exists()
    assert (ws / "train" / "metrics.jsonl").exists() and (ws / "train" / "loss.png").exists()
    for task in ("humaneval", "humaneval-infill-single"):
        results = json.loads((ws / "eval" / task / "results.json").read_text())
        assert results["problems"] == 2 and "pass@1" in results["metrics"]
    assert "pass@1" in (ws / "report.html").read_text()
    assert (ws / "eval" / "report.html").exists()
    assert "humaneval-infill-single" in (ws / "leaderboard" / "index.html").read_text()
    assert (ws / "attribution" / "manifest.json").exists()
    printed = " ".join(result.stdout.split())
    assert f"codekiln serve {ws / 'train' / 'model'} --attribution" in printed
    assert f"codekiln export {ws / 'train' / 'model'} --format gguf --quant q8_0" in printed
    again = cli("run", "-w", str(ws), str(fixture_repo), "-q", "--allow-code-execution", *small)
    assert again.returncode == 0 and "already" in again.stdout


@pytest.mark.slow
def test_tokenizer_and_pack_bad_inputs(fixture_repo, tmp_path):
    curated = tmp_path / "curated"
    assert cli("curate", str(fixture_repo), "-o", str(curated), "-q").returncode == 0
    small = cli(
        "tokenizer", "train", str(curated), "-o", str(tmp_path / "t"), "--vocab-size", "100"
    )
    assert_one_line_error(small, "too small")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(
        cli("tokenizer", "train", str(empty), "-o", str(tmp_path / "t2")), "codekiln curate"
    )
    from tokenizers import Tokenizer, models, pre_tokenizers

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    plain = Tokenizer(models.WordLevel({"<|endoftext|>": 0, "x": 1}, unk_token="<|endoftext|>"))
    plain.pre_tokenizer = pre_tokenizers.Whitespace()
    plain.save(str(foreign / "tokenizer.json"))
    # Any tokenizer folder packs; this one cannot keep text apart from its end-of-text id.
    unknown = cli("pack", str(curated), "--tokenizer", str(foreign), "-o", str(tmp_path / "p"))
    assert_one_line_error(unknown, "special-token ids")
    forced = cli(
        "pack",
        str(curated),
        "--tokenizer",
        str(foreign),
        "-o",
        str(tmp_path / "p"),
        "--set",
        "format=starcoder",
    )
    assert_one_line_error(forced, "lacks <reponame>")
    tok = tmp_path / "tok"
    trained = cli("tokenizer", "train", str(curated), "-o", str(tok), "--vocab-size", "400")
    assert trained.returncode == 0, trained.stderr
    assert_one_line_error(
        cli("pack", str(empty), "--tokenizer", str(tok), "-o", str(tmp_path / "p2")), "curate"
    )


def _readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```(?:console|bash|sh)\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("codekiln "):
                commands.append(line.split())
    return commands


@pytest.mark.slow
def test_readme_commands_name_real_commands_and_options():
    commands = _readme_commands()
    assert len(commands) >= 3
    helps: dict[str, str] = {}
    groups = {"tokenizer", "data", "attribution"}  # with subcommands: `codekiln tokenizer train`
    for words in commands:
        if words[1].startswith("-"):
            continue
        depth = 3 if words[1] in groups else 2
        sub = " ".join(words[1:depth])
        if sub not in helps:
            result = cli(*words[1:depth], "--help")
            assert result.returncode == 0, f"README names unknown command: {' '.join(words)}"
            helps[sub] = result.stdout
        for word in words[depth:]:
            if word.startswith("--"):
                flag = word.split("=")[0]
                assert flag in helps[sub], f"README uses {flag} that `codekiln {sub}` lacks"


@pytest.mark.parametrize("target", ["run", "test"])
def test_makefile_has_the_readme_targets(target):
    assert re.search(rf"^{target}:", (ROOT / "Makefile").read_text(), re.M)
    assert f"make {target}" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_unusable_output_paths_give_one_line_and_exit_2(fixture_repo, tmp_path):
    from codekiln.errors import UserError
    from codekiln.manifest import check_output_dir

    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n")
    for command in (
        ["curate", str(fixture_repo)],
        ["tokenizer", "train", str(tmp_path)],
        ["pack", str(tmp_path), "--tokenizer", str(tmp_path)],
    ):
        assert_one_line_error(cli(*command, "-o", str(blocker / "out")), "is a file")
    with pytest.raises(UserError, match="not a directory"):
        check_output_dir(blocker)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.geteuid() == 0:  # root writes anywhere: a read-only bind mount is not at hand
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(os, "access", lambda path, mode: False)
                with pytest.raises(UserError, match="no permission to write in"):
                    check_output_dir(locked / "out")
        else:
            assert_one_line_error(
                cli("curate", str(fixture_repo), "-o", str(locked / "out")), "no permission"
            )
    finally:
        locked.chmod(0o755)


def test_data_lookup_names_survivors_and_missing_licenses(tmp_path):
    from conftest import GOOD_PY

    from codekiln.curate.config import CurateConfig
    from codekiln.curate.lookup import lookup, row_detail
    from codekiln.curate.pipeline import curate
    from codekiln.curate.sources import resolve_sources

    repo = tmp_path / "octo"
    for folder in ("lib", "src"):  # the same file twice; lib/ comes first, so it survives
        (repo / folder).mkdir(parents=True)
        (repo / folder / "util.py").write_text(GOOD_PY)
    out = tmp_path / "out"
    curate(resolve_sources([str(repo)]), out, progress=False)  # no LICENSE: all dropped
    rows = lookup(out, "octo").rows
    assert {(r["reason"], row_detail(r)) for r in rows} == {("license", "no license detected")}
    out = tmp_path / "any"
    curate(
        resolve_sources([str(repo)]), out, CurateConfig.load(sets=["licenses=any"]), progress=False
    )
    rows = {r["path"]: r for r in lookup(out, "octo").rows}
    kept, dropped = rows["lib/util.py"], rows["src/util.py"]
    assert kept["status"] == "kept" and dropped["reason"] == "exact_duplicate"
    assert row_detail(dropped) == "duplicate of octo/lib/util.py"
    assert row_detail(kept) == "no license detected"
    shown = cli("data", "lookup", str(out), "octo")
    assert shown.returncode == 0, shown.stderr
    assert "duplicate of octo/lib/util.py" in shown.stdout
    assert "no license detected" in shown.stdout
