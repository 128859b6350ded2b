import copy
import json
import os
import subprocess
from pathlib import Path

import pytest

from codekiln.curate.structured import (
    CommitConfig,
    IssueConfig,
    cell_output,
    commit_text,
    is_bot_login,
    issue_text,
    iter_commits,
    message_reason,
    notebook_language,
    notebook_script,
    notebook_structured,
    parse_notebook,
    strip_email_reply,
)
from codekiln.errors import UserError

# Notebooks.

PY_NOTEBOOK = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "language": "python"}},
    "cells": [
        {"cell_type": "markdown", "source": ["# Load data\n", "\n", "Read the *CSV*.  \n"]},
        {
            "cell_type": "code",
            "source": ["%matplotlib inline\n", "import math\n", "print('hi', end='')\n"],
            "outputs": [
                {"output_type": "stream", "name": "stdout", "text": ["hi"]},
                {"output_type": "stream", "name": "stdout", "text": " there\n"},
            ],
        },
        {"cell_type": "raw", "source": "raw cells are dropped"},
        {
            "cell_type": "code",
            "source": "\n\nmath.pi\n\n",
            "outputs": [
                {
                    "output_type": "execute_result",
                    "data": {"text/plain": ["3.14159"], "image/png": "iVBORw0KGgo="},
                    "execution_count": 2,
                    "metadata": {},
                }
            ],
        },
        {"cell_type": "code", "source": "x = 1\n", "outputs": []},
        {
            "cell_type": "code",
            "source": "1 / 0",
            "outputs": [
                {
                    "output_type": "error",
                    "ename": "ZeroDivisionError",
                    "evalue": "division by zero",
                    "traceback": ["\x1b[0;31m----\x1b[0m", "ZeroDivisionError"],
                }
            ],
        },
        {
            "cell_type": "code",
            "source": "print('x' * 60)",
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "x" * 60 + "\n"}],
        },
        {"cell_type": "code", "source": "  \n", "outputs": []},
        {"cell_type": "markdown", "source": "Done."},
    ],
}


def test_python_notebook_as_script():
    assert notebook_script(PY_NOTEBOOK) == (
        "# # Load data\n"
        "#\n"
        "# Read the *CSV*.\n"
        "\n"
        "# %matplotlib inline\n"
        "import math\n"
        "print('hi', end='')\n"
        "\n"
        "math.pi\n"
        "\n"
        "x = 1\n"
        "\n"
        "1 / 0\n"
        "\n"
        "print('x' * 60)\n"
        "\n"
        "# Done.\n"
    )


def test_python_notebook_structured_cuts_long_output_to_its_first_chars():
    assert notebook_structured(PY_NOTEBOOK, max_output_chars=40) == (
        "<jupyter_start>"
        "<jupyter_text># Load data\n\nRead the *CSV*."
        "<jupyter_code>%matplotlib inline\nimport math\nprint('hi', end='')"
        "<jupyter_output>hi there"
        "<jupyter_code>math.pi<jupyter_output>3.14159"
        "<jupyter_code>x = 1<jupyter_output><empty_output>"
        "<jupyter_code>1 / 0<jupyter_output>ZeroDivisionError: division by zero"
        "<jupyter_code>print('x' * 60)<jupyter_output>" + "x" * 40 + "<jupyter_text>Done."
    )
    # With the default limit the whole output is kept.
    assert "<jupyter_output>" + "x" * 60 + "<jupyter_text>" in notebook_structured(PY_NOTEBOOK)
    cut_error = notebook_structured(PY_NOTEBOOK, max_output_chars=4)
    assert "<jupyter_code>1 / 0<jupyter_output>Zero<jupyter_code>" in cut_error
    assert notebook_structured(PY_NOTEBOOK, max_output_chars=0).count("<empty_output>") == 5


