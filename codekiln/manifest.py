"""Manifests: written last into every output directory, so their presence means 'finished'."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import codekiln
from codekiln.errors import UserError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def package_versions(*names: str) -> dict[str, str]:
    """Versions of codekiln, Python and the named packages that are installed."""
    versions = {"codekiln": codekiln.__version__, "python": sys.version.split()[0]}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def tmp_path(path: str | Path) -> Path:
    """The temporary name a file or folder is written under before `os.replace` gives it its
    own: beside it, so the rename stays on one filesystem."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write a file or a folder at; on success it is renamed to
    `path` (a folder already there is replaced), on failure it is removed. Readers never see
    half of it.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_path(folder / "a.txt") as tmp:
    ...     _ = tmp.write_text("x")
    >>> sorted(p.name for p in folder.iterdir())
    ['a.txt']
    """
    path = Path(path)
    tmp = tmp_path(path)
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write to a temporary name, then rename: readers never see half a file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def write_manifest(out_dir: Path, stage: str, **fields: Any) -> dict[str, Any]:
    manifest = {
        "format_version": FORMAT_VERSION,
        "stage": stage,
        "platform": platform.platform(),
        **fields,
    }
    write_json(Path(out_dir) / MANIFEST, manifest)
    return manifest


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def fingerprint(value: Any) -> str:
    """A short, stable hash of any JSON-serialisable value.

    >>> fingerprint({"b": 1, "a": [1, 2]}) == fingerprint({"a": [1, 2], "b": 1})
    True
    """
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def check_output_dir(out_dir: str | Path) -> None:
    """Raise UserError, before any work, when `out_dir` cannot be a writable directory: it
    is a file, lies under a file, or its nearest existing folder is not writable."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output path {out_dir} exists and is not a directory")
    parent = out_dir
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"output path {out_dir}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"output path {out_dir}: no permission to write in {parent}")


def finished_stage(out_dir: str | Path, stage: str) -> dict[str, Any] | None:
    """The manifest of a finished `stage` run in `out_dir`, or None when there is none; a
    UserError when the folder holds another stage's output (never to be overwritten)."""
    previous = read_manifest(out_dir)
    if previous is not None and previous.get("stage") != stage:
        raise UserError(
            f"{out_dir} holds the output of `codekiln {previous.get('stage')}`; "
            "choose another output directory"
        )
    return previous


def begin_stage(
    out_dir: str | Path,
    stage: str,
    request: str,
    force: bool = False,
    holds: str = "a finished run",
    inputs: tuple[str | Path, ...] = (),
) -> dict[str, Any] | None:
    """The one gate every stage passes before it writes into `out_dir`.

    Returns the finished manifest when `out_dir` already holds this `stage` run for the same
    `request` (a fingerprint of inputs and settings) and `force` is not set: the caller skips
    the work. Raises UserError when `out_dir` cannot be written, is one of `inputs`, holds
    another stage's output, or holds this stage's output for another request without `force`.
    Otherwise creates `out_dir`, removes its manifest (the run is unfinished until the stage
    writes a new one last) and returns None. `holds` names what a finished run is, for the
    message ("a tokenizer trained on other data or settings").
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    for source in inputs:
        if out_dir.resolve() == Path(source).resolve():
            raise UserError(
                f"{stage} needs its own output directory, not its input {source}; "
                "choose another output directory"
            )
    previous = finished_stage(out_dir, stage)
    if previous is not None and not force:
        if previous.get("request") == request:
            return previous
        raise UserError(
            f"{out_dir} holds {holds}; pass --force to replace it, "
            "or choose another output directory"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    return None
