"""Plain directories: a name-sorted listing that never follows symlinks, read file by file."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from codekiln.curate.sources.base import Entry, RawInput, Source, SourceTask, entry_input

_SKIP_DIRS = frozenset({".git", ".hg", ".svn"})


def _walk(root: str, rel: str, exclude: frozenset[str], out: list) -> None:
    """Depth-first, name-sorted listing that never follows symlinks."""
    here = os.path.join(root, rel) if rel else root
    try:
        with os.scandir(here) as it:
            children = sorted(it, key=lambda e: e.name)
    except OSError:
        out.append((rel, "unreadable", 0, 0))
        return
    for child in children:
        child_rel = f"{rel}/{child.name}" if rel else child.name
        try:
            info = child.stat(follow_symlinks=False)
        except OSError:
            out.append((child_rel, "unreadable", 0, 0))
            continue
        if stat.S_ISLNK(info.st_mode):
            out.append((child_rel, "symlink", 0, 0))
        elif stat.S_ISDIR(info.st_mode):
            if child.name not in _SKIP_DIRS and child.name not in exclude:
                _walk(root, child_rel, exclude, out)
        elif stat.S_ISREG(info.st_mode):
            out.append((child_rel, "file", info.st_size, info.st_mtime_ns))
        else:
            out.append((child_rel, "special", 0, 0))


def directory_entries(source: Source) -> list[Entry]:
    listing: list[tuple[str, str, int, int]] = []
    _walk(source.path, "", frozenset(source.exclude_dirs), listing)
    entries = []
    for rel, state, size, stamp in listing:
        repo = source.name
        if source.split_top_level:
            top = rel.split("/", 1)[0]
            repo = f"{source.name}/{top.split('.', 1)[0] if '/' not in rel else top}"
        ref = os.path.join(source.path, rel)
        entries.append(Entry(repo, rel, ref, size, state, stamp))
    return entries


def read_files(task: SourceTask, source: Source, max_bytes: int) -> Iterator[RawInput]:
    for entry in task.entries:
        item = entry_input(task, source, entry)
        if item.state == "file" and entry.size <= max_bytes:
            try:
                with open(entry.ref, "rb") as handle:
                    item.data = handle.read(max_bytes + 1)  # a file may grow after listing
                item.size = len(item.data)
            except OSError:
                item.state = "unreadable"
        yield item
