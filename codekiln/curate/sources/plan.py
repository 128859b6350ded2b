"""Planning cuts sources into tasks (small, picklable units of work in a fixed order, so the
output does not depend on how many workers run them); reading a task yields one `RawInput`
per input, whatever happens to the file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from codekiln.curate.languages import language_from_path
from codekiln.curate.licenses import is_license_file, repo_license
from codekiln.curate.sources.base import Entry, RawInput, Source, SourceTask
from codekiln.curate.sources.directories import directory_entries, read_files
from codekiln.curate.sources.git import git_entries, head_commit, read_commits, read_git, run_git
from codekiln.curate.sources.tables import read_issues, read_jsonl, read_parquet
from codekiln.errors import UserError

if TYPE_CHECKING:
    from codekiln.curate.config import CurateConfig


def plan_tasks(sources: list[Source], config: CurateConfig) -> list[SourceTask]:
    """Cut every source into tasks; the cut depends on the inputs only, never on workers."""
    tasks: list[SourceTask] = []

    def add(**fields: Any) -> None:
        tasks.append(SourceTask(len(tasks), **fields))

    for source_index, source in enumerate(sources):
        if source.kind in ("directory", "git"):
            entries = git_entries(source) if source.kind == "git" else directory_entries(source)
            if not entries:
                raise UserError(f"{source.path}: no files to curate")
            if not any(e.state == "file" and language_from_path(e.path) for e in entries):
                raise UserError(
                    f"{source.path}: no code to curate ({len(entries)} files, none with "
                    "the name or extension of a known language)"
                )
            licenses = _repository_licenses(source, entries)
            for start in range(0, len(entries), config.tasks.files):
                chunk = tuple(entries[start : start + config.tasks.files])
                repos = sorted({e.repo for e in chunk})
                add(
                    source=source_index,
                    entries=chunk,
                    licenses=tuple((repo, licenses.get(repo)) for repo in repos),
                )
            if source.kind == "git" and config.commits.enabled:
                add(
                    source=source_index,
                    kind="commits",
                    licenses=((source.name, licenses.get(source.name)),),
                    fingerprint=head_commit(source),
                )
        elif source.kind == "parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(source.path).metadata
            row = group = 0
            while group < meta.num_row_groups:
                first, first_row, rows = group, row, 0
                while group < meta.num_row_groups and (rows == 0 or rows < config.tasks.rows):
                    rows += meta.row_group(group).num_rows
                    group += 1
                add(
                    source=source_index,
                    kind="rows",
                    start=first,
                    stop=group,
                    row_offset=first_row,
                    fingerprint=_file_stamp(source.path),
                )
                row = first_row + rows
        elif source.kind == "issues" and source.path.endswith(".json"):
            add(source=source_index, kind="rows", fingerprint=_file_stamp(source.path))
        else:  # JSONL: Stack-style rows or issues, cut into byte ranges
            size = os.path.getsize(source.path)
            for start in range(0, max(size, 1), config.tasks.bytes):
                add(
                    source=source_index,
                    kind="rows",
                    start=start,
                    stop=min(start + config.tasks.bytes, size),
                    fingerprint=_file_stamp(source.path),
                )
    return tasks


def _read_small(source: Source, entry: Entry, limit: int = 200_000) -> str:
    """The text of a license file, from disk or from git's objects; '' when unreadable."""
    if entry.state != "file" or entry.size > limit:
        return ""
    if source.kind == "git":
        raw = run_git(source.path, "cat-file", "blob", entry.ref).stdout
    else:
        try:
            with open(entry.ref, "rb") as handle:
                raw = handle.read(limit)
        except OSError:
            return ""
    return raw.decode("utf-8", "replace")


def _repository_licenses(source: Source, entries: list[Entry]) -> dict[str, str | None]:
    """Each repository's license from the license files at its root.

    A source split into one repository per top-level entry (the stdlib) shares the license
    files at the source's root; a license file at the top of one entry overrides them there.
    """
    if source.license is not None:
        return {e.repo: source.license for e in entries}
    root_files: dict[str, str] = {}
    own_files: dict[str, dict[str, str]] = {}
    for entry in entries:
        parts = entry.path.split("/")
        if not is_license_file(parts[-1]):
            continue
        if len(parts) == 1:
            root_files[entry.path] = _read_small(source, entry)
        elif len(parts) == 2 and source.split_top_level:
            own_files.setdefault(entry.repo, {})[entry.path] = _read_small(source, entry)
    shared = repo_license(root_files) if root_files else None
    result: dict[str, str | None] = {}
    for entry in entries:
        if entry.repo not in result:
            own = own_files.get(entry.repo)
            result[entry.repo] = (repo_license(own) if own else None) or shared
    return result


def _file_stamp(path: str) -> str:
    info = os.stat(path)
    return f"{info.st_size}:{info.st_mtime_ns}"


def read_task(task: SourceTask, source: Source, config: CurateConfig) -> Iterator[RawInput]:
    """Yield every input of a task exactly once; failures become states, never exceptions."""
    if task.kind == "commits":
        yield from read_commits(task, source, config.commits)
    elif source.kind == "directory":
        yield from read_files(task, source, config.max_file_bytes)
    elif source.kind == "git":
        yield from read_git(task, source, config.max_file_bytes)
    elif source.kind == "parquet":
        yield from read_parquet(task, source)
    elif source.kind == "issues":
        yield from read_issues(task, source, config.issues)
    else:
        yield from read_jsonl(task, source)
