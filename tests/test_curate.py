import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import (
    EXPECTED,
    GOOD_PY,
    MIT_LICENSE,
    by_path,
    git,
    read_ledger,
    read_records,
    write_fixture_repo,
)

from codekiln.curate import pipeline
from codekiln.curate.config import CurateConfig
from codekiln.curate.examine import REASONS, Examiner
from codekiln.curate.pipeline import curate
from codekiln.curate.sources import Source, remote_to_repo_name, resolve_source, resolve_sources
from codekiln.errors import UserError

EXPECTED["links/target.py"] = None


def small_tasks(**extra) -> CurateConfig:
    return CurateConfig.load(sets=["tasks.files=4", *[f"{k}={v}" for k, v in extra.items()]])


def any_license(**extra) -> CurateConfig:
    return small_tasks(licenses="any", **extra)


def test_every_drop_reason_on_a_directory(fixture_repo, tmp_path):
    out = tmp_path / "out"
    result = curate(resolve_sources([str(fixture_repo)]), out, small_tasks(), progress=False)
    ledger = read_ledger(out)
    rows = by_path(ledger)
    assert len(ledger) == len(rows) == len(EXPECTED)
    assert {path: row["reason"] for path, row in rows.items()} == EXPECTED
    for row in ledger:
        assert (row["status"] == "kept") == (row["reason"] is None)
    dup = rows["src/copy_b.py"]
    assert dup["duplicate_of"] == rows["src/copy_a.py"]["id"]  # same rank: repository path order
    records = by_path(read_records(out))
    assert set(records) == {p for p, reason in EXPECTED.items() if reason is None}
    assert records["src/good.py"]["content"] == GOOD_PY
    assert records["src/good.py"]["lang"] == "Python"
    assert records["src/util.h"]["lang"] == "C"
    assert records["Dockerfile"]["lang"] == "Dockerfile"
    assert records["src/good.py"]["repo"] == "fixture"
    assert records["src/good.py"]["license"] == "MIT"
    assert records["src/good.py"]["kind"] == "file"
    assert records["src/good.py"]["max_line_length"] == max(map(len, GOOD_PY.splitlines()))
    assert result.report["totals"]["files_in"] == len(EXPECTED)


def test_report_reconciles_with_the_ledger(fixture_repo, tmp_path):
    out = tmp_path / "out"
    curate(resolve_sources([str(fixture_repo)]), out, small_tasks(), progress=False)
    ledger = read_ledger(out)
    report = json.loads((out / "report.json").read_text())
    totals = report["totals"]
    assert totals["files_in"] == len(ledger)
    assert totals["bytes_in"] == sum(r["size"] for r in ledger)
    kept = [r for r in ledger if r["status"] == "kept"]
    assert totals["files_kept"] == len(kept)
    # Bytes kept are the bytes written: the shards' sizes, not the inputs' (PII redaction).
    assert totals["bytes_kept"] == sum(r["size"] for r in read_records(out))
    kept_in = sum(r["size"] for r in kept)
    assert totals["bytes_in"] == kept_in + sum(v["bytes"] for v in totals["dropped"].values())
    reasons = Counter(r["reason"] for r in ledger if r["reason"])
    assert {k: v["files"] for k, v in totals["dropped"].items()} == dict(reasons)
    assert set(reasons) <= set(REASONS)
    html = (out / "report.html").read_text()
    repositories = report["repositories"]
    assert repositories["count"] == len({r["repo"] for r in ledger})
    for field in ("files_in", "bytes_in", "files_kept", "bytes_kept"):
        assert sum(b[field] for b in report["languages"].values()) == totals[field]
        assert sum(b[field] for b in report["sources"].values()) == totals[field]
        in_repositories = [*repositories["top"], repositories["other"]]
        assert sum(b[field] for b in in_repositories) == totals[field]
    languages = re.findall(
        r"<tr><td>([^<]+)</td><td>[\d,]+</td><td>[^<]+</td><td>([\d,]+)<",
        html.split('id="languages"')[1].split("</table>")[0],
    )
    kept_order = [int(files.replace(",", "")) for _, files in languages]
    assert len(languages) == len(report["languages"])
    assert kept_order == sorted(kept_order, reverse=True)
    assert report["funnel"][-1]["files"] == totals["files_kept"]
    assert "<svg" in html and "exact_duplicate" in html
    assert 'id="repositories"' in html and 'id="sources"' in html
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "curate" and manifest["sources"][0]["sha256"]
    assert manifest["config"]["max_line_length"] == 1000


