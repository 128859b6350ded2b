import os
import subprocess
from pathlib import Path

import pytest

from codekiln.curate.commits import Commits, commit_text, iter_commits, message_reason
from codekiln.errors import UserError


@pytest.mark.parametrize(
    "message, reason",
    [
        ("Merge branch 'feature'", "commit_message_auto"),
        ("Merge pull request #12 from acme/fix", "commit_message_auto"),
        ("Bump lodash from 4.17.15 to 4.17.21", "commit_message_auto"),
        ("build(deps): bump requests from 2.0 to 2.31", "commit_message_auto"),
        ("v1.2.3", "commit_message_auto"),
        ("Release 2.0.1", "commit_message_auto"),
        ("update", "commit_message_generic"),
        ("WIP", "commit_message_generic"),
        ("Initial commit", "commit_message_generic"),
        ("Minor changes.", "commit_message_generic"),
        ("Update setup.py", "commit_message_generic"),
        ("Nightly auto commit of data", "commit_message_generic"),
        ("3f2a9c0d1e4b5a6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b fixed", "commit_message_generic"),
        ("typo", "commit_message_short"),
        ("Fix bug", "commit_message_short"),
        ("", "commit_message_short"),
        ("Handle empty input in the tokenizer\n\nupdate", None),
        ("Merge sort for linked lists", None),
        ("Fix typo", None),
    ],
)
def test_message_reason(message, reason):
    assert message_reason(message) == reason


def test_commit_text():
    assert commit_text("Fix it", "a\n", "b\n") == (
        "<commit_before>a\n<commit_msg>Fix it<commit_after>b\n"
    )


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=T", "-c", "user.email=t@example.invalid"]
        + ["-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", "-C", str(repo), *args],
        check=True,
        capture_output=True,
    )
    return out.stdout.decode().strip()


def write(repo: Path, rel: str, data: str | bytes) -> None:
    path = repo / rel
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)


