"""Tables of records: Parquet and JSONL in The Stack's layouts (v1 and v2) or codekiln's own
curated schema, and GitHub issues (a JSON dump or JSONL). A task is a run of row groups or a
byte range of lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codekiln.curate.sources.base import RawInput, Source, SourceTask
from codekiln.errors import UserError

if TYPE_CHECKING:
    from codekiln.curate.issues import Issues


def _looks_like_issue(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and "comments" in record
        and ("title" in record or "body" in record)
    )


def check_table(path: Path, kind: str) -> str:
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


def _issue_inputs(
    source: Source, issues: Iterator[tuple[str, Any, int]], config: Issues
) -> Iterator[RawInput]:
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
            text, reason = issue_text(issue, config)
        except (TypeError, ValueError, AttributeError, KeyError):
            text, reason = None, "malformed"
        item.text, item.reason = text, reason
        yield item


def read_issues(task: SourceTask, source: Source, config: Issues) -> Iterator[RawInput]:
    if source.path.endswith(".json"):
        value = json.loads(Path(source.path).read_bytes())
        issues = value.get("issues") if isinstance(value, dict) else value
        rows = ((f"row:{i}", v, 0) for i, v in enumerate(issues))
        yield from _issue_inputs(source, rows, config)
        return
    yield from _issue_inputs(source, _jsonl_records(task, source), config)


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


def read_parquet(task: SourceTask, source: Source) -> Iterator[RawInput]:
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(source.path)
    row = task.row_offset
    for group in range(task.start, task.stop):
        table = handle.read_row_group(group)
        for record in table.to_pylist():
            yield table_input(source, record, f"row:{row}")
            row += 1


def _jsonl_records(task: SourceTask, source: Source) -> Iterator[tuple[str, Any, int]]:
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


def read_jsonl(task: SourceTask, source: Source) -> Iterator[RawInput]:
    for key, record, size in _jsonl_records(task, source):
        if not isinstance(record, dict):
            yield RawInput(source.name, source.name, "", key, size, state="malformed")
            continue
        yield table_input(source, record, key)