@pytest.mark.slow
def test_same_bytes_for_any_worker_count(fixture_repo, tmp_path):
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        curate(
            resolve_sources([str(fixture_repo)]),
            out,
            small_tasks(),
            workers=workers,
            progress=False,
        )
        outs.append(out)
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*.parquet"))
    assert files == sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*.parquet"))
    for rel in files:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel
    assert (outs[0] / "report.json").read_bytes() == (outs[1] / "report.json").read_bytes()


def test_shards_are_bounded_and_ordered(tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(30):
        (root / f"m{i:02d}.py").write_text(
            f"def f{i}():\n    return {i}\n" + "# padding line\n" * 20
        )
    out = tmp_path / "out"
    curate(resolve_sources([str(root)]), out, any_license(shard_bytes=1000), progress=False)
    shards = sorted(out.glob("part-*.parquet"))
    assert len(shards) > 3
    for shard in shards[:-1]:
        assert (
            sum(len(c.encode()) for c in pq.read_table(shard).column("content").to_pylist())
            <= 1000 + 400
        )
    assert [r["path"] for r in read_records(out)] == [f"m{i:02d}.py" for i in range(30)]


def test_language_allow_list(fixture_repo, tmp_path):
    out = tmp_path / "out"
    config = CurateConfig.load(sets=["languages=Python"])
    curate(resolve_sources([str(fixture_repo)]), out, config, progress=False)
    rows = by_path(read_ledger(out))
    assert rows["README.md"]["reason"] == "language_not_allowed"
    assert rows["src/good.py"]["reason"] is None
    assert {r["lang"] for r in read_records(out)} == {"Python"}


def test_rerun_is_a_no_op_other_settings_refuse_force_redoes(fixture_repo, tmp_path):
    out = tmp_path / "out"
    sources = resolve_sources([str(fixture_repo)])
    curate(sources, out, small_tasks(), progress=False)
    stamp = (out / "manifest.json").stat().st_mtime_ns
    again = curate(sources, out, small_tasks(), progress=False)
    assert again.skipped and (out / "manifest.json").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="--force"):
        curate(sources, out, small_tasks(max_line_length=50), progress=False)
    redone = curate(sources, out, small_tasks(max_line_length=50), force=True, progress=False)
    assert not redone.skipped
    assert by_path(read_ledger(out))["src/good.py"]["reason"] is None
    assert by_path(read_ledger(out))["src/wide_lines.py"]["reason"] == "max_line_length"


def test_another_stages_folder_is_refused_even_with_force(fixture_repo, tmp_path):
    from codekiln.manifest import write_manifest

    packed = tmp_path / "tokens"
    packed.mkdir()
    (packed / "train-00000.bin").write_bytes(b"tokens")
    write_manifest(packed, "pack", request="abc")
    before = sorted(p.name for p in packed.iterdir())
    sources = resolve_sources([str(fixture_repo)])
    for force in (False, True):
        with pytest.raises(UserError, match="holds the output of `codekiln pack`"):
            curate(sources, packed, small_tasks(), force=force, progress=False)
    assert sorted(p.name for p in packed.iterdir()) == before
    assert json.loads((packed / "manifest.json").read_text())["stage"] == "pack"