PARSER_V1 = "def tokenize(text):\n    return text.split()\n"
PARSER_V2 = "def tokenize(text):\n    # split on spaces\n    return text.split()\n"
PARSER_V3 = "def tokenize(text):\n    # split on spaces\n    return text.split() if text else []\n"
PARSER_V4 = PARSER_V3.replace("# split on spaces", "#   split on spaces   ")


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A repository with one commit per case; returns it and the commit ids by name."""
    repo = tmp_path_factory.mktemp("history")
    git(repo, "init", "-q")
    ids = {}
    write(repo, "parser.py", PARSER_V1)
    write(repo, "logo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    write(repo, "build.sh", "make all\n")
    os.symlink("parser.py", repo / "link.py")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Create the parser module with a tokenize function")
    ids["create"] = git(repo, "rev-parse", "HEAD")

    write(repo, "parser.py", PARSER_V2)
    git(repo, "commit", "-q", "-am", "update")
    ids["update"] = git(repo, "rev-parse", "HEAD")

    git(repo, "checkout", "-q", "-b", "feature")
    write(repo, "helper.py", "def read_config(path):\n    return open(path).read()\n")
    git(repo, "add", "helper.py")
    git(repo, "commit", "-q", "-m", "Add a helper that reads configuration files")
    ids["feature"] = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")

    write(repo, "parser.py", PARSER_V3)
    write(repo, "logo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01")
    write(repo, "big.txt", "0123456789\n" * 15_000)
    write(repo, "legacy.py", "name = 'caf\xe9'\n".encode("latin-1"))
    write(repo, "notes.md", "# Notes\n\nThe tokenizer splits on spaces.\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Handle empty input in the tokenize function\n\nDetails.")
    ids["handle"] = git(repo, "rev-parse", "HEAD")

    git(repo, "merge", "-q", "--no-ff", "-m", "Merge branch 'feature'", "feature")
    ids["merge"] = git(repo, "rev-parse", "HEAD")

    write(repo, "parser.py", PARSER_V4)
    git(repo, "update-index", "--chmod=+x", "build.sh")
    git(repo, "add", "parser.py")
    git(repo, "commit", "-q", "-m", "Align the comment in the tokenize function")
    ids["align"] = git(repo, "rev-parse", "HEAD")

    git(repo, "rm", "-q", "notes.md")
    git(repo, "commit", "-q", "-m", "Remove the notes file from the repository")
    ids["remove"] = git(repo, "rev-parse", "HEAD")

    git(repo, "mv", "build.sh", "make_all.sh")
    git(repo, "commit", "-q", "-m", "Rename the build script after its target")
    ids["rename"] = git(repo, "rev-parse", "HEAD")
    return repo, ids


def test_iter_commits_walks_first_parent_history_with_reasons(history):
    repo, ids = history
    records = list(iter_commits(repo))
    got = [(r.commit, r.path, r.change, r.reason) for r in records]
    assert got == [
        # A rename is a deletion plus an addition.
        (ids["rename"], "build.sh", "D", "commit_empty"),
        (ids["rename"], "make_all.sh", "A", None),
        (ids["remove"], "notes.md", "D", "commit_empty"),
        (ids["align"], "build.sh", "M", "commit_no_change"),
        (ids["align"], "parser.py", "M", "commit_whitespace_only"),
        (ids["handle"], "big.txt", "A", "commit_too_large"),
        (ids["handle"], "legacy.py", "A", "commit_encoding"),
        (ids["handle"], "logo.png", "M", "commit_binary"),
        (ids["handle"], "notes.md", "A", None),
        (ids["handle"], "parser.py", "M", None),
        (ids["update"], "parser.py", "M", "commit_message_generic"),
        (ids["create"], "build.sh", "A", None),
        (ids["create"], "link.py", "A", "commit_special_file"),
        (ids["create"], "logo.png", "A", "commit_binary"),
        (ids["create"], "parser.py", "A", None),
    ]
    # The merge and the commit it brought in are not on the first-parent line.
    assert not {ids["merge"], ids["feature"]} & {r.commit for r in records}


def test_commit_records_carry_content_message_and_size(history):
    repo, ids = history
    records = {(r.commit, r.path): r for r in iter_commits(repo)}
    modified = records[ids["handle"], "parser.py"]
    assert modified.message == "Handle empty input in the tokenize function\n\nDetails."
    assert (modified.before, modified.after) == (PARSER_V2, PARSER_V3)
    assert modified.size == len(PARSER_V2) + len(PARSER_V3)
    assert commit_text(modified.message, modified.before, modified.after).startswith(
        "<commit_before>def tokenize(text):\n    # split on spaces\n"
    )
    added = records[ids["create"], "parser.py"]
    assert (added.before, added.after) == ("", PARSER_V1)
    too_large = records[ids["handle"], "big.txt"]
    assert too_large.size == 165_000
    assert too_large.after == ""  # content over the limit is not kept
    deleted = records[ids["remove"], "notes.md"]
    assert deleted.before.startswith("# Notes") and deleted.after == ""
    # A generic message still yields the file, with its content, for the ledger.
    generic = records[ids["update"], "parser.py"]
    assert (generic.before, generic.after) == (PARSER_V1, PARSER_V2)


def test_iter_commits_config(history):
    repo, ids = history
    latest = list(iter_commits(repo, Commits(max_commits=2)))
    assert {r.commit for r in latest} == {ids["rename"], ids["remove"]}
    records = {
        (r.commit, r.path): r.reason
        for r in iter_commits(repo, Commits(include_added=False, max_file_bytes=200_000))
    }
    assert records[ids["handle"], "big.txt"] == "commit_added"
    assert records[ids["handle"], "parser.py"] is None


def test_iter_commits_uses_a_fixed_number_of_processes(history, monkeypatch):
    repo, _ = history
    calls = []
    real_popen = subprocess.Popen

    def counting_popen(args, *rest, **kwargs):
        calls.append(args)
        return real_popen(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", counting_popen)
    records = list(iter_commits(repo))
    blobs = sum((r.before != "") + (r.after != "") for r in records)
    assert blobs >= 10
    # rev-parse (through subprocess.run, which uses Popen), log and one cat-file --batch.
    assert len(calls) == 3
    assert sum("cat-file" in args for args in calls) == 1


def test_iter_commits_can_stop_early(history):
    repo, ids = history
    records = iter_commits(repo)
    assert next(records).commit == ids["rename"]
    records.close()


def test_iter_commits_errors(tmp_path):
    with pytest.raises(UserError, match="not a directory"):
        list(iter_commits(tmp_path / "missing"))
    with pytest.raises(UserError, match="not a git repository"):
        list(iter_commits(tmp_path))
    git(tmp_path, "init", "-q")
    with pytest.raises(UserError, match="with commits"):
        list(iter_commits(tmp_path))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_commits": 0}, "max_commits"),
        ({"max_file_bytes": 0}, "max_file_bytes"),
        ({"min_message_words": -1}, "min_message_words"),
        ({"max_chars_per_word": 0}, "max_chars_per_word"),
        ({"generic_messages": "update"}, "generic_messages"),
    ],
)
def test_commit_config_validation(kwargs, message):
    with pytest.raises(UserError, match=message):
        Commits(**kwargs)
