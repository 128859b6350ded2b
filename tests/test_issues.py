import copy

import pytest

from codekiln.curate.issues import Issues, is_bot_login, issue_text, strip_email_reply
from codekiln.errors import UserError

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
    assert issue_text(issue, Issues(max_comments=1)) == (None, "issue_too_many_comments")
    assert issue_text(issue, Issues(max_comments=2))[1] is None
    assert issue_text(issue, Issues(max_chars=290)) == (None, "issue_too_long")
    assert issue_text(issue, Issues(max_chars=291))[1] is None


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
    with pytest.raises(UserError, match=message):
        Issues(**kwargs)
