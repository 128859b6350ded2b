"""What planning and reading pass around: a source, the entries of its listing, the tasks
cut from them, and one `RawInput` per input read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Source:
    """Where inputs come from. `name` is the repository name (or the table's file name)."""

    kind: str  # "directory" | "git" | "parquet" | "jsonl" | "issues"
    path: str
    name: str
    license: str | None = None
    split_top_level: bool = False  # each top-level entry is a repository of its own
    exclude_dirs: tuple[str, ...] = ()  # directory names that are not inputs at all

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "name": self.name, "license": self.license}


class Entry(NamedTuple):
    """One file of a directory or git source, as listed at planning time."""

    repo: str
    path: str  # relative, '/'-separated
    ref: str  # absolute path (directory) or blob id (git)
    size: int
    state: str  # "file" | "symlink" | "special" | "submodule" | "unreadable"
    stamp: int = 0  # mtime in ns for files on disk: part of the plan's fingerprint


@dataclass(frozen=True)
class SourceTask:
    """A unit of parallel work: a run of entries, a row-group range, a byte range, or the
    commit history of a git repository (kind "commits")."""

    index: int
    source: int
    kind: str = "files"  # "files" | "rows" | "commits"
    entries: tuple[Entry, ...] = ()
    licenses: tuple[tuple[str, str | None], ...] = ()  # repository -> detected license
    start: int = 0  # Parquet: first row group; JSONL: first byte
    stop: int = 0  # Parquet: row group after the last; JSONL: byte after the range
    row_offset: int = 0  # Parquet: index of the first row of `start`
    fingerprint: str = ""


@dataclass
class RawInput:
    """One input as read: bytes or text, or a state that says why there is nothing to read."""

    source: str
    repo: str
    path: str
    key: str  # makes the id unique within the source (row number for tables)
    size: int
    state: str = "file"  # see Entry.state; "malformed" for a table row that is not a record
    data: bytes | None = None
    text: str | None = None
    kind: str = "file"  # "file" | "notebook" | "issue" | "commit"
    reason: str | None = None  # set by a source that already knows the input is dropped
    license: str | None = None
    stars: int | None = None
    lang: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def entry_input(task: SourceTask, source: Source, entry: Entry) -> RawInput:
    licenses = dict(task.licenses)
    return RawInput(
        source=source.name,
        repo=entry.repo,
        path=entry.path,
        key="",
        size=entry.size,
        state=entry.state,
        license=licenses.get(entry.repo, source.license),
    )
