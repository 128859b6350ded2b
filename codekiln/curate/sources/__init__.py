"""Sources of code and the tasks that read them.

A source is a directory (one repository), a git repository (the files of HEAD, and its
history when `commits.enabled`), or a table: Parquet or JSONL in The Stack's layouts, a dump
of GitHub issues, or a finished curate output. One module per format (`directories`, `git`,
`tables`); `resolve` turns command-line paths into sources, `plan` cuts sources into tasks
and reads them.
"""

from codekiln.curate.sources.base import Entry, RawInput, Source, SourceTask
from codekiln.curate.sources.git import remote_to_repo_name
from codekiln.curate.sources.plan import plan_tasks, read_task
from codekiln.curate.sources.resolve import (
    TABLE_SUFFIXES,
    resolve_source,
    resolve_sources,
    stdlib_source,
    table_directory,
)
from codekiln.curate.sources.tables import table_input

__all__ = [
    "TABLE_SUFFIXES",
    "Entry",
    "RawInput",
    "Source",
    "SourceTask",
    "plan_tasks",
    "read_task",
    "remote_to_repo_name",
    "resolve_source",
    "resolve_sources",
    "stdlib_source",
    "table_directory",
    "table_input",
]
