"""Sources of code and the tasks that read them.

A source is a directory (one repository), a git repository (the files of HEAD), or a
Stack-style table (Parquet or JSONL). Planning turns sources into tasks: small, picklable
units of work with a fixed order, so the output does not depend on how many workers run them.
Reading a task yields one `RawInput` per input, whatever happens to the file.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from codekiln.curate.config import CurateConfig
from codekiln.curate.languages import language_from_path
from codekiln.curate.licenses import is_license_file, repo_license
from codekiln.errors import UserError

TABLE_SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
_SKIP_DIRS = frozenset({".git", ".hg", ".svn"})


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
class Task:
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
        kind = _check_table(path, kind)
        return Source(kind=kind, path=str(path), name=path.name)
    if not path.is_dir():
        raise UserError(f"source {arg} is neither a file nor a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UserError(f"source directory is not readable: {arg}")
    if (path / ".git").exists():
        return Source(kind="git", path=str(path), name=_git_repo_name(path))
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
            kind = _check_table(table, "parquet")
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


# ---- git ---------------------------------------------------------------------------------


def _git(repo: Path | str, *args: str) -> subprocess.CompletedProcess:
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


def _git_repo_name(path: Path) -> str:
    remotes = _git(path, "remote").stdout.decode().split()
    if remotes:
        remote = "origin" if "origin" in remotes else remotes[0]
        url = _git(path, "remote", "get-url", remote).stdout.decode().strip()
        if url:
            return remote_to_repo_name(url) or path.name
    return path.name


def _git_entries(source: Source) -> list[Entry]:
    head = _git(source.path, "rev-parse", "--verify", "-q", "HEAD^{commit}")
    if head.returncode != 0:
        raise UserError(
            f"git repository {source.path} has no commits; commit the files or "
            "copy them to a plain directory"
        )
    listing = _git(source.path, "ls-tree", "-r", "-l", "-z", "--full-tree", "HEAD")
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


# ---- directories -------------------------------------------------------------------------


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


def _directory_entries(source: Source) -> list[Entry]:
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


# ---- tables ------------------------------------------------------------------------------


def _looks_like_issue(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and "comments" in record
        and ("title" in record or "body" in record)
    )


def _check_table(path: Path, kind: str) -> str:
    """Fail early, with one line, on a table that cannot be read; return the source kind."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            schema = pq.ParquetFile(path).schema_arrow
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise UserError(f"{path}: not a readable Parquet file ({exc})") from None
        if "content" not in schema.names and "blob_id" in schema.names:
            raise UserError(
                f"{path}: no 'content' column: this is The Stack v2's layout of file ids "
                "(blob_id) without their contents; download the contents (Software "
                "Heritage's S3 bucket, as the dataset card shows) into a 'content' column first"
            )
        if "content" not in schema.names:
            raise UserError(
                f"{path}: no 'content' column (columns: {', '.join(schema.names) or 'none'})"
            )
        return kind
    if kind == "json":
        try:
            value = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: not a readable JSON file ({exc})") from None
        issues = value.get("issues") if isinstance(value, dict) else value
        if not isinstance(issues, list) or not all(_looks_like_issue(v) for v in issues[:5]):
            raise UserError(
                f"{path}: a .json source must be a dump of GitHub issues (a list of issues "
                "with 'title'/'body' and 'comments')"
            )
        return "issues"
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                try:
                    first = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise UserError(f"{path}: first line is not JSON") from None
                if _looks_like_issue(first):
                    return "issues"
                if not isinstance(first, dict) or "content" not in first:
                    raise UserError(
                        f"{path}: records have no 'content' field (nor the 'title' and "
                        "'comments' of a GitHub issue)"
                    )
                return kind
    raise UserError(f"{path}: the table is empty")


# ---- planning ----------------------------------------------------------------------------