def test_interrupted_run_resumes_from_finished_tasks(fixture_repo, tmp_path, monkeypatch):
    out = tmp_path / "out"
    sources = resolve_sources([str(fixture_repo)])
    real = pipeline._process_task
    calls = []

    def flaky(task, *args):
        calls.append(task.index)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(task, *args)

    monkeypatch.setattr(pipeline, "_process_task", flaky)
    with pytest.raises(RuntimeError):
        curate(sources, out, small_tasks(), progress=False)
    assert not (out / "manifest.json").exists()
    done = sorted((out / ".work").glob("ledger-*.parquet"))
    assert len(done) == 2
    stamps = [p.stat().st_mtime_ns for p in done]
    monkeypatch.setattr(pipeline, "_process_task", real)
    seen = []
    original = Examiner.examine
    monkeypatch.setattr(
        Examiner,
        "examine",
        lambda self, item: seen.append(item.path) or original(self, item),
    )
    curate(sources, out, small_tasks(), progress=False)
    assert len(seen) == len(EXPECTED) - 8  # the two finished tasks (4 inputs each) are not redone
    assert stamps  # finished task files were reused, then cleaned up with the work folder
    assert not (out / ".work").exists()
    clean = tmp_path / "clean"
    curate(sources, clean, small_tasks(), progress=False)
    for shard in clean.rglob("*.parquet"):
        assert shard.read_bytes() == (out / shard.relative_to(clean)).read_bytes()


def test_file_vanishing_after_planning_is_unreadable(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "a.py").write_text(GOOD_PY)
    (root / "b.py").write_text("def b():\n    return 2\n")
    (root / "LICENSE").write_text("SPDX-License-Identifier: MIT\n")
    source = resolve_source(str(root))
    original = pipeline.plan_tasks

    def plan_then_delete(*args, **kwargs):
        tasks = original(*args, **kwargs)
        (root / "b.py").unlink()
        return tasks

    pipeline.plan_tasks = plan_then_delete
    try:
        curate([source], tmp_path / "out", progress=False)
    finally:
        pipeline.plan_tasks = original
    rows = by_path(read_ledger(tmp_path / "out"))
    assert rows["b.py"]["reason"] == "unreadable"
    assert rows["a.py"]["reason"] is None


def test_git_repository_uses_head_and_remote_name(tmp_path):
    repo = tmp_path / "checkout"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "app.py").write_text(GOOD_PY)
    (repo / ".gitignore").write_text("ignored.py\nbuild/\n")
    (repo / "ignored.py").write_text("x = 1\n")
    (repo / "build").mkdir()
    (repo / "build/out.py").write_text("y = 2\n")
    (repo / "lib").mkdir()
    (repo / "lib/core.go").write_text("package lib\n\nfunc Add(a, b int) int { return a + b }\n")
    (repo / "link.py").symlink_to("app.py")
    (repo / "LICENSE").write_text(MIT_LICENSE)
    git(repo, "add", "app.py", ".gitignore", "lib/core.go", "link.py", "LICENSE")
    sub_sha = "1234567890abcdef1234567890abcdef12345678"
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{sub_sha},vendored_sub")
    git(repo, "commit", "-q", "-m", "init")
    (repo / "app.py").write_text("changed after the commit\n")  # HEAD's version is curated
    (repo / "untracked.py").write_text("z = 3\n")
    git(repo, "remote", "add", "origin", "https://github.com/octo/fixture-repo.git")
    source = resolve_source(str(repo))
    assert (source.kind, source.name) == ("git", "octo/fixture-repo")
    out = tmp_path / "out"
    curate([source], out, progress=False)
    rows = by_path(read_ledger(out))
    assert set(rows) == {
        "app.py",
        ".gitignore",
        "lib/core.go",
        "link.py",
        "vendored_sub",
        "LICENSE",
    }
    assert rows["link.py"]["reason"] == "symlink"
    assert rows["vendored_sub"]["reason"] == "submodule"
    assert rows["lib/core.go"]["lang"] == "Go"
    records = by_path(read_records(out))
    assert records["app.py"]["content"] == GOOD_PY
    assert records["app.py"]["repo"] == "octo/fixture-repo"
    assert records["app.py"]["license"] == "MIT"  # read from git's objects at HEAD


def test_git_repository_without_commits_is_a_user_error(tmp_path):
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text(GOOD_PY)
    with pytest.raises(UserError, match="no commits"):
        curate([resolve_source(str(repo))], tmp_path / "out", progress=False)


@pytest.mark.parametrize(
    "url, name",
    [
        ("https://github.com/bigcode-project/starcoder.git", "bigcode-project/starcoder"),
        ("git@github.com:owner/name.git", "owner/name"),
        ("ssh://git@host:2222/group/sub/proj", "sub/proj"),
        ("https://gitlab.com/a/b/", "a/b"),
    ],
)
def test_remote_names(url, name):
    assert remote_to_repo_name(url) == name


