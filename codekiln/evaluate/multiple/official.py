"""MultiPL-E's rows: read from the user's files, the pinned dataset, or our translator.

A row is one problem in one language, with MultiPL-E's fields: ``name``
(``HumanEval_0_has_close_elements``), ``language`` (``lua``; Go rows say ``go_test.go``),
``prompt``, ``doctests``, ``original``, ``prompt_terminology``, ``tests`` and ``stop_tokens``,
as in MultiPL-E's ``prompts/humaneval-<lang>-reworded.jsonl`` files and the ``nuprl/MultiPL-E``
dataset's ``humaneval-<lang>`` configs. Three sources, in this order:

- ``--data PATH``: a ``.jsonl``, ``.jsonl.gz`` or ``.parquet`` file, or a folder of them
  (searched recursively), of which the rows of the task's language are used;
- the dataset, when ``datasets`` is installed and the Hub answers, at the revision the BigCode
  harness pins, so the problems are the harness's;
- offline, our translator's rows (``translate.translate_rows``), which reproduce MultiPL-E's.

Each source says what it was (:class:`Rows.source`) for results.json: the files and their
SHA-256, the dataset and revision, or the translator and codekiln's version.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codekiln import __version__
from codekiln.errors import UserError
from codekiln.evaluate import datafiles
from codekiln.evaluate.multiple import translate, versions

FIELDS = ("name", "language", "prompt", "doctests", "original", "prompt_terminology", "tests",
          "stop_tokens")  # fmt: skip
REQUIRED = ("name", "language", "prompt", "tests", "stop_tokens")  # what a run depends on
SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
DATASET = "nuprl/MultiPL-E"
# The revision bigcode_eval/tasks/multiple.py loads (GeneralMultiPLE.DATASET_REVISION).
REVISION = "28441b6024e71d4a1c1c0f6bf171c935cd5a43f2"
NAME = re.compile(r"^HumanEval_(\d+)_")


@dataclass(frozen=True)
class Rows:
    """One language's rows, in problem order, and where they came from."""

    rows: tuple[dict[str, Any], ...]
    source: dict[str, Any]


def task_id(name: str) -> str:
    """The harness's task id of a row: HumanEval's, so results line up across languages.

    >>> task_id("HumanEval_23_strlen"), task_id("mbpp_3_is_not_prime")
    ('HumanEval/23', 'mbpp_3_is_not_prime')
    """
    found = NAME.match(name)
    return f"HumanEval/{found.group(1)}" if found else name


def order(name: str) -> tuple[int, str]:
    """Sort key: HumanEval's number, then the name."""
    found = NAME.match(name)
    return (int(found.group(1)) if found else 1 << 30, name)


def read_rows(path: Path, key: str, languages: tuple[str, ...]) -> Rows:
    """The rows of `languages` in a file or folder (for task multiple-`key`); one clear
    UserError for a file that is not MultiPL-E rows, or when none is of the language."""
    files = data_files(path)
    if path.is_dir():  # a folder may hold other benchmarks' files (--data for every task)
        others = [f for f in files if not _looks_like_rows(f)]
        files = [f for f in files if f not in others]
        if not files:
            raise UserError(
                f"--data {path}: no MultiPL-E rows in the folder (files of another schema: "
                f"{', '.join(f.name for f in others[:3])}); expected the fields {', '.join(FIELDS)}"
            )
    found: dict[str, dict[str, Any]] = {}
    origin: dict[str, Path] = {}
    used: dict[Path, int] = {}
    seen: set[str] = set()
    for file in files:
        for row in _file_rows(file):
            seen.add(row["language"])
            if row["language"] not in languages:
                continue
            name = row["name"]
            if name in found and _core(found[name]) != _core(row):
                raise UserError(
                    f"--data {path}: row {name} ({row['language']}) differs between "
                    f"{origin[name]} and {file}: give one file per language (for example "
                    f"only the humaneval-{key}-reworded rows)"
                )
            if name not in found:
                found[name] = row
                origin[name] = file
                used[file] = used.get(file, 0) + 1
    if not found:
        others = ", ".join(sorted(seen)) or "none"
        raise UserError(
            f"--data {path}: no row of language {languages[0]} for multiple-{key} "
            f"(languages found: {others}); pass MultiPL-E's humaneval-{key} rows"
        )
    ids: dict[str, str] = {}
    for name in found:
        other = ids.setdefault(task_id(name), name)
        if other != name:
            raise UserError(
                f"--data {path}: rows {other} and {name} are the same problem "
                f"({task_id(name)}): give one file per language"
            )
    rows = tuple(found[name] for name in sorted(found, key=order))
    source = {
        "source": "files",
        "path": str(path.resolve()),
        "files": [
            {"path": str(file.resolve()), "sha256": datafiles.sha256(file), "rows": count}
            for file, count in used.items()
        ],
    }
    return Rows(rows, source)


