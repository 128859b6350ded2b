"""Structured sources in StarCoder's formats: Jupyter notebooks, GitHub issues, git commits.

Everything here is a pure function of its input (plus `git` for commits): a conversion into
the text StarCoder trained on, or a drop reason. Counting, ledgers and writing belong to the
pipeline. Drop reasons start with ``issue_`` or ``commit_`` so a report can group them.

Notebooks (nbformat 4 JSON) become two texts, as in StarCoderData's ``jupyter-scripts`` and
``jupyter-structured`` subsets. Issues become one conversation with anonymised user names
(``github-issues-filtered-structured``). A repository's history becomes one record per changed
file of each commit (``git-commits-cleaned``). Thresholds follow BigCode's published code
(bigcode-project/bigcode-dataset: ``preprocessing/filtering_issues.py``,
``preprocessing/utils/utils_issues.py``, ``preprocessing/filtering_git_commits.ipynb``); each
config field says where its default comes from.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from codekiln.curate.languages import LANGUAGES
from codekiln.errors import UserError

JUPYTER_START = "<jupyter_start>"
JUPYTER_TEXT = "<jupyter_text>"
JUPYTER_CODE = "<jupyter_code>"
JUPYTER_OUTPUT = "<jupyter_output>"
EMPTY_OUTPUT = "<empty_output>"
ISSUE_START = "<issue_start>"
ISSUE_COMMENT = "<issue_comment>"
ISSUE_CLOSED = "<issue_closed>"
COMMIT_BEFORE = "<commit_before>"
COMMIT_MSG = "<commit_msg>"
COMMIT_AFTER = "<commit_after>"


# Jupyter notebooks.

# Kernel language names (lower case, version digits removed) that differ from Linguist's.
_KERNEL_LANGUAGES = {
    "python": "Python",
    "ipython": "Python",
    "pyspark": "Python",
    "sage": "Python",
    "ir": "R",
    "javascript": "JavaScript",
    "node": "JavaScript",
    "nodejs": "JavaScript",
    "typescript": "TypeScript",
    "c++": "C++",
    "cpp": "C++",
    "csharp": "C#",
    ".net-csharp": "C#",
    "fsharp": "F#",
    ".net-fsharp": "F#",
    "golang": "Go",
    "bash": "Shell",
    "sh": "Shell",
    "zsh": "Shell",
    "matlab": "MATLAB",
    "octave": "MATLAB",
    "wolfram language": "Mathematica",
    "spylon-kernel": "Scala",
}
_LINGUIST_BY_LOWER = {name.lower(): name for name in LANGUAGES}
_VERSION_SUFFIX = re.compile(r"[\d._-]+$")

# How a markdown cell becomes a comment: a line prefix, or a (start, end) pair around the cell.
_LINE_COMMENTS = {
    **dict.fromkeys(
        "C C++ C# F# Java JavaScript TypeScript Scala Kotlin Go Rust Swift Groovy Dart PHP "
        "Stata".split(),
        "//",
    ),
    **dict.fromkeys(["Haskell", "Lua", "SQL", "Elm"], "--"),
    **dict.fromkeys(["MATLAB", "Erlang", "TeX", "Prolog"], "%"),
    **dict.fromkeys(["Clojure", "Common Lisp", "Scheme", "Racket", "Emacs Lisp"], ";"),
}
_BLOCK_COMMENTS = {"OCaml": ("(*", "*)"), "Mathematica": ("(*", "*)"), "SAS": ("/*", "*/")}

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def parse_notebook(raw: str) -> dict:
    """Parse an .ipynb file's text; ValueError with a short reason when it is not a notebook.

    >>> len(parse_notebook('{"cells": [], "metadata": {}}')["cells"])
    0
    >>> parse_notebook('{"worksheets": []}')
    Traceback (most recent call last):
    ...
    ValueError: not a notebook: no 'cells' list (nbformat 3 and older are not supported)
    """
    try:
        nb = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(nb, dict):
        kind = {list: "array", str: "string", bool: "boolean"}.get(type(nb), "number or null")
        raise ValueError(f"not a notebook: the top level is a JSON {kind}, not an object")
    if not isinstance(nb.get("cells"), list):
        raise ValueError("not a notebook: no 'cells' list (nbformat 3 and older are not supported)")
    for index, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or not isinstance(cell.get("cell_type"), str):
            raise ValueError(f"not a notebook: cell {index} has no 'cell_type'")
    return nb


def notebook_language(nb: dict) -> str:
    """The notebook's language as a Linguist name, from its kernel metadata; "Python" if unknown.

    ``metadata.kernelspec.language`` wins over ``metadata.language_info.name``, which wins
    over ``metadata.kernelspec.name`` (``python3``, ``ir``, ``julia-1.9``). A name Linguist does
    not know is returned as written.

    >>> notebook_language({"metadata": {"kernelspec": {"name": "ir", "language": "R"}}})
    'R'
    >>> notebook_language({"metadata": {"language_info": {"name": "julia"}}})
    'Julia'
    >>> notebook_language({"cells": []})
    'Python'
    """
    meta = nb.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    kernel = meta.get("kernelspec") if isinstance(meta.get("kernelspec"), dict) else {}
    info = meta.get("language_info") if isinstance(meta.get("language_info"), dict) else {}
    for value in (kernel.get("language"), info.get("name"), kernel.get("name")):
        if isinstance(value, str) and value.strip():
            return _linguist_name(value.strip())
    return "Python"


def _linguist_name(name: str) -> str:
    lower = name.lower()
    for key in (lower, _VERSION_SUFFIX.sub("", lower)):
        if key in _KERNEL_LANGUAGES:
            return _KERNEL_LANGUAGES[key]
        if key in _LINGUIST_BY_LOWER:
            return _LINGUIST_BY_LOWER[key]
    return name


def _joined(value: Any) -> str:
    """nbformat stores multi-line strings either whole or as a list of lines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(part for part in value if isinstance(part, str))
    return ""


