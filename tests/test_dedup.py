"""Deduplication at scale and its quality rules: exact dedup over hash-partitioned files,
near-dedup windows, license headers left out of shingles, and which copy survives."""

import hashlib
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codekiln.curate.config import CurateConfig
from codekiln.curate.exactdup import exact_duplicates
from codekiln.curate.examine import path_tier, survivor_rank
from codekiln.curate.neardup import (
    BucketTask,
    MinHash,
    bucket_task,
    near_duplicates,
    shingle_hashes,
    strip_leading_header,
)
from codekiln.curate.pipeline import curate
from codekiln.curate.sources import resolve_sources
from codekiln.executor import LocalExecutor

APACHE = """\
Copyright 2024 The Example Authors. All rights reserved.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
"""


def commented(text: str, marker: str) -> str:
    return "".join(f"{marker} {line}".rstrip() + "\n" for line in text.splitlines())


def jaccard(a: str, b: str) -> float:
    x, y = set(shingle_hashes(a).tolist()), set(shingle_hashes(b).tolist())
    return len(x & y) / len(x | y)


SMALL_A = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
SMALL_B = "class Stack:\n    def __init__(self):\n        self.items = []\n"


@pytest.mark.parametrize(
    ("header", "body"),
    [
        (commented(APACHE, "#"), SMALL_A),
        ("#!/usr/bin/env python\n" + commented(APACHE, "#") + "\n", SMALL_A),
        ("/*\n" + commented(APACHE, " *") + " */\n", "int add(int a, int b) { return a + b; }\n"),
        (commented(APACHE, "//"), "package add\n\nfunc Add(a, b int) int { return a + b }\n"),
        (commented(APACHE, "--"), "SELECT name FROM users WHERE id = 1;\n"),
        (commented(APACHE, ";;"), "(defun add (a b) (+ a b))\n"),
        ("<!--\n" + APACHE + "-->\n", "<p>Hello, world</p>\n"),
        ('"""\n' + APACHE + '"""\n', SMALL_A),
        ("// SPDX-License-Identifier: MIT\n\n// Copyright (c) Ann\n\n", "fn main() {}\n"),
    ],
)
def test_strip_leading_header_syntaxes(header, body):
    assert strip_leading_header(header + body) == body


def test_strip_leading_header_keeps_what_is_not_a_notice():
    docs = "# Helpers for reading files.\n# See read() below.\n\nimport os\n"
    assert strip_leading_header(docs) == docs
    # A module docstring after the notice is documentation: it stays.
    text = commented(APACHE, "#") + '"""Adds numbers."""\n' + SMALL_A
    assert strip_leading_header(text) == '"""Adds numbers."""\n' + SMALL_A
    # Nothing but a notice: the text is kept whole (it is its own content).
    only = commented(APACHE, "#")
    assert strip_leading_header(only) == only
    # Preprocessor lines and an unterminated comment are code or unknown: no cut past them.
    c = "#include <stdio.h>\n// Copyright 2024 Ann\nint x;\n"
    assert strip_leading_header(c) == c
    open_comment = "/* Copyright 2024 Ann\nint x;\n"
    assert strip_leading_header(open_comment) == open_comment
    # Code first: a notice further down is not a header.
    late = "import os\n# Copyright 2024 Ann\n"
    assert strip_leading_header(late) == late
    # A header that does not end in the scanned part is left alone.
    huge = commented(APACHE, "#") * 40 + SMALL_A
    assert strip_leading_header(huge) == huge


def near_pair_run(tmp_path: Path, rows: list[dict]) -> dict:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with LocalExecutor(1) as executor:
        return near_duplicates([path], tmp_path / "work", MinHash(), executor).duplicates


def test_small_files_sharing_a_header_are_not_near_duplicates(tmp_path):
    header = commented(APACHE, "#")
    a, b = header + SMALL_A, header + SMALL_B
    assert jaccard(a, b) > 0.6  # what shingling the whole files saw
    # Equal but for their notices: still duplicates.
    c = commented(APACHE.replace("2024", "2019").replace("Example", "Other"), "#") + SMALL_A
    rows = [
        {"id": "a", "content": a, "rank": "1"},
        {"id": "b", "content": b, "rank": "2"},
        {"id": "c", "content": c, "rank": "0"},
    ]
    assert near_pair_run(tmp_path, rows) == {"a": ("a", "c")}


def test_path_tiers():
    assert path_tier("lib/zlib.c") == path_tier("zlib.c") == 0
    assert path_tier("examples/zlib.c") == path_tier("docs/samples/z.c") == 1
    assert path_tier("tests/zlib.c") == 1
    assert path_tier("contrib/minizip/zlib.c") == path_tier("third_party/z/z.c") == 2
    assert path_tier("vendor/z.c") == path_tier("src/External/z.c") == 2
    assert path_tier("contrib.c") == path_tier("src/tests.py") == 0  # file names do not count
    ranks = [
        survivor_rank(True, 0, "a/z", "contrib/zlib.c", "1"),
        survivor_rank(True, 0, "a/z", "examples/zlib.c", "2"),
        survivor_rank(True, 0, "a/z", "zlib.c", "3"),
        survivor_rank(False, 10**6, "a/a", "zlib.c", "4"),
    ]
    # License first, then the path tier, then stars.
    assert sorted(ranks) == [ranks[2], ranks[1], ranks[0], ranks[3]]