def data_files(path: Path) -> list[Path]:
    """The row files of `path`: itself, or those under the folder, in name order."""
    if path.is_file():
        if not path.name.endswith(SUFFIXES):
            raise UserError(
                f"--data {path}: not a MultiPL-E rows file (.jsonl, .jsonl.gz or .parquet)"
            )
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
    if not files:
        raise UserError(f"--data {path}: no .jsonl, .jsonl.gz or .parquet file in the folder")
    return files


def _looks_like_rows(path: Path) -> bool:
    """Whether a file's first row (or Parquet schema) has MultiPL-E's fields."""
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            names = set(pq.read_schema(path).names)
        except Exception:  # noqa: BLE001 - unreadable: read_rows says why
            return True
        return set(REQUIRED) <= names
    for _, row in datafiles.rows(path):
        return isinstance(row, dict) and set(REQUIRED) <= row.keys()
    return False


@functools.lru_cache(maxsize=64)
def _cached_rows(path: str, mtime_ns: int, size: int) -> tuple[dict[str, Any], ...]:
    return tuple(_checked(Path(path)))


def _file_rows(path: Path) -> tuple[dict[str, Any], ...]:
    """Every row of one file, checked (read once per process: a folder serves 11 tasks)."""
    stat = path.stat()
    return _cached_rows(str(path), stat.st_mtime_ns, stat.st_size)


def _checked(path: Path) -> Iterator[dict[str, Any]]:
    for where, row in datafiles.rows(path):
        if not isinstance(row, dict):
            raise UserError(f"--data {where}: a row is {type(row).__name__}, not an object")
        missing = [f for f in REQUIRED if f not in row]
        if missing:
            raise UserError(
                f"--data {where}: not a MultiPL-E row (no {', '.join(missing)}; expected "
                f"the fields {', '.join(FIELDS)})"
            )
        strings = all(isinstance(row[f], str) for f in ("name", "language", "prompt", "tests"))
        stops = row["stop_tokens"]
        if not strings or not (
            isinstance(stops, list | tuple) and all(isinstance(s, str) for s in stops)
        ):
            raise UserError(
                f"--data {where}: a MultiPL-E row has text name, language, prompt and "
                "tests, and a list of texts stop_tokens"
            )
        yield {**row, "stop_tokens": list(stops)}


def _core(row: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    """What makes two copies of a row the same benchmark problem."""
    return row["prompt"], row["tests"], tuple(row["stop_tokens"])


def dataset_rows(key: str, languages: tuple[str, ...]) -> tuple[Rows | None, str]:
    """The rows of the dataset's ``humaneval-<key>`` config at the pinned revision, or
    (None, why not): `datasets` missing, the Hub offline, or the load failing."""
    try:
        import datasets
    except ImportError:
        return None, "the datasets package is not installed"
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return None, "HF_DATASETS_OFFLINE/HF_HUB_OFFLINE is set"
    config = f"humaneval-{key}"
    try:
        table = datasets.load_dataset(DATASET, config, revision=REVISION, split="test")
    except Exception as error:  # noqa: BLE001 - offline, or the Hub refused: use the translator
        return None, f"{DATASET} {config} could not be loaded ({type(error).__name__}: {error})"
    rows = [
        {**row, "stop_tokens": list(row["stop_tokens"])}
        for row in table
        if row.get("language") in languages
    ]
    if not rows:
        return None, f"{DATASET} {config} has no row of language {languages[0]}"
    rows.sort(key=lambda row: order(row["name"]))
    source = {"source": "dataset", "dataset": DATASET, "config": config, "revision": REVISION}
    return Rows(tuple(rows), source), ""


def translator_rows(key: str, version: str | None = None) -> Rows:
    """Our translator's rows for `key` (what runs offline without --data), reproducing
    MultiPL-E's generator `version` (versions.VERSIONS; None: its default)."""
    version = version or versions.DEFAULT_VERSION
    rows, dropped = translate.translate_rows(key, version)
    source = {
        "source": "codekiln translator",
        "codekiln": __version__,
        "multiple_version": version,
        "generator_commit": versions.VERSIONS[version].commit,
        "dropped": sorted(dropped, key=lambda t: order(t.replace("/", "_") + "_")),
    }
    return Rows(tuple(sorted(rows, key=lambda row: order(row["name"]))), source)
