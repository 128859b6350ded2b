"""GitHub issues in StarCoder's format.

Everything here is a pure function of its input: a conversion into the text StarCoder trained
on, or a drop reason. Counting, ledgers and writing belong to the pipeline. Drop reasons start
with ``issue_`` so a report can group them.

Issues become one conversation with anonymised user names
(``github-issues-filtered-structured``). Thresholds follow BigCode's published code
(bigcode-project/bigcode-dataset: ``preprocessing/filtering_issues.py``,
``preprocessing/utils/utils_issues.py``); each config field says where its default comes from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from codekiln.errors import UserError

ISSUE_START = "<issue_start>"
ISSUE_COMMENT = "<issue_comment>"
ISSUE_CLOSED = "<issue_closed>"

# bigcode-dataset's BOT_AUTHORS (exact names), then common GitHub apps that comment under a
# plain account name. Compared case-insensitively.
_BOT_NAMES = tuple(
    "apache-hbase autorestci claassistant cmsbuild codecov-io codecov-commenter coveralls "
    "danger-public dnfclas msftclas pydocteur sparkqa karma-pr-reporter claassistantio "
    "probot-stale dependabot dependabot-preview github-actions renovate codecov stale "
    "greenkeeper mergify netlify vercel sonarcloud allcontributors pre-commit-ci lgtm-com "
    "gitter-badger whitesource-bolt-for-github deepsource-autofix".split()
)
# bigcode-dataset's BOT_KEYWORDS (anywhere in the login) and BOT_SUFFIXES. The bare "bot"
# suffix also catches a few people (a login ending in "abbot"); StarCoder accepted that.
_BOT_KEYWORDS = ("[bot]", "botmanager", "bors-", "jenkins", "k8s-", "-test-", "travis")
_BOT_SUFFIXES = tuple(
    "-automaton -automation -benchmark -build -deployer -cloud bot -ci -linter -teamcity "
    "-test -testing -service-account".split()
)
# Boilerplate that bots post from ordinary accounts; searched case-insensitively.
_BOT_BODIES = (
    r"this (?:issue|pull request|pr) has been automatically marked as stale",
    r"\A\s*(?:#+\s*)?\[?codecov\]? report",
    r"\A\s*(?:\[!\[)?coverage status",
    r"\A\s*coverage (?:increased|decreased|remained the same) \(",
    r"it looks like this may be your first contribution to a google open source project",
    r"all committers have signed the cla|\bcla assistant\b",
    r"\A\s*can one of the admins verify this patch",
)


@dataclass
class Issues:
    """How GitHub issues are cleaned and filtered; defaults are StarCoder's.

    Sizes count the characters of all posts after cleaning (title excluded), as StarCoder's
    ``text_size`` did; "events" are posts (the opening post and the kept comments).
    """

    min_chars: int = 200  # bigcode-dataset filtering_issues.py MIN_CHARS
    single_user_max_chars: int = 7000  # MAX_CHARS: the 96th percentile, per the paper
    single_user_max_events: int = 10  # MAX_EVENTS
    max_comment_lines: int = 80  # MAX_LINES: longer posts are cut in the middle
    keep_tail_lines: int = 20  # truncate_long_comments keeps the last 20 lines
    min_comment_chars: int = 1  # codekiln: comments left empty after cleaning are dropped
    max_comments: int | None = None  # codekiln, off: StarCoder had no cap for 2+ users
    max_chars: int | None = None  # codekiln, off: StarCoder truncated posts instead
    strip_email_replies: bool = True  # strip_automated_email_text
    bot_names: tuple[str, ...] = _BOT_NAMES
    bot_keywords: tuple[str, ...] = _BOT_KEYWORDS
    bot_suffixes: tuple[str, ...] = _BOT_SUFFIXES
    bot_bodies: tuple[str, ...] = _BOT_BODIES  # regexes

    def __post_init__(self) -> None:
        for name in ("min_chars", "single_user_max_chars", "single_user_max_events"):
            _check_int(self, name, 0)
        _check_int(self, "min_comment_chars", 0)
        _check_int(self, "max_comment_lines", 1)
        _check_int(self, "keep_tail_lines", 0)
        if self.keep_tail_lines >= self.max_comment_lines:
            raise UserError(
                f"keep_tail_lines ({self.keep_tail_lines}) must be below max_comment_lines "
                f"({self.max_comment_lines}); the head of a long post would be empty"
            )
        for name in ("max_comments", "max_chars"):
            if getattr(self, name) is not None:
                _check_int(self, name, 0)
        for name in ("bot_names", "bot_keywords", "bot_suffixes", "bot_bodies"):
            values = getattr(self, name)
            if isinstance(values, str) or not all(isinstance(v, str) for v in values):
                raise UserError(f"{name} must be a list of strings, got {values!r}")
            # Logins compare case-insensitively; regexes keep their case (\A, \S).
            keep_case = name == "bot_bodies"
            setattr(self, name, tuple(v if keep_case else v.lower() for v in values))
        for pattern in self.bot_bodies:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise UserError(f"bot_bodies: {pattern!r} is not a regex ({exc})") from None


def _check_int(config: object, name: str, low: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{name} must be an integer >= {low}, got {value!r}")


@lru_cache(maxsize=8)
def _bot_body_regex(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None


def is_bot_login(login: str, config: Issues | None = None) -> bool:
    """Whether a GitHub login belongs to a bot, by StarCoder's name rules.

    >>> [is_bot_login(x) for x in ("dependabot[bot]", "k8s-ci-robot", "SparkQA", "octocat")]
    [True, True, True, False]
    """
    config = config or Issues()
    lower = login.lower()
    return (
        lower in config.bot_names
        or any(k in lower for k in config.bot_keywords)
        or lower.endswith(config.bot_suffixes)
    )


def _is_bot_body(text: str, config: Issues) -> bool:
    regex = _bot_body_regex(config.bot_bodies)
    if regex is not None and regex.search(text):
        return True
    # A comment made only of slash commands (/retest, /assign @x) talks to a bot, not to people.
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    return bool(lines) and all(re.match(r"/[a-z]", line, re.IGNORECASE) for line in lines)


_QUOTE_START = re.compile(
    r"On .*wrote:$|On .*(?:<[^>]*@[^>]*>|notifications@github\.com)|From: |>|—$|-- ?$|_{20,}$"
    r"|You are receiving this because|Reply to this email directly"
)


def strip_email_reply(text: str) -> str:
    """Drop what GitHub's email gateway adds to a reply: the quoted thread and the footer.

    Only texts that carry GitHub's markers (``notifications@github.com`` or "Reply to this
    email directly") are cut, at the first quote, "On ... wrote:" or footer line. Lines
    starting with ``Signed-off-by:`` (a name and an email) are always dropped.

    >>> strip_email_reply("Works now.\\n\\nOn Mon, alice <notifications@github.com> wrote:\\n> x")
    'Works now.'
    """
    lines = [line for line in text.split("\n") if not line.startswith("Signed-off-by:")]
    lower = text.lower()
    if "notifications@github.com" in lower or "reply to this email directly" in lower:
        for index, line in enumerate(lines):
            if _QUOTE_START.match(line.strip()):
                lines = lines[:index]
                break
    return "\n".join(lines).strip()


def _truncate_lines(text: str, max_lines: int, tail: int) -> str:
    lines = text.split("\n")
    if len(lines) <= max_lines:
        return text
    # StarCoder's marker, so the model sees one convention for cut posts.
    return "\n".join(lines[: max_lines - tail] + ["[Truncated]"] + lines[len(lines) - tail :])


# A GitHub login: letters, digits and single inner hyphens, at most 39 characters. Not after a
# word character or a dot, so e-mail addresses and package@version are left alone.
_MENTION = re.compile(
    r"(?<![\w@./+-])@([A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38})(?![\w-])"
)
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`", re.DOTALL)


class _Names:
    """Logins to username_0, username_1, ... in order of first appearance."""

    def __init__(self, authors: set[str]) -> None:
        self.authors = authors  # lower-case logins of everyone who posted, bots included
        self.names: dict[str, str] = {}

    def of(self, login: str) -> str:
        key = login.lower()
        if key not in self.names:
            self.names[key] = f"username_{len(self.names)}"
        return self.names[key]

    def anonymise(self, text: str) -> str:
        """Replace @mentions; inside code only the authors' logins (decorators stay)."""
        out = []
        pos = 0
        for code in _CODE.finditer(text):
            out.append(self._mentions(text[pos : code.start()], code=False))
            out.append(self._mentions(code.group(), code=True))
            pos = code.end()
        out.append(self._mentions(text[pos:], code=False))
        return "".join(out)

    def _mentions(self, text: str, code: bool) -> str:
        def replace(match: re.Match[str]) -> str:
            login = match.group(1)
            if code and login.lower() not in self.authors:
                return match.group()
            return "@" + self.of(login)

        return _MENTION.sub(replace, text)