def plan_tasks(sources: list[Source], config: CurateConfig) -> list[Task]:
    """Cut every source into tasks; the cut depends on the inputs only, never on workers."""
    tasks: list[Task] = []

    def add(**fields: Any) -> None:
        tasks.append(Task(len(tasks), **fields))

    for source_index, source in enumerate(sources):
        if source.kind in ("directory", "git"):
            entries = _git_entries(source) if source.kind == "git" else _directory_entries(source)
            if not entries:
                raise UserError(f"{source.path}: no files to curate")
            if not any(e.state == "file" and language_from_path(e.path) for e in entries):
                raise UserError(
                    f"{source.path}: no code to curate ({len(entries)} files, none with "
                    "the name or extension of a known language)"
                )
            licenses = _repository_licenses(source, entries)
            for start in range(0, len(entries), config.task_files):
                chunk = tuple(entries[start : start + config.task_files])
                repos = sorted({e.repo for e in chunk})
                add(
                    source=source_index,
                    entries=chunk,
                    licenses=tuple((repo, licenses.get(repo)) for repo in repos),
                )
            if source.kind == "git" and config.commits:
                add(
                    source=source_index,
                    kind="commits",
                    licenses=((source.name, licenses.get(source.name)),),
                    fingerprint=_head(source),
                )
        elif source.kind == "parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(source.path).metadata
            row = group = 0
            while group < meta.num_row_groups:
                first, first_row, rows = group, row, 0
                while group < meta.num_row_groups and (rows == 0 or rows < config.task_rows):
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
            for start in range(0, max(size, 1), config.task_bytes):
                add(
                    source=source_index,
                    kind="rows",
                    start=start,
                    stop=min(start + config.task_bytes, size),
                    fingerprint=_file_stamp(source.path),
                )
    return tasks


def _head(source: Source) -> str:
    return _git(source.path, "rev-parse", "HEAD").stdout.decode().strip()


def _read_small(source: Source, entry: Entry, limit: int = 200_000) -> str:
    """The text of a license file, from disk or from git's objects; '' when unreadable."""
    if entry.state != "file" or entry.size > limit:
        return ""
    if source.kind == "git":
        raw = _git(source.path, "cat-file", "blob", entry.ref).stdout
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


# ---- reading -----------------------------------------------------------------------------


def read_task(task: Task, source: Source, config: CurateConfig) -> Iterator[RawInput]:
    """Yield every input of a task exactly once; failures become states, never exceptions."""
    if task.kind == "commits":
        yield from _read_commits(task, source, config)
    elif source.kind == "directory":
        yield from _read_files(task, source, config.max_file_bytes)
    elif source.kind == "git":
        yield from _read_git(task, source, config.max_file_bytes)
    elif source.kind == "parquet":
        yield from _read_parquet(task, source)
    elif source.kind == "issues":
        yield from _read_issues(task, source)
    else:
        yield from _read_jsonl(task, source)


def _entry_input(task: Task, source: Source, entry: Entry) -> RawInput:
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


def _read_commits(task: Task, source: Source, config: CurateConfig) -> Iterator[RawInput]:
    from codekiln.curate.commits import CommitConfig, commit_text, iter_commits

    license = dict(task.licenses).get(source.name)
    commit_config = CommitConfig(max_commits=config.max_commits)
    for record in iter_commits(source.path, commit_config):
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


def _issue_inputs(source: Source, issues: Iterator[tuple[str, Any, int]]) -> Iterator[RawInput]:
    from codekiln.curate.issues import issue_text

    for key, issue, size in issues:
        if not isinstance(issue, dict):
            yield RawInput(source.name, source.name, "", key, size, state="malformed", kind="issue")
            continue
        repo = issue.get("repo") or issue.get("repository") or source.name
        if isinstance(repo, dict):
            repo = repo.get("full_name") or repo.get("name") or source.name
        number = issue.get("number")
        item = RawInput(
            source=source.name,
            repo=str(repo),
            path=f"issues/{number}" if number is not None else f"issues/{key}",
            key=key,
            size=len(json.dumps(issue, ensure_ascii=False).encode("utf-8", "surrogatepass")),
            kind="issue",
            license=_license_of(issue.get("license")),
        )
        try:
            text, reason = issue_text(issue)
        except (TypeError, ValueError, AttributeError, KeyError):
            text, reason = None, "malformed"
        item.text, item.reason = text, reason
        yield item