STACK_ROWS = [
    {
        "content": GOOD_PY,
        "max_stars_repo_name": "octo/alpha",
        "max_stars_repo_path": "pkg/mod.py",
        "max_stars_count": 12,
        "lang": "Python",
        "max_stars_repo_licenses": ["MIT"],
        "hexsha": "aa",
    },
    {
        "content": GOOD_PY,  # the same content in a GPL repo with more stars: MIT survives
        "max_stars_repo_name": "octo/beta",
        "max_stars_repo_path": "copy.py",
        "max_stars_count": 500,
        "lang": "Python",
        "max_stars_repo_licenses": ["GPL-3.0-only"],
        "hexsha": "bb",
    },
    {
        "content": 'fn main() {\n    println!("hello");\n}\n',
        "max_stars_repo_name": "octo/gamma",
        "max_stars_repo_path": "src/main.rs",
        "max_stars_count": None,
        "lang": "Rust",
        "max_stars_repo_licenses": ["Apache-2.0", "MIT"],
        "hexsha": "cc",
    },
    {
        "content": "binary\x00junk",
        "max_stars_repo_name": "octo/delta",
        "max_stars_repo_path": "blob.py",
        "max_stars_count": 1,
        "lang": "Python",
        "max_stars_repo_licenses": [],
        "hexsha": "dd",
    },
]


def test_stack_style_parquet_round_trip(tmp_path):
    table_path = tmp_path / "stack.parquet"
    pq.write_table(pa.Table.from_pylist(STACK_ROWS), table_path, row_group_size=2)
    out = tmp_path / "out"
    curate(
        resolve_sources([str(table_path)]),
        out,
        CurateConfig.load(sets=["tasks.rows=1", "licenses=any"]),
        progress=False,
    )
    ledger = read_ledger(out)
    assert len(ledger) == len(STACK_ROWS)
    rows = {r["repo"]: r for r in ledger}
    assert rows["octo/beta"]["reason"] == "exact_duplicate"
    assert rows["octo/beta"]["duplicate_of"] == rows["octo/alpha"]["id"]
    assert rows["octo/delta"]["reason"] == "binary"
    records = {r["repo"]: r for r in read_records(out)}
    assert set(records) == {"octo/alpha", "octo/gamma"}
    assert records["octo/alpha"]["stars"] == 12 and records["octo/alpha"]["license"] == "MIT"
    assert records["octo/gamma"]["license"] == "Apache-2.0 AND MIT"
    assert records["octo/gamma"]["stars"] is None and records["octo/gamma"]["lang"] == "Rust"
    assert records["octo/alpha"]["path"] == "pkg/mod.py"
    # codekiln's own shards read back in unchanged: the output schema is a valid source.
    again = tmp_path / "again"
    curate(resolve_sources([str(out / "part-00000.parquet")]), again, progress=False)
    assert [(r["repo"], r["path"], r["content"]) for r in read_records(again)] == [
        (r["repo"], r["path"], r["content"]) for r in read_records(out)
    ]


def test_jsonl_every_line_once_across_tasks(tmp_path):
    path = tmp_path / "dump.jsonl"
    lines = []
    for i in range(40):
        lines.append(
            json.dumps(
                {
                    "content": f"def f{i}():\n    return {i}\n",
                    "repo": f"r/{i % 3}",
                    "path": f"f{i}.py",
                }
            )
        )
        if i == 7:
            lines.append("{not json")
        if i == 9:
            lines.append(json.dumps(["a", "list"]))
        if i == 11:
            lines.append(json.dumps({"content": 42, "path": "x.py"}))
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    curate(
        resolve_sources([str(path)]),
        out,
        CurateConfig.load(sets=["tasks.bytes=97", "licenses=any"]),
        progress=False,
    )
    ledger = read_ledger(out)
    assert len(ledger) == 43
    assert Counter(r["reason"] for r in ledger) == {None: 40, "malformed": 3}
    assert sorted(r["path"] for r in read_records(out)) == sorted(f"f{i}.py" for i in range(40))


