"""Command-line paths to sources: directories, git repositories, tables (Parquet, JSONL, a
dump of GitHub issues), a folder of Parquet tables or a finished curate output (its shards)."""

from __future__ import annotations

import json
import os
import sysconfig
from pathlib import Path

from codekiln.curate.sources.base import Source
from codekiln.curate.sources.git import git_repo_name
from codekiln.curate.sources.tables import check_table
from codekiln.errors import UserError

TABLE_SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


def stdlib_source() -> Source:
    """The running Python's standard library: each top-level package is one repository."""
    path = sysconfig.get_path("stdlib")
    return Source(
        kind="directory",
        path=path,
        name="stdlib",
        split_top_level=True,  # the license comes from its LICENSE.txt, like any repository
        exclude_dirs=("site-packages", "dist-packages", "__pycache__"),
    )


def resolve_source(arg: str) -> Source:
    """Turn a command-line path into a Source, or raise UserError saying what is wrong."""
    path = Path(arg).expanduser()
    if not path.exists() and not path.is_symlink():
        raise UserError(f"source not found: {arg}")
    if path.is_symlink() and not path.exists():
        raise UserError(f"source is a broken symlink: {arg}")
    path = path.resolve()
    if path.is_file():
        kind = TABLE_SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise UserError(
                f"source {arg} is a file; give a directory, a git repository, a .parquet / "
                ".jsonl table, or a .json / .jsonl dump of GitHub issues"
            )
        kind = check_table(path, kind)
        return Source(kind=kind, path=str(path), name=path.name)
    if not path.is_dir():
        raise UserError(f"source {arg} is neither a file nor a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UserError(f"source directory is not readable: {arg}")
    if (path / ".git").exists():
        return Source(kind="git", path=str(path), name=git_repo_name(path))
    return Source(kind="directory", path=str(path), name=path.name)


def table_directory(path: Path) -> list[Path] | None:
    """The tables a directory stands for, or None when it is a directory of code.

    A finished curate output stands for its shards (`part-*.parquet`; the ledger and report
    are not inputs), so curated data can be curated again. A folder whose files are all
    Parquet tables (a download of The Stack: `data/python/train-00000-of-00206.parquet`, ...)
    stands for those tables.
    """
    manifest = path / "manifest.json"
    if manifest.is_file() and any(path.glob("part-*.parquet")):
        try:
            stage = json.loads(manifest.read_text(encoding="utf-8")).get("stage")
        except (OSError, ValueError, AttributeError):
            stage = None
        if stage == "curate":
            return sorted(path.glob("part-*.parquet"))
    if (path / ".git").exists():
        return None
    tables = []
    for folder, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if not name.lower().endswith(".parquet"):
                return None  # stop at the first file that is not a table
            tables.append(Path(folder, name))
    return sorted(tables) or None


def resolve_sources(args: list[str]) -> list[Source]:
    """Sources for command-line paths; a directory of tables gives one source per table,
    named '<directory>/<relative path>'."""
    sources = []
    for arg in args:
        path = Path(arg).expanduser()
        tables = table_directory(path.resolve()) if path.is_dir() else None
        if tables is None:
            sources.append(resolve_source(arg))
            continue
        root = path.resolve()
        for table in tables:
            kind = check_table(table, "parquet")
            name = f"{root.name}/{table.relative_to(root).as_posix()}"
            sources.append(Source(kind=kind, path=str(table), name=name))
    seen: dict[str, str] = {}
    for source in sources:
        if source.name in seen:
            raise UserError(
                f"two sources share the name '{source.name}' ({seen[source.name]} and "
                f"{source.path}); ids would collide, so curate them in separate runs"
            )
        seen[source.name] = source.path
    return sources
