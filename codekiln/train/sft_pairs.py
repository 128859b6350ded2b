"""Where instruction-tuning pairs (the StarChat / OctoCoder step) come from (`read_pairs`):

- a JSONL file of ``{"prompt": ..., "completion": ...}`` objects, one a line;
- a curated folder's commit records (``codekiln curate --commits``), read as OctoPack read
  commits: the message is the instruction, the code before is its input, the code after is
  the answer.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from codekiln.curate.commits import COMMIT_AFTER, COMMIT_BEFORE, COMMIT_MSG
from codekiln.errors import UserError

_COMMIT_MARKERS = re.compile(
    "|".join(re.escape(m) for m in (COMMIT_BEFORE, COMMIT_MSG, COMMIT_AFTER))
)


@dataclass(frozen=True)
class Pair:
    """One training example. A pair read from a commit also keeps its parts: `instruction`
    (the message) and `input` (the code before); its prompt is the two joined OctoPack-style.
    """

    prompt: str
    completion: str
    instruction: str | None = None
    input: str | None = None


def commit_pair(message: str, before: str, after: str) -> Pair:
    """A commit as an instruction pair: the message, a blank line and the code before ask
    for the code after (an added file has no code before, and no blank line).

    >>> pair = commit_pair("Use a set", "x = []", "x = set()")
    >>> pair.prompt, pair.completion
    ('Use a set\\n\\nx = []', 'x = set()')
    >>> commit_pair("Add a module", "", "x = 1").prompt
    'Add a module'
    """
    prompt = f"{message}\n\n{before}" if before else message
    return Pair(prompt, after, instruction=message, input=before)


def parse_commit(content: str) -> tuple[str, str, str] | None:
    """(message, before, after) of a commit record's content, or None where it cannot be
    told apart: the markers StarCoder put between the parts may also occur in the files, and
    only one ``<commit_msg>`` directly followed by ``<commit_after>`` is unambiguous.

    >>> parse_commit("<commit_before>x = []<commit_msg>Use a set<commit_after>x = set()")
    ('Use a set', 'x = []', 'x = set()')
    >>> parse_commit("<commit_before>a<commit_msg>m<commit_after>b<commit_msg>n<commit_after>c")
    """
    if not content.startswith(COMMIT_BEFORE):
        return None
    markers = list(_COMMIT_MARKERS.finditer(content, len(COMMIT_BEFORE)))
    splits = [
        (msg, after)
        for msg, after in zip(markers, markers[1:], strict=False)
        if msg.group() == COMMIT_MSG and after.group() == COMMIT_AFTER
    ]
    if len(splits) != 1:
        return None
    msg, after = splits[0]
    before = content[len(COMMIT_BEFORE) : msg.start()]
    return content[msg.end() : after.start()], before, content[after.end() :]


def read_pairs(path: str | Path, skipped: Counter | None = None) -> list[Pair]:
    """The pairs of a JSONL file or of a curated folder's commit records, in file order.

    A bad JSONL line is a UserError that names it (nothing is read then); commit records
    whose parts cannot be told apart are skipped and counted in `skipped` under
    ``commit_ambiguous``, records of other kinds under ``not_commit``.
    """
    path = Path(path)
    if path.is_dir():
        return _read_curated(path, skipped if skipped is not None else Counter())
    if not path.exists():
        raise UserError(
            f"no instruction pairs at {path}: give a JSONL file of "
            '{"prompt": ..., "completion": ...} lines, or a folder curated with --commits'
        )
    if path.suffix == ".parquet":
        raise UserError(
            f"{path} is one curated shard: give the curated folder that holds it ({path.parent})"
        )
    return _read_jsonl(path)


def _read_jsonl(path: Path) -> list[Pair]:
    pairs = []
    with open(path, "rb") as file:
        for number, raw in enumerate(file, 1):
            where = f"{path} line {number}"
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise UserError(
                    f'{where}: a {type(record).__name__}, not a {{"prompt", "completion"}} object'
                )
            for key in ("prompt", "completion"):
                if key not in record:
                    raise UserError(f'{where}: no "{key}" field (each line needs both)')
                if not isinstance(record[key], str):
                    kind = type(record[key]).__name__
                    raise UserError(f'{where}: "{key}" is a {kind}, not a string')
            pairs.append(Pair(record["prompt"], record["completion"]))
    if not pairs:
        raise UserError(
            f'{path} holds no pairs: write one {{"prompt": ..., "completion": ...}} object a line'
        )
    return pairs


def _read_curated(folder: Path, skipped: Counter) -> list[Pair]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from codekiln.shards import curated_shards

    pairs = []
    for shard in curated_shards(folder):
        columns = pq.read_schema(shard).names
        if "kind" not in columns or "content" not in columns:
            raise UserError(f"{shard} is not a curated shard: it has no kind or content column")
        table = pq.read_table(shard, columns=["kind", "content"])
        is_commit = pc.fill_null(pc.equal(table["kind"], "commit"), False)
        skipped["not_commit"] += table.num_rows - (pc.sum(is_commit).as_py() or 0)
        for content in table.filter(is_commit)["content"].to_pylist():
            parts = parse_commit(content or "")
            if parts is None:
                skipped["commit_ambiguous"] += 1
                continue
            pairs.append(commit_pair(*parts))
    if not pairs:
        raise UserError(
            f"{folder} holds no usable commit records: curate git sources with "
            f"`codekiln curate SRC -o {folder} --commits`, or give a JSONL file of pairs"
        )
    return pairs