def test_bad_sources_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        resolve_source(str(tmp_path / "missing"))
    truncated = tmp_path / "cut.parquet"
    pq.write_table(pa.Table.from_pylist(STACK_ROWS), truncated)
    truncated.write_bytes(truncated.read_bytes()[:-40])
    with pytest.raises(UserError, match="not a readable Parquet"):
        resolve_source(str(truncated))
    schemaless = tmp_path / "noschema.parquet"
    pq.write_table(pa.table({"text": ["x"]}), schemaless)
    with pytest.raises(UserError, match="no 'content' column"):
        resolve_source(str(schemaless))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no files"):
        curate([resolve_source(str(empty))], tmp_path / "o1", progress=False)
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.png").write_bytes(b"\x89PNG\x00")
    (media / "b.txt").write_text("hello\n")
    with pytest.raises(UserError, match="no code"):
        curate([resolve_source(str(media))], tmp_path / "o2", progress=False)
    (tmp_path / "notes.csv").write_text("a,b\n")
    with pytest.raises(UserError, match="is a file"):
        resolve_source(str(tmp_path / "notes.csv"))
    twin = tmp_path / "x" / "fixture"
    twin.mkdir(parents=True)
    write_fixture_repo(tmp_path / "fixture")
    with pytest.raises(UserError, match="share the name"):
        resolve_sources([str(tmp_path / "fixture"), str(twin)])


def test_stdlib_source_excludes_site_packages_and_caches():
    from codekiln.curate.sources import stdlib_source

    source = stdlib_source()
    assert isinstance(source, Source) and source.split_top_level
    assert Path(source.path, "json", "__init__.py").exists()
    assert "site-packages" in source.exclude_dirs and "__pycache__" in source.exclude_dirs


def test_split_top_level_repositories(tmp_path):
    root = tmp_path / "lib"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg/__init__.py").write_text(GOOD_PY)
    (root / "single.py").write_text("def single():\n    return 1\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__/x.pyc").write_bytes(b"\0\0")
    source = Source(
        "directory", str(root), "lib", split_top_level=True, exclude_dirs=("__pycache__",)
    )
    out = tmp_path / "out"
    curate([source], out, progress=False)
    rows = by_path(read_ledger(out))
    assert set(rows) == {"pkg/__init__.py", "single.py"}
    assert rows["pkg/__init__.py"]["repo"] == "lib/pkg"
    assert rows["single.py"]["repo"] == "lib/single"
    shutil.rmtree(out)


NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Squares\n"]},
        {
            "cell_type": "code",
            "metadata": {},
            "execution_count": 1,
            "outputs": [],
            "source": ["def square(x):\n", "    return x * x\n"],
        },
    ],
    "metadata": {"kernelspec": {"language": "python", "name": "python3"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.mark.parametrize("notebook_format", ["script", "structured"])
def test_curated_output_curates_again_with_every_record_kind(tmp_path, notebook_format):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "LICENSE").write_text(MIT_LICENSE)
    (repo / "good.py").write_text(GOOD_PY)
    (repo / "squares.ipynb").write_text(json.dumps(NOTEBOOK))
    config = CurateConfig.load(sets=[f"notebook_format={notebook_format}"])
    first = tmp_path / "first"
    curate(resolve_sources([str(repo)]), first, config, progress=False)
    kinds = {r["path"]: r["kind"] for r in read_records(first)}
    assert kinds == {"good.py": "file", "squares.ipynb": "notebook"}
    # The output folder as a source stands for its shards: the ledger and report are no inputs.
    sources = resolve_sources([str(first)])
    assert [s.name for s in sources] == ["first/part-00000.parquet"]
    second = tmp_path / "second"
    curate(sources, second, config, progress=False)
    assert Counter(r["status"] for r in read_ledger(second)) == {"kept": 2}
    fields = ("repo", "path", "kind", "lang", "license", "content", "size")
    assert [[r[f] for f in fields] for r in read_records(second)] == [
        [r[f] for f in fields] for r in read_records(first)
    ]


def test_table_records_keep_their_kind(tmp_path):
    from codekiln.curate.sources import table_input

    source = Source("parquet", "x.parquet", "x.parquet")
    for kind in ("file", "notebook", "issue", "commit"):
        item = table_input(source, {"content": "text", "path": "a.ipynb", "kind": kind}, "row:0")
        assert item.kind == kind
    # Issue and commit records curate again unchanged (no file filters, no re-conversion).
    records = [
        {"content": "<issue_start>Title: crash\nusername_0: it fails", "repo": "o/r",
         "path": "issues/7", "kind": "issue", "license": "MIT"},
        {"content": "<commit_before>x = 1\n<commit_msg>Fix x<commit_after>x = 2\n",
         "repo": "o/r", "path": "x.py", "kind": "commit", "license": "MIT", "lang": "Python"},
    ]  # fmt: skip
    table = tmp_path / "records.parquet"
    pq.write_table(pa.Table.from_pylist(records), table)
    curate(resolve_sources([str(table)]), tmp_path / "out", progress=False)
    kept = [(r["kind"], r["content"]) for r in read_records(tmp_path / "out")]
    assert kept == [(r["kind"], r["content"]) for r in records]
    # A Stack row has no kind: a raw .ipynb in it is a file, converted when examined.
    assert table_input(source, {"content": "{}", "path": "a.ipynb"}, "row:0").kind == "file"
    assert table_input(source, {"content": "x", "kind": "blob"}, "row:0").kind == "file"


STACK_V2_ROWS = [
    {
        "blob_id": "b1",
        "directory_id": "d1",
        "path": "/pkg/mod.py",
        "content_id": "c1",
        "detected_licenses": ["MIT", "Apache-2.0"],
        "license_type": "permissive",
        "repo_name": "octo/alpha",
        "star_events_count": 12,
        "language": "Python",
        "src_encoding": "UTF-8",
        "length_bytes": len(GOOD_PY),
        "is_vendor": False,
        "is_generated": False,
        "extension": "py",
        "content": GOOD_PY,
    },
    {
        "blob_id": "b2",
        "directory_id": "d2",
        "path": "/third_party/lib.py",
        "content_id": "c2",
        "detected_licenses": [],
        "license_type": "no_license",
        "repo_name": "octo/beta",
        "star_events_count": 0,
        "language": "Python",
        "src_encoding": "UTF-8",
        "length_bytes": 30,
        "is_vendor": True,
        "is_generated": False,
        "extension": "py",
        "content": "def vendored():\n    return 1\n",
    },
    {
        "blob_id": "b3",
        "directory_id": "d3",
        "path": "/gen/api.go",
        "content_id": "c3",
        "detected_licenses": [],
        "license_type": "no_license",
        "repo_name": "octo/gamma",
        "star_events_count": 3,
        "language": "Go",
        "src_encoding": "UTF-8",
        "length_bytes": 40,
        "is_vendor": False,
        "is_generated": True,
        "extension": "go",
        "content": "package api\n\nfunc Call() int {\n\treturn 1\n}\n",
    },
]


def test_stack_v2_parquet(tmp_path):
    table_path = tmp_path / "v2.parquet"
    pq.write_table(pa.Table.from_pylist(STACK_V2_ROWS), table_path)
    out = tmp_path / "out"
    curate(resolve_sources([str(table_path)]), out, CurateConfig.load(), progress=False)
    rows = {r["repo"]: r for r in read_ledger(out)}
    assert rows["octo/beta"]["reason"] == "vendored"
    assert rows["octo/gamma"]["reason"] == "autogenerated"
    (record,) = read_records(out)
    assert (record["repo"], record["path"], record["lang"]) == (
        "octo/alpha",
        "pkg/mod.py",
        "Python",
    )
    assert (record["license"], record["stars"]) == ("MIT AND Apache-2.0", 12)
    # The full v2 dataset names blobs without their contents: one line says what to do.
    ids_only = tmp_path / "ids.parquet"
    pq.write_table(pa.Table.from_pylist(STACK_V2_ROWS).drop(["content"]), ids_only)
    with pytest.raises(UserError, match="Stack v2.*blob_id.*download the contents"):
        resolve_source(str(ids_only))


def test_a_folder_of_stack_tables_is_one_source_per_table(tmp_path):
    data = tmp_path / "the-stack" / "data"
    (data / "python").mkdir(parents=True)
    (data / "rust").mkdir()
    pq.write_table(pa.Table.from_pylist(STACK_ROWS[:2]), data / "python" / "train-0.parquet")
    pq.write_table(pa.Table.from_pylist(STACK_ROWS[2:]), data / "rust" / "train-0.parquet")
    sources = resolve_sources([str(tmp_path / "the-stack")])
    assert [(s.kind, s.name) for s in sources] == [
        ("parquet", "the-stack/data/python/train-0.parquet"),
        ("parquet", "the-stack/data/rust/train-0.parquet"),
    ]


def test_report_counts_written_bytes_and_bounds_the_repository_table(tmp_path, monkeypatch):
    from codekiln.curate import report as report_module
    from codekiln.curate.report import build_report

    repo = tmp_path / "lib"
    for i, name in enumerate(["alpha", "beta", "gamma", "delta"]):
        (repo / name).mkdir(parents=True)
        for j in range(i + 1):  # delta is the largest repository, alpha the smallest
            (repo / name / f"m{j}.py").write_text(f"def f{j}():\n    return {j} + {i}\n")
    (repo / "alpha" / "squares.ipynb").write_text(json.dumps(NOTEBOOK))
    (repo / "beta" / "blob.py").write_bytes(b"\0binary")
    source = Source("directory", str(repo), "lib", license="MIT", split_top_level=True)
    out = tmp_path / "out"
    report = curate([source], out, CurateConfig.load(), progress=False).report
    records = read_records(out)
    (notebook,) = [r for r in records if r["kind"] == "notebook"]
    ledger = by_path(read_ledger(out))
    assert notebook["size"] < ledger["alpha/squares.ipynb"]["size"]
    assert report["kinds"]["notebook"]["bytes_kept"] == notebook["size"]
    assert report["totals"]["bytes_kept"] == sum(r["size"] for r in records)
    names = [b["repo"] for b in report["repositories"]["top"]]
    bytes_in = Counter()
    for row in ledger.values():
        bytes_in[row["repo"]] += row["size"]
    assert names == sorted(bytes_in, key=lambda repo: (-bytes_in[repo], repo))
    beta = next(b for b in report["repositories"]["top"] if b["repo"] == "lib/beta")
    assert beta["dropped"] == {"binary": 1} and beta["files_kept"] == 2
    # Bounded: the 2 largest and one row for the rest; the same sums with runs spilled to disk.
    # Fan-in 2: spilled runs are merged level by level before the last merge.
    for spill_rows, fan_in in ((10**6, 16), (1, 16), (1, 2)):
        monkeypatch.setattr(report_module, "_FAN_IN", fan_in)
        small = build_report(out / "ledger", top_repositories=2, spill_rows=spill_rows)
        table = small["repositories"]
        assert [b["repo"] for b in table["top"]] == names[:2]
        assert table["other"]["repositories"] == 2 and table["count"] == 4
        for field in ("files_in", "bytes_in", "files_kept", "bytes_kept"):
            in_table = [*table["top"], table["other"]]
            assert sum(b[field] for b in in_table) == report["totals"][field]
        assert table["other"]["dropped"] == {"binary": 1}
    assert not list(out.glob(".report-*"))


def test_dedup_decisions_look_up_ids_in_sorted_arrays():
    from codekiln.curate.neardup import NearDupResult

    exact = pa.table({"id": ["b" * 32, "é1"], "survivor": ["a" * 32, "z"]})
    near = NearDupResult(
        duplicates={"b" * 32: ("a", "c"), "d": ("a", "c"), "x" * 40: ("a", "c")},
        cluster_sizes={4: 1},
        candidate_pairs=3,
    )
    decisions = pipeline._Decisions(exact, near)
    assert len(decisions) == 4  # an exact duplicate stays exact though near-duplicate too
    found = decisions.find(["b" * 32, "d", "c", "é1", None, "x" * 40, "x" * 39, "b"])
    got = [decisions.get(int(p)) if p >= 0 else None for p in found]
    assert got == [
        ("exact_duplicate", None, "a" * 32),
        ("near_duplicate", "a", "c"),
        None,
        ("exact_duplicate", None, "z"),
        None,
        ("near_duplicate", "a", "c"),
        None,
        None,
    ]
    empty = pipeline._Decisions(exact.slice(0, 0), None)
    assert len(empty) == 0 and empty.find(["a"]).tolist() == [-1]