def test_core_file_survives_its_contrib_copies(tmp_path):
    rng = random.Random(5)
    words = [f"name{rng.randrange(10**6)}" for _ in range(400)]
    code = "".join(f"{w} = {w}_value + 1\n" for w in words)
    near = code.replace(words[7], "changed", 1)
    root = tmp_path / "repo"
    for rel, text in {
        "contrib/exact/core.py": code,  # sorts before "src/..."
        "src/core.py": code,
        "contrib/near/core.py": near,
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    out = tmp_path / "out"
    config = CurateConfig.load(sets=["licenses=any", "tasks.files=1"])
    pool = pa.default_memory_pool().backend_name
    curate(resolve_sources([str(root)]), out, config, workers=2, progress=False)
    # Curating leaves Arrow's default allocator as it found it.
    assert pa.default_memory_pool().backend_name == pool
    ledger = pq.read_table(out / "ledger").to_pylist()
    rows = {r["path"]: r for r in ledger}
    core = rows["src/core.py"]
    assert core["status"] == "kept"
    assert rows["contrib/exact/core.py"]["reason"] == "exact_duplicate"
    assert rows["contrib/near/core.py"]["reason"] == "near_duplicate"
    assert rows["contrib/exact/core.py"]["duplicate_of"] == core["id"]
    assert rows["contrib/near/core.py"]["duplicate_of"] == core["id"]


def candidate_files(tmp_path: Path, files: int = 4) -> tuple[list[Path], dict[str, str]]:
    """Candidate-like files with planted groups of equal content, and the expected result
    worked out with a plain dict: the smallest (rank, id) of each group survives."""
    rng = random.Random(3)
    rows = []
    for group in range(300):
        digest = hashlib.sha256(f"content {group}".encode()).hexdigest()
        for copy in range(rng.choice([1, 1, 2, 3, 5])):
            rank = rng.choice(["0", "1", "2"]) + f"{rng.randrange(100):03d}"
            rows.append({"id": f"g{group}-{copy}", "dedup_hash": digest, "rank": rank})
    rng.shuffle(rows)
    paths = []
    for k in range(files):
        path = tmp_path / f"cand-{k}.parquet"
        pq.write_table(pa.Table.from_pylist(rows[k::files]), path, row_group_size=50)
        paths.append(path)
    best: dict[str, tuple[str, str]] = {}
    for r in rows:
        key = r["dedup_hash"]
        best[key] = min(best.get(key, (r["rank"], r["id"])), (r["rank"], r["id"]))
    expected = {
        r["id"]: best[r["dedup_hash"]][1] for r in rows if r["id"] != best[r["dedup_hash"]][1]
    }
    return paths, expected


def test_exact_duplicates_do_not_depend_on_partitions_windows_or_workers(tmp_path):
    paths, expected = candidate_files(tmp_path)
    assert len(expected) > 100
    results = []
    for workers, partitions, window in ((1, None, 1 << 18), (2, 3, 7), (2, 1, 1), (1, 16, 40)):
        with LocalExecutor(workers) as executor:
            work = tmp_path / f"work-{workers}-{partitions}-{window}"
            results.append(exact_duplicates(paths, work, executor, partitions, window))
    assert all(r == expected for r in results)
    with LocalExecutor(1) as executor:  # no inputs, and empty inputs
        assert exact_duplicates([], tmp_path / "none", executor) == {}


def test_near_dedup_windows_give_the_same_edges(tmp_path):
    rng = random.Random(9)
    base = [f"t{rng.randrange(10**6)}" for _ in range(300)]
    rows = []
    for k in range(40):
        tokens = list(base) if k % 2 else [f"u{k}-{rng.randrange(10**6)}" for _ in range(300)]
        tokens[rng.randrange(300)] = f"edit{k}"
        rows.append({"id": f"d{k:02d}", "content": " ".join(tokens), "rank": f"{k:02d}"})
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with LocalExecutor(1) as executor:
        whole = near_duplicates([path], tmp_path / "a", MinHash(partitions=1), executor)
        split = near_duplicates([path], tmp_path / "b", MinHash(partitions=5), executor)
    assert whole == split and len(whole.duplicates) == 19
    # One partition read in windows of 10 rows gives the edges of one read in one window.
    edges = np.load(tmp_path / "a" / "edges" / "p000.npy")
    (tmp_path / "a" / "edges" / "p000.npy").unlink()
    assert bucket_task(BucketTask(0, 1, tmp_path / "a", window_rows=10)) == len(edges)
    assert np.array_equal(np.load(tmp_path / "a" / "edges" / "p000.npy"), edges)