@dataclass
class _Post:
    login: str
    text: str
    bot: bool  # the platform says so (user.type == "Bot")


def _post_of(record: Any) -> _Post | None:
    """A post from an issue, comment or event dict; None when its shape is wrong."""
    if not isinstance(record, dict):
        return None
    text = None
    for key in ("body", "text", "comment", "description"):
        if record.get(key) is not None:
            text = record[key]
            break
    if text is not None and not isinstance(text, str):
        return None
    user = record.get("user")
    if user is None:
        user = record.get("author")
    bot = False
    if isinstance(user, dict):
        bot = user.get("type") == "Bot"
        user = user.get("login")
    if user is None:
        user = record.get("user_login")
    if user is not None and not isinstance(user, str):
        return None
    # GitHub shows deleted accounts as "ghost".
    return _Post(user or "ghost", text or "", bot)


def _normalise_issue(issue: Any) -> tuple[str, list[_Post], bool] | None:
    """(title, posts with the opening post first, closed) or None when malformed."""
    if not isinstance(issue, dict) or not isinstance(issue.get("title"), str):
        return None
    closed = (
        issue.get("state") == "closed"
        or bool(issue.get("closed_at"))
        or (issue.get("closed") is True)
    )
    events = issue.get("events")
    if isinstance(events, list) and "body" not in issue:
        posts = []
        for event in events:
            if not isinstance(event, dict):
                return None
            action = event.get("action")
            if action in ("closed", "reopened"):
                closed = action == "closed"
            elif action in ("opened", "created", None):
                post = _post_of(event)
                if post is None:
                    return None
                posts.append(post)
        return (issue["title"], posts, closed) if posts else None
    opening = _post_of(issue)
    comments = issue.get("comments")
    # The REST API's issue object holds a comment count here; bodies come from another call.
    if comments is None or isinstance(comments, int):
        comments = []
    if opening is None or not isinstance(comments, list):
        return None
    posts = [opening]
    for comment in comments:
        post = _post_of(comment)
        if post is None:
            return None
        posts.append(post)
    return issue["title"], posts, closed


