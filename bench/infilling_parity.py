"""Parity of codekiln's derived infilling sets with the official human-eval-infilling files.

    python bench/infilling_parity.py --official DIR

DIR holds `HumanEval-SingleLineInfilling.jsonl.gz` and `HumanEval-MultiLineInfilling.jsonl.gz`
from https://github.com/openai/human-eval-infilling (data/). For each set, prints the number of
official rows, of derived rows, whether the task ids come in the same order, and how many rows
equal the official one in every field (task_id, entry_point, prompt, suffix,
canonical_solution, test); then the first few differences, field by field. If the random-span
files are in DIR too, also checks that each row puts its problem back together
(prompt + canonical_solution + suffix == HumanEval prompt + canonical solution, exactly
or up to newlines at the ends).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from codekiln.evaluate.humaneval import read_humaneval
from codekiln.evaluate.infilling import FIELDS, derive_rows, read_rows

DERIVED = ("SingleLineInfilling", "MultiLineInfilling")
DRAWN = ("RandomSpanInfilling", "RandomSpanInfillingLight")


def compare(benchmark: str, official_dir: Path, shown: int) -> bool:
    official = read_rows(official_dir / f"HumanEval-{benchmark}.jsonl.gz", benchmark)
    ours = derive_rows(benchmark)
    same_order = [r["task_id"] for r in ours] == [r["task_id"] for r in official]
    by_id = {r["task_id"]: r for r in official}
    equal = sum(by_id.get(r["task_id"]) == r for r in ours)
    print(
        f"{benchmark}: official {len(official)}, derived {len(ours)}, "
        f"same ids in the same order: {same_order}, equal rows: {equal}/{len(official)}"
    )
    differences: Counter[str] = Counter()
    for row in ours:
        theirs = by_id.get(row["task_id"])
        if theirs is None:
            differences["not in the official file"] += 1
            if differences["not in the official file"] <= shown:
                print(f"  {row['task_id']}: not in the official file")
            continue
        for field in FIELDS:
            if row[field] != theirs[field]:
                differences[field] += 1
                if differences[field] <= shown:
                    print(f"  {row['task_id']} {field}:")
                    print(f"    ours     {row[field]!r}\n    official {theirs[field]!r}")
    missing = set(by_id) - {r["task_id"] for r in ours}
    if missing:
        print(f"  {len(missing)} official ids not derived, e.g. {sorted(missing)[:shown]}")
    if differences:
        print(f"  differences by field: {dict(differences)}")
    return same_order and equal == len(official) == len(ours)


def check_drawn(benchmark: str, official_dir: Path) -> None:
    path = official_dir / f"HumanEval-{benchmark}.jsonl.gz"
    if not path.exists():
        return
    sources = {p["task_id"]: p for p in read_humaneval()}
    rows = read_rows(path, benchmark)
    whole = ends = 0
    for row in rows:
        source = sources["/".join(row["task_id"].split("/")[1:3])]
        program = row["prompt"] + row["canonical_solution"] + row["suffix"]
        whole += program == source["prompt"] + source["canonical_solution"]
        ends += program.strip("\n") == (source["prompt"] + source["canonical_solution"]).strip("\n")
    print(
        f"{benchmark}: {len(rows)} rows; prompt + canonical_solution + suffix is the HumanEval "
        f"problem exactly in {whole}, up to newlines at its ends in {ends}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path, required=True, help="folder of the files")
    parser.add_argument("--show", type=int, default=3, help="differences shown per field")
    args = parser.parse_args()
    results = [compare(benchmark, args.official, args.show) for benchmark in DERIVED]
    for benchmark in DRAWN:
        check_drawn(benchmark, args.official)
    raise SystemExit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
