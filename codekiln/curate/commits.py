"""Git commits in StarCoder's format.

Everything here is a pure function of its input (plus `git`): a conversion into the text
StarCoder trained on, or a drop reason. Counting, ledgers and writing belong to the pipeline.
Drop reasons start with ``commit_`` so a report can group them.

A repository's history becomes one record per changed file of each commit
(``git-commits-cleaned``). Thresholds follow BigCode's published code
(bigcode-project/bigcode-dataset: ``preprocessing/filtering_git_commits.ipynb``); each config
field says where its default comes from.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from codekiln.errors import UserError

COMMIT_BEFORE = "<commit_before>"
COMMIT_MSG = "<commit_msg>"
COMMIT_AFTER = "<commit_after>"

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
class Commits:
    """Whether git sources' history is curated (`enabled`, the `--commits` flag), and which
    commits and changed files become training pairs."""

    enabled: bool = False  # also curate git sources' history as commit records
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
            raise UserError(
                f"max_chars_per_word must be a positive number, got {self.max_chars_per_word!r}"
            )
        for name in ("generic_messages", "bad_substrings"):
            values = getattr(self, name)
            if isinstance(values, str) or not all(isinstance(v, str) for v in values):
                raise UserError(f"{name} must be a list of strings, got {values!r}")
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


def _check_int(config: object, name: str, low: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{name} must be an integer >= {low}, got {value!r}")


def _normalise_subject(text: str) -> str:
    return " ".join(text.lower().split())


def message_reason(message: str, config: Commits | None = None) -> str | None:
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
    config = config or Commits()
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
    config: Commits,
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


def iter_commits(repo: str | Path, config: Commits | None = None) -> Iterator[CommitRecord]:
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
    config = config or Commits()
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