def issue_text(issue: dict, config: Issues | None = None) -> tuple[str | None, str | None]:
    """An issue as StarCoder's conversation text, or the reason to drop it.

    Accepts the REST shape (``title``, ``body``, ``user.login``, ``state``/``closed_at``,
    ``comments`` as a list of ``{"user": {"login"}, "body"}``) and BigCode's flat shape
    (``title`` and ``events``: ``{"action": "opened"|"created"|"closed"|"reopened",
    "author", "text"}``). Posts are cleaned (email replies stripped, posts over 80 lines cut in
    the middle), bot comments removed, then the filters run in this order:

    - ``issue_malformed``: not that shape.
    - ``issue_bot``: the opening post comes from a bot (login rules or boilerplate body).
    - ``issue_too_many_comments``: more comments than `max_comments` (off by default).
    - ``issue_too_short``: fewer than 200 characters in all posts.
    - ``issue_too_long``: more than `max_chars` characters (off by default).
    - ``issue_few_participants``: one participant and over 7000 characters or over 10 posts.

    The text is ``<issue_start>Title: {title}\\nusername_0: {body}``, then
    ``<issue_comment>username_k: {body}`` per comment, then ``<issue_closed>`` if closed.
    Logins become username_0, username_1, ... in order of first appearance (the opener
    first, then speakers and @mentions as they are read); @mentions inside code are only
    replaced when they name someone who posted in the issue.

    >>> text, reason = issue_text({"title": "Crash", "body": "x" * 200,
    ...                            "user": {"login": "alice"}, "state": "closed"})
    >>> text[:36], text[-14:], reason
    ('<issue_start>Title: Crash\\nusername_0', '<issue_closed>', None)
    """
    config = config or Issues()
    normalised = _normalise_issue(issue)
    if normalised is None:
        return None, "issue_malformed"
    title, posts, closed = normalised
    authors = {post.login.lower() for post in posts}
    for post in posts:
        text = post.text.replace("\r\n", "\n")
        if config.strip_email_replies:
            text = strip_email_reply(text)
        post.text = _truncate_lines(text.strip(), config.max_comment_lines, config.keep_tail_lines)
    opening, comments = posts[0], posts[1:]
    if opening.bot or is_bot_login(opening.login, config) or _is_bot_body(opening.text, config):
        return None, "issue_bot"
    comments = [
        c
        for c in comments
        if not (c.bot or is_bot_login(c.login, config) or _is_bot_body(c.text, config))
        and len(c.text) >= config.min_comment_chars
    ]
    posts = [opening, *comments]
    size = sum(len(post.text) for post in posts)
    participants = len({post.login.lower() for post in posts})
    if config.max_comments is not None and len(comments) > config.max_comments:
        return None, "issue_too_many_comments"
    if size < config.min_chars:
        return None, "issue_too_short"
    if config.max_chars is not None and size > config.max_chars:
        return None, "issue_too_long"
    if participants < 2 and (
        size > config.single_user_max_chars or len(posts) > config.single_user_max_events
    ):
        return None, "issue_few_participants"

    names = _Names(authors)
    parts = [ISSUE_START]
    speaker = names.of(opening.login)
    parts.append(f"Title: {names.anonymise(title.strip())}\n")
    parts.append(f"{speaker}: {names.anonymise(opening.text)}")
    for comment in comments:
        speaker = names.of(comment.login)
        parts.append(f"{ISSUE_COMMENT}{speaker}: {names.anonymise(comment.text)}")
    if closed:
        parts.append(ISSUE_CLOSED)
    return "".join(parts), None


# Git commits.
