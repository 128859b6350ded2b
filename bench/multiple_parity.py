"""Our MultiPL-E translator against the official rows: how many rows are equal, field by field.

    python bench/multiple_parity.py --official DIR [--version 3] [--lang lua] [--show 3]

DIR holds MultiPL-E's rows of one version (see translate.VERSIONS): `humaneval-<lang>-
reworded.jsonl` files (exported from the `nuprl/MultiPL-E` dataset's `humaneval-<lang>` configs,
or MultiPL-E's `prompts/` folder at the version's commit), or one folder per language holding
pieces of such a file (`<lang>/pageNN.txt`: consecutive slices of the file's text; rows cut at
a slice's edge are joined with the next slice, and a row that is still incomplete is left out
of the comparison). --json OUT writes the figures.

For each language this prints how many official rows were compared, how many of ours have the
same `prompt`, `tests` and `stop_tokens` (and all three), which problems one side keeps and the
other does not, and, with --show N, the first N differing rows as unified diffs.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any

FIELDS = ("prompt", "tests", "stop_tokens")


def read_official(folder: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """{language: {row name: row}} from the files and page folders under `folder`."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            _add(rows, line)
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        pages = sorted(sub.glob("page*.txt"), key=lambda p: int(re.sub(r"\D", "", p.stem)))
        text, last = "", None
        for page in pages:
            number = int(re.sub(r"\D", "", page.stem))
            if last is not None and number != last + 1:
                text += "\n"  # a gap: the row spanning it is incomplete and fails to parse
            text += page.read_text(encoding="utf-8")
            last = number
        for line in text.split("\n"):
            _add(rows, line)
    return rows


def _add(rows: dict[str, dict[str, dict[str, Any]]], line: str) -> None:
    try:
        row = json.loads(line)
    except ValueError:
        return
    if isinstance(row, dict) and {"name", "language", *FIELDS} <= row.keys():
        rows.setdefault(row["language"], {})[row["name"]] = row


def _key(lang: str) -> str:
    """Our language key of a row's `language` ("go_test.go" -> "go")."""
    from codekiln.evaluate.multiple.task import LANGUAGES

    keys = {cls.row_language or key: key for key, cls in LANGUAGES.items()}
    return keys.get(lang, {"javascript": "js", "rust": "rs"}.get(lang, lang))


def our_rows(lang: str, version: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """{row name: row} of our translator in `version` for a row's `language`, and its drops."""
    from codekiln.evaluate.multiple.translate import translate_rows

    rows, dropped = translate_rows(_key(lang), version)
    return {row["name"]: row for row in rows}, dropped


def compare(
    lang: str, official: dict[str, dict[str, Any]], show: int, version: str
) -> dict[str, Any]:
    ours, dropped = our_rows(lang, version)
    names = sorted(official, key=_number)
    equal = {field: 0 for field in (*FIELDS, "all")}
    missing = [n for n in names if n not in ours]
    diffs = []
    for name in names:
        if name not in ours:
            continue
        same = {f: ours[name][f] == official[name][f] for f in FIELDS}
        for field, ok in same.items():
            equal[field] += ok
        equal["all"] += all(same.values())
        if not all(same.values()) and len(diffs) < show:
            diffs.append(_diff(name, ours[name], official[name], same))
    numbers = {_number(n) for n in official}
    extra = sorted(
        (n for n in ours if _number(n) not in numbers and _covered(n, names)), key=_number
    )
    return {
        "language": lang,
        "version": version,
        "compared": len(names),
        "equal": equal,
        "official_only": missing,
        "ours_only": extra,
        "dropped_reasons": {n: dropped.get(f"HumanEval/{_number(n)}", "") for n in missing},
        "diffs": diffs,
    }


def _covered(name: str, official_names: list[str]) -> bool:
    """Whether `name` lies inside the stretch of problems the official slices cover (rows are
    sorted by name in MultiPL-E's files, so a partial copy covers a range of names)."""
    return bool(official_names) and min(official_names) <= name <= max(official_names)


def _numbers(names: list[str], most: int = 12) -> str:
    """The problems' numbers, the first `most` of them and how many more."""
    numbers = [str(_number(n)) for n in names]
    more = f" (+{len(numbers) - most} more)" if len(numbers) > most else ""
    return " ".join(numbers[:most]) + more


def _number(name: str) -> int:
    return int(name.split("_")[1])


def _diff(name: str, ours: dict, official: dict, same: dict[str, bool]) -> str:
    out = []
    for field in FIELDS:
        if same[field]:
            continue
        a, b = official[field], ours[field]
        if not isinstance(a, str):
            a, b = json.dumps(a), json.dumps(b)
        out += difflib.unified_diff(
            a.splitlines(keepends=True),
            b.splitlines(keepends=True),
            f"{name} {field} (official)",
            f"{name} {field} (ours)",
        )
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", type=Path, required=True)
    parser.add_argument("--lang", action="append", help="only these languages (repeatable)")
    parser.add_argument("--show", type=int, default=0, help="print the first N differing rows")
    parser.add_argument(
        "--version", default="3", help="the MultiPL-E rows to write (translate.VERSIONS)"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    official = read_official(args.official)
    if not official:
        print(f"error: no MultiPL-E rows under {args.official}", file=sys.stderr)
        return 2
    results = []
    print(f"{'lang':<11}{'rows':>6}{'prompt':>9}{'tests':>8}{'stops':>8}{'all':>8}  kept differs")
    for lang in sorted(official):
        if lang == "py" or (args.lang and not {lang, _key(lang)} & set(args.lang)):
            continue
        r = compare(lang, official[lang], args.show, args.version)
        results.append(r)
        eq, n = r["equal"], r["compared"]
        kept = []
        if r["official_only"]:
            kept.append("only official: " + _numbers(r["official_only"]))
        if r["ours_only"]:
            kept.append("only ours: " + _numbers(r["ours_only"]))
        print(
            f"{lang:<11}{n:>6}{eq['prompt']:>9}{eq['tests']:>8}{eq['stop_tokens']:>8}"
            f"{eq['all']:>8}  {'; '.join(kept)}"
        )
        for name, reason in r["dropped_reasons"].items():
            if args.show:
                print(f"  {name}: we drop it: {reason}")
        for diff in r["diffs"]:
            print(diff)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
