"""Reading the official benchmark files users pass with `codekiln eval --data`.

MultiPL-E rows, human-eval-infilling's and EvalPlus's files are JSON lines, plain or gzipped
(the `.gz` name is not trusted: the gzip magic bytes decide), and MultiPL-E's dataset also
comes as Parquet. Every task reads them through `rows`, so a file that is not what it should
be stops the run with one line naming the file (and the line), whatever the task.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codekiln.errors import UserError


def rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, value) of each row of a .jsonl[.gz] or .parquet file, where = "PATH:LINE"
    (or "PATH row N"); blank lines are skipped. UserError on an unreadable file or a line
    that is not JSON."""
    path = Path(path)
    if path.name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as error:  # noqa: BLE001 - any unreadable file is the user's input
            raise UserError(f"--data {path}: not a readable Parquet file ({error})") from None
        for number, row in enumerate(table.to_pylist(), 1):
            yield f"{path} row {number}", row
        return
    for number, line in enumerate(text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as error:
            raise UserError(f"--data {path}:{number}: not a JSON line ({error})") from None
        yield f"{path}:{number}", value


def text(path: Path) -> str:
    """A JSON-lines file's text, gunzipped when it is gzip (by its first bytes)."""
    try:
        raw = Path(path).read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise UserError(f"--data {path}: cannot read it as JSON lines ({error})") from None


def sha256(path: Path) -> str:
    """The file's SHA-256, for results.json (which exact file a number came from)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