def test_cell_output_joins_streams_results_and_errors_and_drops_rich_data():
    cell = {
        "outputs": [
            {"output_type": "stream", "name": "stdout", "text": "\x1b[1mloading\x1b[0m\n"},
            {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/html": "<b>"}},
            {"output_type": "display_data", "data": {"text/plain": "<Figure>"}},
            {"output_type": "execute_result", "data": {"text/plain": ["2\n"]}},
            {"output_type": "stream", "name": "stderr", "text": "warning\n\n"},
            {"output_type": "error", "ename": "ValueError", "evalue": "bad"},
        ]
    }
    assert cell_output(cell) == "loading\n<Figure>\n2\nwarning\nValueError: bad"
    assert cell_output(cell, max_chars=9) == "loading\n<"
    assert cell_output({"outputs": [{"output_type": "stream", "text": " \n"}]}) == ""
    assert cell_output({}) == ""


R_NOTEBOOK = {
    "metadata": {"kernelspec": {"name": "ir", "language": "R", "display_name": "R"}},
    "cells": [
        {"cell_type": "markdown", "source": "## Plot\nA histogram of `x`."},
        {"cell_type": "code", "source": ["x <- rnorm(10)\n", "hist(x)"], "outputs": []},
    ],
}


def test_r_notebook_markdown_becomes_r_comments():
    assert notebook_language(R_NOTEBOOK) == "R"
    assert notebook_script(R_NOTEBOOK) == (
        "# ## Plot\n# A histogram of `x`.\n\nx <- rnorm(10)\nhist(x)\n"
    )
    assert notebook_structured(R_NOTEBOOK) == (
        "<jupyter_start><jupyter_text>## Plot\nA histogram of `x`."
        "<jupyter_code>x <- rnorm(10)\nhist(x)<jupyter_output><empty_output>"
    )


def test_scala_notebook_uses_slash_comments_and_leaves_percent_lines_alone():
    nb = {
        "metadata": {"language_info": {"name": "scala"}},
        "cells": [
            {"cell_type": "markdown", "source": "Totals"},
            {"cell_type": "code", "source": "val x = 10 % 3"},
        ],
    }
    assert notebook_script(nb) == "// Totals\n\nval x = 10 % 3\n"


@pytest.mark.parametrize(
    "metadata, expected",
    [
        ({"kernelspec": {"language": "python"}}, "Python"),
        ({"kernelspec": {"name": "python3"}}, "Python"),
        ({"kernelspec": {"name": "julia-1.9"}}, "Julia"),
        ({"language_info": {"name": "julia"}}, "Julia"),
        ({"kernelspec": {"language": "C++17"}}, "C++"),
        ({"kernelspec": {"language": "bash"}}, "Shell"),
        ({"kernelspec": {"language": "javascript"}, "language_info": {"name": "x"}}, "JavaScript"),
        ({"kernelspec": {"language": "Coconut"}}, "Coconut"),
        ({}, "Python"),
    ],
)
def test_notebook_language(metadata, expected):
    assert notebook_language({"metadata": metadata, "cells": []}) == expected


def test_notebook_without_code_has_no_text():
    nb = {
        "cells": [
            {"cell_type": "markdown", "source": "Only prose."},
            {"cell_type": "code", "source": ["\n", "   "], "outputs": []},
        ]
    }
    assert notebook_script(nb) is None
    assert notebook_structured(nb) is None


def test_parse_notebook_accepts_json_text():
    assert parse_notebook(json.dumps(PY_NOTEBOOK)) == PY_NOTEBOOK


@pytest.mark.parametrize(
    "raw, message",
    [
        ('{"cells": [', "not JSON"),
        ("[1, 2]", "top level is a JSON array"),
        ('"text"', "top level is a JSON string"),
        ('{"metadata": {}}', "no 'cells' list"),
        ('{"cells": "x"}', "no 'cells' list"),
        ('{"cells": [1]}', "cell 0 has no 'cell_type'"),
        ('{"cells": [{"cell_type": "code"}, {"source": ""}]}', "cell 1 has no 'cell_type'"),
    ],
)
def test_parse_notebook_rejects_what_is_not_a_notebook(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_notebook(raw)


def test_notebook_structured_rejects_a_negative_limit():
    with pytest.raises(ValueError, match="max_output_chars"):
        notebook_structured(PY_NOTEBOOK, max_output_chars=-1)


# Issues.

LONG_BODY = (
    "The parser crashes when the input is empty. @bob can you look? "
    "Mail me at alice@example.com. Steps: call parse('') and the process aborts with a "
    "stack trace instead of returning an empty tree."
)


def rest_issue() -> dict:
    return {
        "number": 7,
        "repository": "acme/parser",
        "title": "Parser crashes on empty input",
        "body": LONG_BODY,
        "user": {"login": "alice"},
        "state": "closed",
        "comments": [
            {"user": {"login": "dependabot[bot]"}, "body": "Bumps lib from 1.0 to 2.0."},
            {
                "user": {"login": "bob"},
                "author_association": "MEMBER",
                "body": "Thanks @Alice, see the `@carol` branch.\n"
                "```\n@property\ndef x(self):  # @bob\n```\nAsk @dave.",
            },
            {
                "user": {"login": "carol-dev"},
                "body": "This issue has been automatically marked as stale because ...",
            },
            {"user": {"login": "ci-helper", "type": "Bot"}, "body": "All checks passed."},
            {"user": {"login": "erin"}, "body": "/retest\n/assign @erin"},
            {
                "user": {"login": "alice"},
                "body": "Works now.\n\nOn Mon, Jan 1, 2024 bob <notifications@github.com> "
                "wrote:\n> Thanks\n—\nReply to this email directly, view it on GitHub",
            },
        ],
    }


def test_issue_text_anonymises_removes_bots_and_marks_closed():
    text, reason = issue_text(rest_issue())
    assert reason is None
    assert text == (
        "<issue_start>Title: Parser crashes on empty input\n"
        "username_0: The parser crashes when the input is empty. @username_1 can you look? "
        "Mail me at alice@example.com. Steps: call parse('') and the process aborts with a "
        "stack trace instead of returning an empty tree."
        "<issue_comment>username_1: Thanks @username_0, see the `@carol` branch.\n"
        "```\n@property\ndef x(self):  # @username_1\n```\nAsk @username_2."
        "<issue_comment>username_0: Works now."
        "<issue_closed>"
    )


def test_issue_open_has_no_closed_marker_and_mentions_number_in_reading_order():
    issue = rest_issue()
    issue["state"] = "open"
    issue["body"] = "Ping @carol first. " + LONG_BODY
    issue["comments"] = [{"user": {"login": "carol"}, "body": "On it, @alice."}]
    text, reason = issue_text(issue)
    assert reason is None
    assert not text.endswith("<issue_closed>")
    # carol was mentioned before bob, so she is username_1 when she speaks too.
    assert text.startswith(
        "<issue_start>Title: Parser crashes on empty input\n"
        "username_0: Ping @username_1 first. The parser crashes when the input is empty. "
        "@username_2 can you look?"
    )
    assert text.endswith("<issue_comment>username_1: On it, @username_0.")


def test_issue_closed_from_closed_at():
    issue = rest_issue()
    del issue["state"]
    issue["closed_at"] = "2024-01-02T00:00:00Z"
    assert issue_text(issue)[0].endswith("<issue_closed>")


def test_flat_event_shape_with_reopen():
    issue = {
        "repo": "acme/parser",
        "title": "Slow import",
        "events": [
            {"action": "opened", "author": "alice", "text": LONG_BODY},
            {"action": "created", "author": "bob", "text": "Profiled it, @alice."},
            {"action": "closed", "author": "bob"},
            {"action": "reopened", "author": "alice"},
            {"action": "labeled", "author": "bob"},
        ],
    }
    text, reason = issue_text(issue)
    assert reason is None
    assert text.endswith("<issue_comment>username_1: Profiled it, @username_0.")
    issue["events"].append({"action": "closed", "author": "bob"})
    assert issue_text(issue)[0].endswith("<issue_closed>")


def test_long_posts_are_cut_in_the_middle():
    issue = rest_issue()
    issue["comments"] = [
        {"user": {"login": "bob"}, "body": "\n".join(f"line {i}" for i in range(100))}
    ]
    text, _ = issue_text(issue)
    comment = text.split("<issue_comment>username_1: ")[1].removesuffix("<issue_closed>")
    lines = comment.split("\n")
    assert len(lines) == 81
    assert lines[59] == "line 59"
    assert lines[60] == "[Truncated]"
    assert lines[61] == "line 80"
    assert lines[-1] == "line 99"


def test_strip_email_reply_leaves_ordinary_quotes_alone():
    assert strip_email_reply("> quoted\nmy answer") == "> quoted\nmy answer"
    assert strip_email_reply("Fixed.\nSigned-off-by: A <a@example.com>") == "Fixed."


def test_is_bot_login():
    bots = ["renovate[bot]", "dependabot", "GitHub-Actions", "k8s-ci-robot", "travis-ci"]
    people = ["octocat", "alice", "bot-fan", "robotics-lab"]
    assert all(is_bot_login(login) for login in bots)
    assert not any(is_bot_login(login) for login in people)


def single_user_issue(body: str, comments: int = 0) -> dict:
    return {
        "title": "Notes",
        "body": body,
        "user": {"login": "alice"},
        "comments": [{"user": {"login": "alice"}, "body": "more"} for _ in range(comments)],
    }


@pytest.mark.parametrize(
    "issue, reason",
    [
        (["not", "a", "dict"], "issue_malformed"),
        ({"body": LONG_BODY, "user": {"login": "alice"}}, "issue_malformed"),
        ({"title": "T", "body": 3, "user": {"login": "alice"}}, "issue_malformed"),
        ({"title": "T", "body": LONG_BODY, "comments": "none"}, "issue_malformed"),
        ({"title": "T", "body": LONG_BODY, "comments": ["text"]}, "issue_malformed"),
        ({"title": "T", "events": [{"action": "closed", "author": "a"}]}, "issue_malformed"),
        ({"title": "T", "body": LONG_BODY, "user": {"login": "renovate[bot]"}}, "issue_bot"),
        ({"title": "T", "body": LONG_BODY, "user": {"login": "x", "type": "Bot"}}, "issue_bot"),
        (
            {"title": "T", "body": "Can one of the admins verify this patch?", "user": "jo"},
            "issue_bot",
        ),
        (single_user_issue("too short"), "issue_too_short"),
        (single_user_issue("word " * 1401), "issue_few_participants"),
        (single_user_issue(LONG_BODY, comments=10), "issue_few_participants"),
    ],
)
def test_issue_drop_reasons(issue, reason):
    assert issue_text(issue) == (None, reason)


def test_single_user_issue_within_limits_is_kept():
    assert issue_text(single_user_issue("word " * 1399))[1] is None
    assert issue_text(single_user_issue(LONG_BODY, comments=9))[1] is None


def test_bot_comments_do_not_count_toward_size_or_participants():
    issue = single_user_issue("short report")
    issue["comments"] = [{"user": {"login": "codecov-commenter"}, "body": "x" * 500}]
    assert issue_text(issue) == (None, "issue_too_short")


def test_optional_caps():
    issue = rest_issue()  # two comments survive cleaning; 291 characters in all posts
    assert issue_text(issue, IssueConfig(max_comments=1)) == (None, "issue_too_many_comments")
    assert issue_text(issue, IssueConfig(max_comments=2))[1] is None
    assert issue_text(issue, IssueConfig(max_chars=290)) == (None, "issue_too_long")
    assert issue_text(issue, IssueConfig(max_chars=291))[1] is None


def test_issue_text_does_not_modify_its_input():
    issue = rest_issue()
    before = copy.deepcopy(issue)
    issue_text(issue)
    assert issue == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_chars": -1}, "min_chars"),
        ({"keep_tail_lines": 80}, "keep_tail_lines"),
        ({"max_comments": -1}, "max_comments"),
        ({"bot_names": "dependabot"}, "bot_names"),
        ({"bot_bodies": ("(",)}, "not a regex"),
    ],
)
def test_issue_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IssueConfig(**kwargs)


# Commits.


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
    latest = list(iter_commits(repo, CommitConfig(max_commits=2)))
    assert {r.commit for r in latest} == {ids["rename"], ids["remove"]}
    records = {
        (r.commit, r.path): r.reason
        for r in iter_commits(repo, CommitConfig(include_added=False, max_file_bytes=200_000))
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
    with pytest.raises(ValueError, match=message):
        CommitConfig(**kwargs)