def _read_issues(task: Task, source: Source) -> Iterator[RawInput]:
    if source.path.endswith(".json"):
        value = json.loads(Path(source.path).read_bytes())
        issues = value.get("issues") if isinstance(value, dict) else value
        rows = ((f"row:{i}", v, 0) for i, v in enumerate(issues))
        yield from _issue_inputs(source, rows)
        return
    yield from _issue_inputs(source, _jsonl_records(task, source))


def _read_files(task: Task, source: Source, max_bytes: int) -> Iterator[RawInput]:
    for entry in task.entries:
        item = _entry_input(task, source, entry)
        if item.state == "file" and entry.size <= max_bytes:
            try:
                with open(entry.ref, "rb") as handle:
                    item.data = handle.read(max_bytes + 1)  # a file may grow after listing
                item.size = len(item.data)
            except OSError:
                item.state = "unreadable"
        yield item


def _read_git(task: Task, source: Source, max_bytes: int) -> Iterator[RawInput]:
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
        item = _entry_input(task, source, entry)
        if entry in wanted:
            item.data = blobs.get(entry.ref)
            if item.data is None:
                item.state = "unreadable"
        yield item


def _optional_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _license_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    items = [str(v) for v in value if v]
    return " AND ".join(items) if items else None


def _first(record: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = record.get(name)
        if value is not None:
            return value
    return None


# The kinds of codekiln's own records: a curated record's content is already what the
# record kind makes of its input (a notebook's converted text, an issue's thread), so it is
# kept as it is when shards are curated again.
_RECORD_KINDS = frozenset({"file", "notebook", "issue", "commit"})


def table_input(source: Source, record: dict[str, Any], key: str) -> RawInput:
    """Map a table record onto a RawInput: The Stack v1 (`max_stars_repo_name`, ...), The
    Stack v2 (`repo_name`, `detected_licenses`, `star_events_count`, ...), or codekiln's own
    curated schema (`repo`, `path`, `kind`, ...)."""
    content = record.get("content")
    repo = _first(record, "repo", "max_stars_repo_name", "repo_name", "repository_name")
    path = _first(record, "path", "max_stars_repo_path", "file_path")
    if isinstance(path, str) and "blob_id" in record:
        path = path.lstrip("/")  # The Stack v2's paths start at the repository root, '/'
    kind = record.get("kind")
    item = RawInput(
        source=source.name,
        repo=str(repo) if repo is not None else source.name,
        path=str(path) if path is not None else "",
        key=key,
        size=0,
        kind=kind if kind in _RECORD_KINDS else "file",
        license=_license_of(
            _first(record, "license", "licenses", "max_stars_repo_licenses", "detected_licenses")
        ),
        stars=_optional_int(_first(record, "stars", "max_stars_count", "star_events_count")),
        lang=_first(record, "lang", "language"),
    )
    # The Stack v2 marks vendored and generated files (go-enry's rules); we trust its marks.
    if record.get("is_vendor") is True:
        item.reason = "vendored"
    elif record.get("is_generated") is True:
        item.reason = "autogenerated"
    if not isinstance(content, str):
        item.state = "malformed"
        return item
    item.text = content
    item.size = len(content.encode("utf-8", "surrogatepass"))
    return item


def _read_parquet(task: Task, source: Source) -> Iterator[RawInput]:
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(source.path)
    row = task.row_offset
    for group in range(task.start, task.stop):
        table = handle.read_row_group(group)
        for record in table.to_pylist():
            yield table_input(source, record, f"row:{row}")
            row += 1


def _jsonl_records(task: Task, source: Source) -> Iterator[tuple[str, Any, int]]:
    """(key, parsed record or None, bytes) for the lines whose first byte is in [start, stop)."""
    with open(source.path, "rb") as handle:
        if task.start > 0:
            handle.seek(task.start - 1)
            if handle.read(1) != b"\n":
                handle.readline()  # the line began in the previous task
        while True:
            offset = handle.tell()
            if offset >= task.stop:
                break
            line = handle.readline()
            if not line:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            yield f"byte:{offset}", record, len(line)


def _read_jsonl(task: Task, source: Source) -> Iterator[RawInput]:
    for key, record, size in _jsonl_records(task, source):
        if not isinstance(record, dict):
            yield RawInput(source.name, source.name, "", key, size, state="malformed")
            continue
        yield table_input(source, record, key)