def _trim(text: str) -> str:
    """Unix newlines, no leading or trailing blank lines, no trailing spaces on the last line."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines).rstrip()


def _cells(nb: dict) -> Iterator[tuple[str, str, dict]]:
    """(cell_type, trimmed source, cell) for every cell with a non-blank source."""
    cells = nb.get("cells")
    for cell in cells if isinstance(cells, list) else ():
        if isinstance(cell, dict):
            source = _trim(_joined(cell.get("source")))
            if source:
                yield str(cell.get("cell_type")), source, cell


def _as_comment(text: str, language: str) -> str:
    if language in _BLOCK_COMMENTS:
        start, end = _BLOCK_COMMENTS[language]
        # An end marker inside the text would close the comment early.
        return f"{start} {text.replace(end, end[0] + ' ' + end[1:])} {end}"
    mark = _LINE_COMMENTS.get(language, "#")
    return "\n".join(
        f"{mark} {line}".rstrip() if line.strip() else mark for line in text.split("\n")
    )


def _python_script_line(line: str) -> str:
    # IPython magic lines (%matplotlib, %%time) and shell escapes (!pip) are not Python:
    # comment them out, as Jupytext does, so the script parses.
    return "# " + line if line.lstrip().startswith(("%", "!")) else line


def notebook_script(nb: dict) -> str | None:
    """The notebook as one script: code cells as they are, markdown cells as comments.

    Cells keep their order and are separated by one blank line; the script ends with a
    newline. Sources are trimmed of leading and trailing blank lines. Markdown lines get the
    language's comment marker (``#`` for Python, R, Julia and unknown languages, ``//`` for
    Scala, JavaScript, ...; empty lines get the bare marker). In Python notebooks, magic
    (``%``) and shell (``!``) lines are commented out. Raw cells are dropped. None when no
    code cell has any code.

    >>> nb = {"cells": [{"cell_type": "markdown", "source": ["# Sum\\n", "Adds."]},
    ...                 {"cell_type": "code", "source": "print(1 + 1)\\n"}]}
    >>> notebook_script(nb)
    '# # Sum\\n# Adds.\\n\\nprint(1 + 1)\\n'
    """
    language = notebook_language(nb)
    blocks = []
    has_code = False
    for kind, source, _cell in _cells(nb):
        if kind == "code":
            has_code = True
            if language == "Python":
                source = "\n".join(map(_python_script_line, source.split("\n")))
            blocks.append(source)
        elif kind == "markdown":
            blocks.append(_as_comment(source, language))
    return "\n\n".join(blocks) + "\n" if has_code else None


def cell_output(cell: dict, max_chars: int = 1000) -> str:
    """A code cell's text output, cut to its first `max_chars` characters; "" when there is none.

    Consecutive stream outputs are concatenated as written; each other output contributes its
    ``text/plain`` (execute_result, display_data) or ``ename: evalue`` (error, without the
    traceback). Pieces are joined by one newline after dropping their trailing newlines;
    images, HTML and ANSI colour codes are dropped; trailing whitespace is removed before
    the cut.

    >>> cell_output({"outputs": [{"output_type": "stream", "text": ["a\\n", "b\\n"]},
    ...                          {"output_type": "execute_result", "data": {"text/plain": "2"}}]})
    'a\\nb\\n2'
    """
    outputs = cell.get("outputs")
    pieces: list[str] = []
    last_stream = False
    for output in outputs if isinstance(outputs, list) else ():
        if not isinstance(output, dict):
            continue
        kind = output.get("output_type")
        if kind == "stream":
            text = _joined(output.get("text"))
            if last_stream:
                pieces[-1] += text
            else:
                pieces.append(text)
            last_stream = True
            continue
        last_stream = False
        if kind in ("execute_result", "display_data"):
            data = output.get("data")
            text = _joined(data.get("text/plain")) if isinstance(data, dict) else ""
            if text:
                pieces.append(text)
        elif kind == "error":
            pieces.append(f"{output.get('ename', 'Error')}: {output.get('evalue', '')}")
    text = "\n".join(piece.rstrip("\n") for piece in pieces)
    text = _ANSI_ESCAPE.sub("", text.replace("\r\n", "\n")).rstrip()
    return text[:max_chars]


def notebook_structured(nb: dict, max_output_chars: int = 1000) -> str | None:
    """The notebook in StarCoder's structured form, cell by cell.

    ``<jupyter_start>``, then for each cell in order: ``<jupyter_text>`` + markdown source, or
    ``<jupyter_code>`` + code source + ``<jupyter_output>`` + its text output (see
    `cell_output`, cut to the first `max_output_chars` characters) or ``<empty_output>``. No
    newlines are added between parts; sources are trimmed as in `notebook_script`; raw and
    blank cells are dropped. None when no code cell has any code.

    >>> notebook_structured({"cells": [{"cell_type": "markdown", "source": "Sum"},
    ...                                {"cell_type": "code", "source": "1 + 1", "outputs": []}]})
    '<jupyter_start><jupyter_text>Sum<jupyter_code>1 + 1<jupyter_output><empty_output>'
    """
    if max_output_chars < 0:
        raise ValueError(f"max_output_chars must be >= 0, got {max_output_chars}")
    parts = [JUPYTER_START]
    has_code = False
    for kind, source, cell in _cells(nb):
        if kind == "code":
            has_code = True
            output = cell_output(cell, max_output_chars) or EMPTY_OUTPUT
            parts.append(f"{JUPYTER_CODE}{source}{JUPYTER_OUTPUT}{output}")
        elif kind == "markdown":
            parts.append(f"{JUPYTER_TEXT}{source}")
    return "".join(parts) if has_code else None


# GitHub issues.

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
class IssueConfig:
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
            raise ValueError(
                f"keep_tail_lines ({self.keep_tail_lines}) must be below max_comment_lines "
                f"({self.max_comment_lines}); the head of a long post would be empty"
            )
        for name in ("max_comments", "max_chars"):
            if getattr(self, name) is not None:
                _check_int(self, name, 0)
        for name in ("bot_names", "bot_keywords", "bot_suffixes", "bot_bodies"):
            values = getattr(self, name)
            if isinstance(values, str) or not all(isinstance(v, str) for v in values):
                raise ValueError(f"{name} must be a list of strings, got {values!r}")
            # Logins compare case-insensitively; regexes keep their case (\A, \S).
            keep_case = name == "bot_bodies"
            setattr(self, name, tuple(v if keep_case else v.lower() for v in values))
        for pattern in self.bot_bodies:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"bot_bodies: {pattern!r} is not a regex ({exc})") from None


def _check_int(config: object, name: str, low: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


@lru_cache(maxsize=8)
def _bot_body_regex(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None


def is_bot_login(login: str, config: IssueConfig | None = None) -> bool:
    """Whether a GitHub login belongs to a bot, by StarCoder's name rules.

    >>> [is_bot_login(x) for x in ("dependabot[bot]", "k8s-ci-robot", "SparkQA", "octocat")]
    [True, True, True, False]
    """
    config = config or IssueConfig()
    lower = login.lower()
    return (
        lower in config.bot_names
        or any(k in lower for k in config.bot_keywords)
        or lower.endswith(config.bot_suffixes)
    )


def _is_bot_body(text: str, config: IssueConfig) -> bool:
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


def issue_text(issue: dict, config: IssueConfig | None = None) -> tuple[str | None, str | None]:
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
    config = config or IssueConfig()
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

# bigcode-dataset filtering_git_commits.ipynb's BAD_MESSAGE, then codekiln's additions: one-word
# and stock messages that say nothing about the change. Compared after lower-casing, collapsing
# whitespace and dropping a final "." or "!".
_GENERIC_MESSAGES = tuple(
    "readme|update|dummy|updated|debug|test|update readme|update readme.md|"
    "updated readme.md|updated readme|wip|fix|fixes|fixed|bugfix|init|initial commit|"
    "first commit|minor changes|minor change|minor fixes|minor fix|minor update|"
    "minor updates|small fix|small fixes|changes|some changes|more changes|update files|"
    "add files via upload|commit|save|cleanup|clean up|refactor|refactoring|tweaks|misc|"
    "temp|tmp|test commit|testing".split("|")
)
# filtering_git_commits.ipynb's BAD_SUB_MESSAGE: anywhere in the lower-cased subject.
_BAD_SUBSTRINGS = ("auto commit", "update contributing", "<?xml")

# Messages written by tools: merges, dependency bots, version bumps (StarCoder's regex
# drops subjects that start with a version number such as "v1.1.0").
_AUTO_MESSAGE = re.compile(
    r"merge (?:branch|branches|pull request|remote-tracking branch|tag|commit"
    r"|[0-9a-f]{7,40} into)\b"
    r"|(?:\w+\(deps(?:-dev)?\): )?bump \S+ from \S+ to \S+"
    r"|(?:release |version |bump version to |bump to )?v?\d+\.\d+\.\d+"
)
# GitHub's web editor default messages: "Update setup.py", "Create README.md", "Delete x/y".
_WEB_EDITOR_MESSAGE = re.compile(r"(?:update|create|delete|add|rename) \S*[./]\S*$")


@dataclass
class CommitConfig:
    """Which commits and changed files become training pairs."""

    max_commits: int | None = None  # newest first-parent, non-merge commits to read
    max_file_bytes: int = 100_000  # either side; StarCoder dropped old contents >= 100k chars
    min_message_chars: int = 8  # codekiln: StarCoder kept half of the subjects under 5 words
    min_message_words: int = 2  # codekiln, as above; drops "fix", "wip", "typo"
    max_chars_per_word: float = 20.0  # StarCoder: a longer average is a hash or a path
    include_added: bool = True  # added files pair with an empty "before"
    generic_messages: tuple[str, ...] = _GENERIC_MESSAGES
    bad_substrings: tuple[str, ...] = _BAD_SUBSTRINGS

    def __post_init__(self) -> None:
        if self.max_commits is not None:
            _check_int(self, "max_commits", 1)
        _check_int(self, "max_file_bytes", 1)
        _check_int(self, "min_message_chars", 0)
        _check_int(self, "min_message_words", 0)
        if not isinstance(self.max_chars_per_word, int | float) or self.max_chars_per_word <= 0:
            raise ValueError(
                f"max_chars_per_word must be a positive number, got {self.max_chars_per_word!r}"
            )
        for name in ("generic_messages", "bad_substrings"):
            values = getattr(self, name)
            if isinstance(values, str) or not all(isinstance(v, str) for v in values):
                raise ValueError(f"{name} must be a list of strings, got {values!r}")
            setattr(self, name, tuple(_normalise_subject(v) for v in values))


@dataclass
class CommitRecord:
    """One changed file of one commit. `size` is the bytes of both blobs, read or not."""

    commit: str
    path: str
    message: str
    before: str
    after: str
    reason: str | None
    size: int
    change: str = "M"  # git's status letter: A added, M modified, D deleted, T type changed


def _normalise_subject(text: str) -> str:
    return " ".join(text.lower().split())


def message_reason(message: str, config: CommitConfig | None = None) -> str | None:
    """Why a commit message is not worth training on, or None. Only the subject line counts.

    - ``commit_message_auto``: written by a tool: "Merge branch/pull request ...", "Bump x
      from a to b", a subject that starts with a version ("v1.2.3", "Release 1.2.3").
    - ``commit_message_generic``: a stock message ("update", "wip", "initial commit", "minor
      changes", GitHub's "Update setup.py"), one of StarCoder's bad substrings ("auto
      commit"), or more than 20 characters per word (hashes, paths).
    - ``commit_message_short``: under 8 characters or under 2 words.

    >>> message_reason("Bump lodash from 4.17.15 to 4.17.21")
    'commit_message_auto'
    >>> message_reason("Minor changes.")
    'commit_message_generic'
    >>> message_reason("Handle empty input in the tokenizer") is None
    True
    """
    config = config or CommitConfig()
    subject = message.strip().split("\n", 1)[0].strip()
    lower = _normalise_subject(subject)
    if _AUTO_MESSAGE.match(lower):
        return "commit_message_auto"
    if (
        lower.rstrip(".!") in config.generic_messages
        or any(bad in lower for bad in config.bad_substrings)
        or _WEB_EDITOR_MESSAGE.match(lower)
    ):
        return "commit_message_generic"
    words = lower.split()
    if (
        not words
        or len(subject) < config.min_message_chars
        or len(words) < config.min_message_words
    ):
        return "commit_message_short"
    if len(subject) / len(words) > config.max_chars_per_word:
        return "commit_message_generic"
    return None


def commit_text(message: str, before: str, after: str) -> str:
    """A commit pair in StarCoder's format.

    >>> commit_text("Use a set", "x = []", "x = set()")
    '<commit_before>x = []<commit_msg>Use a set<commit_after>x = set()'
    """
    return f"{COMMIT_BEFORE}{before}{COMMIT_MSG}{message}{COMMIT_AFTER}{after}"


_GIT = ("git", "-c", "safe.directory=*", "-c", "log.showSignature=false")


def _git_command(repo: Path, *args: str) -> list[str]:
    return [*_GIT, "-C", str(repo), *args]


def _popen(repo: Path, *args: str, stdin: bool = False) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            _git_command(repo, *args),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if stdin else subprocess.PIPE,
        )
    except FileNotFoundError:
        raise UserError("git is not installed, but commits were asked for") from None


class _BlobReader:
    """Blob contents from one long-running `git cat-file --batch`, started on first use."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.proc: subprocess.Popen | None = None

    def read(self, blob: str, limit: int) -> tuple[int, bytes | None] | None:
        """(size, content or None when over `limit`); None when git does not have the blob."""
        if self.proc is None:
            self.proc = _popen(self.repo, "cat-file", "--batch", stdin=True)
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(blob.encode() + b"\n")
        stdin.flush()
        header = stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            return None
        size = int(header[2])
        if size > limit:
            left = size + 1  # the content and its trailing newline, read and thrown away
            while left > 0:
                chunk = stdout.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
            return size, None
        data = stdout.read(size)
        stdout.read(1)
        return size, data

    def close(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.kill()
            self.proc.wait()


def _nul_tokens(stream: IO[bytes]) -> Iterator[bytes]:
    buffer = b""
    while chunk := stream.read(1 << 16):
        *tokens, buffer = (buffer + chunk).split(b"\0")
        yield from tokens
    if buffer:
        yield buffer


def _parse_log(tokens: Iterator[bytes]) -> Iterator[tuple[str, str, list[tuple[str, ...]]]]:
    """(commit, message, changes) from `git log -z --raw --format=%H%x00%B`.

    The stream is: commit id, message, then for each changed file a ":modes blobs status"
    token (the first preceded by a newline) and a path token; the next commit id follows.
    """
    token = next(tokens, None)
    while token is not None:
        commit = token.decode()
        message = next(tokens, b"").decode("utf-8", "replace").strip()
        changes = []
        token = next(tokens, None)
        while token is not None and token.lstrip(b"\n").startswith(b":"):
            old_mode, new_mode, old_blob, new_blob, status = token.lstrip(b"\n")[1:].split()
            path = next(tokens, b"").decode("utf-8", "surrogateescape")
            changes.append(
                (old_mode.decode(), new_mode.decode(), old_blob.decode(), new_blob.decode())
                + (status.decode()[:1], path)
            )
            token = next(tokens, None)
        yield commit, message, changes


def _regular(mode: str) -> bool:
    return mode.startswith("100") or set(mode) == {"0"}


def _content_reason(before: str, after: str) -> str | None:
    if not after.strip():
        return "commit_empty"  # deleted or emptied; StarCoder dropped empty new contents
    if before == after:
        return "commit_no_change"  # a mode change only
    if "".join(before.split()) == "".join(after.split()):
        return "commit_whitespace_only"
    return None


def _record(
    commit: str,
    message: str,
    change: tuple[str, ...],
    message_reason_: str | None,
    blobs: _BlobReader,
    config: CommitConfig,
) -> CommitRecord:
    old_mode, new_mode, old_blob, new_blob, status, path = change
    record = CommitRecord(commit, path, message, "", "", None, 0, status)
    if not (_regular(old_mode) and _regular(new_mode)):
        record.reason = "commit_special_file"  # symlink, submodule or a type change
        return record
    if status == "A" and not config.include_added:
        record.reason = "commit_added"
        return record
    sides: list[bytes | None] = []
    for blob in (old_blob, new_blob):
        if set(blob) == {"0"}:  # the side that does not exist (added or deleted file)
            sides.append(b"")
            continue
        got = blobs.read(blob, config.max_file_bytes)
        if got is None:
            record.reason = "commit_unreadable"
            return record
        record.size += got[0]
        sides.append(got[1])
    before_raw, after_raw = sides
    if before_raw is None or after_raw is None:
        record.reason = "commit_too_large"
        return record
    if b"\0" in before_raw or b"\0" in after_raw:
        record.reason = "commit_binary"
        return record
    try:
        before, after = before_raw.decode("utf-8"), after_raw.decode("utf-8")
    except UnicodeDecodeError:
        record.reason = "commit_encoding"
        return record
    record.before, record.after = before, after
    record.reason = message_reason_ or _content_reason(before, after)
    return record


def iter_commits(repo: str | Path, config: CommitConfig | None = None) -> Iterator[CommitRecord]:
    """One record per changed file of each commit on HEAD's first-parent line, newest first.

    Merge commits are not inputs and yield nothing (their first-parent diff is the merged
    branch, whose own commits are not on this line either). A root commit's files count as
    added. Renames are a deletion plus an addition. Added files pair an empty `before` with
    their content; deleted files an empty `after` (dropped as ``commit_empty``). Three git
    processes per call, whatever the history: ``rev-parse``, ``log`` and one
    ``cat-file --batch`` for every blob. Reasons, first match wins:

    ``commit_special_file`` (symlink, submodule, type change), ``commit_added`` (only with
    include_added=False), ``commit_unreadable``, ``commit_too_large`` (a side over
    max_file_bytes; its content is not kept), ``commit_binary`` (a NUL byte),
    ``commit_encoding`` (not UTF-8), the message reasons of `message_reason`,
    ``commit_empty``, ``commit_no_change``, ``commit_whitespace_only``.
    """
    config = config or CommitConfig()
    path = Path(repo)
    if not path.is_dir():
        raise UserError(f"not a directory: {repo}")
    try:
        head = subprocess.run(
            _git_command(path, "rev-parse", "--verify", "-q", "HEAD^{commit}"),
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        raise UserError("git is not installed, but commits were asked for") from None
    if head.returncode != 0:
        raise UserError(f"{repo} is not a git repository with commits on HEAD")
    args = ["log", "--first-parent", "--no-merges", "--root", "--raw", "--no-renames", "-z"]
    args += ["--no-abbrev", "--no-color", "--encoding=UTF-8", "--format=%H%x00%B"]
    if config.max_commits is not None:
        args.append(f"--max-count={config.max_commits}")
    log = _popen(path, *args, head.stdout.decode().strip(), "--")
    blobs = _BlobReader(path)
    assert log.stdout is not None and log.stderr is not None
    try:
        for commit, message, changes in _parse_log(_nul_tokens(log.stdout)):
            reason = message_reason(message, config)
            for change in changes:
                yield _record(commit, message, change, reason, blobs, config)
        if log.wait() != 0:
            error = log.stderr.read().decode(errors="replace").strip()
            raise UserError(f"git log failed in {repo}: {error}")
    finally:
        blobs.close()
        if log.poll() is None:
            log.kill()
        log.wait()
        log.stdout.close()
        log.stderr.close()
