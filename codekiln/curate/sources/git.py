"""Git repositories: the files of HEAD (listed with `git ls-tree`, read with one
`git cat-file --batch` per task) and, when `commits.enabled`, the history as commit records."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from codekiln.curate.sources.base import Entry, RawInput, Source, SourceTask, entry_input
from codekiln.errors import UserError

if TYPE_CHECKING:
    from codekiln.curate.commits import Commits


def run_git(repo: Path | str, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            ["git", "-c", "safe.directory=*", "-C", str(repo), *args],
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        raise UserError("git is not installed, but a source is a git repository") from None


# git reads `host:path` as ssh only when no slash comes before the first colon; a drive
# letter (`C:\src`) is a local path.
_SCP_LIKE_RE = re.compile(r"(?![A-Za-z]:[\\/])[^/:]+:")


def remote_to_repo_name(url: str) -> str | None:
    """The 'owner/name' part of a git remote URL, or None when the remote is a local path.

    A clone of a local clone has a path for its remote (`/tmp/x/owner+name/repo`, `../repo`,
    `file:///srv/repo`); the folder names it better than that path's last two parts.

    >>> remote_to_repo_name("git@github.com:bigcode-project/starcoder.git")
    'bigcode-project/starcoder'
    >>> remote_to_repo_name("../checkout") is None
    True
    """
    url = url.strip().rstrip("/")
    if url.endswith(".git"):
        url = url[:-4]
    if "://" in url:
        if url.lower().startswith("file://"):
            return None
    elif _SCP_LIKE_RE.match(url):  # user@host:owner/name
        url = url.split(":", 1)[1]
    else:
        return None
    parts = [p for p in url.replace("\\", "/").split("/") if p]
    return "/".join(parts[-2:]) if parts else None


def git_repo_name(path: Path) -> str:
    remotes = run_git(path, "remote").stdout.decode().split()
    if remotes:
        remote = "origin" if "origin" in remotes else remotes[0]
        url = run_git(path, "remote", "get-url", remote).stdout.decode().strip()
        if url:
            return remote_to_repo_name(url) or path.name
    return path.name


def git_entries(source: Source) -> list[Entry]:
    head = run_git(source.path, "rev-parse", "--verify", "-q", "HEAD^{commit}")
    if head.returncode != 0:
        raise UserError(
            f"git repository {source.path} has no commits; commit the files or "
            "copy them to a plain directory"
        )
    listing = run_git(source.path, "ls-tree", "-r", "-l", "-z", "--full-tree", "HEAD")
    if listing.returncode != 0:
        raise UserError(f"cannot list HEAD of {source.path}: {listing.stderr.decode().strip()}")
    entries = []
    for record in listing.stdout.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, _kind, blob, size = meta.decode().split()
        path = raw_path.decode("utf-8", "surrogateescape")
        if mode == "120000":
            state = "symlink"
        elif mode == "160000":
            state = "submodule"
        else:
            state = "file"
        entries.append(Entry(source.name, path, blob, int(size) if size.isdigit() else 0, state))
    return entries


def head_commit(source: Source) -> str:
    return run_git(source.path, "rev-parse", "HEAD").stdout.decode().strip()


def read_git(task: SourceTask, source: Source, max_bytes: int) -> Iterator[RawInput]:
    wanted = {e for e in task.entries if e.state == "file" and e.size <= max_bytes}
    blobs: dict[str, bytes] = {}
    if wanted:
        proc = subprocess.Popen(
            ["git", "-c", "safe.directory=*", "-C", source.path, "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for entry in task.entries:
                if entry not in wanted or entry.ref in blobs:
                    continue
                proc.stdin.write(entry.ref.encode() + b"\n")
                proc.stdin.flush()
                header = proc.stdout.readline().split()
                if len(header) == 3 and header[1] == b"blob":
                    blobs[entry.ref] = proc.stdout.read(int(header[2]))
                    proc.stdout.read(1)  # the newline after the object
        finally:
            proc.stdin.close()
            proc.wait()
    for entry in task.entries:
        item = entry_input(task, source, entry)
        if entry in wanted:
            item.data = blobs.get(entry.ref)
            if item.data is None:
                item.state = "unreadable"
        yield item


def read_commits(task: SourceTask, source: Source, config: Commits) -> Iterator[RawInput]:
    from codekiln.curate.commits import commit_text, iter_commits

    license = dict(task.licenses).get(source.name)
    for record in iter_commits(source.path, config):
        item = RawInput(
            source=source.name,
            repo=source.name,
            path=record.path,
            key=f"commit:{record.commit}",
            size=record.size,
            kind="commit",
            license=license,
            reason=record.reason,
            extra={"commit": record.commit},
        )
        if record.reason is None:
            item.text = commit_text(record.message, record.before, record.after)
        yield item
