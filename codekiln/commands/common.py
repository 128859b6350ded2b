"""What every command shares: the consoles it prints to, the options several commands take,
and the one way a command's flags become its stage's config (`stage_config`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from codekiln.config import load_config

T = TypeVar("T")

# The consoles commands print to; `codekiln.cli.main` puts its own here while it runs (tests
# give it consoles that write to strings). Read them as `common.console` when printing.
console = Console()
err_console = Console(stderr=True)


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


Workers = Annotated[
    int,
    typer.Option(
        "--workers", "-j", min=1, help="Worker processes (output is the same for any number)."
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML settings: a table per stage ([curate], [pack], ...) or top-level keys.",
    ),
]
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="One setting, key=value (dotted for tables: overrides.SQL.max_lines=10; "
        "with run: stage.key=value).",
    ),
]
Executor = Annotated[
    str,
    typer.Option(
        "--executor", help="Where tasks run: local (processes here) or ray (a Ray cluster)."
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address", help="Address of a running Ray cluster (default: start one here)."
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def given(**flags: Any) -> dict[str, Any]:
    """The flags the user gave: typer leaves an option that was not given at None.

    >>> given(vocab_size=512, sample_bytes=None)
    {'vocab_size': 512}
    """
    return {key: value for key, value in flags.items() if value is not None}


def stage_config(
    cls: type[T],
    section: str,
    path: str | Path | None = None,
    sets: list[str] | None = None,
    **flags: Any,
) -> T:
    """A stage's config: its defaults, then the file's `[section]` table, then each `--set
    key=value`, then the command's own flags, typed (a flag left at None is not given).

    A flag may be a function of the setting's value so far (defaults, file and --set), for a
    flag that adds to a setting rather than replacing it, or clears another rule:

    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Demo:
    ...     size: int = 1
    ...     names: list = field(default_factory=list)
    >>> stage_config(Demo, "demo", sets=["names=a"], size=None, names=lambda old: [*old, "b"])
    Demo(size=1, names=['a', 'b'])
    """
    chosen = given(**flags)
    if any(callable(value) for value in chosen.values()):
        so_far = load_config(cls, section, path, sets)
        for key, value in chosen.items():
            if callable(value):
                chosen[key] = value(getattr(so_far, key))
    return load_config(cls, section, path, sets, extra=chosen)
