"""Attribution index on the Python standard library: size, build time, query speed, false hits.

    python bench/attribution.py [--data CURATED] [--workers 2] [--held-out 0.02]
                                [--width 50] [--stride 50] [--fpr 0.001] [--whitespace remove]
                                [--queries 200] [--fresh-kb 2000] [--seed 0] [--json FIGURES]

The corpus is every .py file of the running Python's standard library (no site-packages, no
__pycache__), read directly into Parquet shards with the curated columns the index reads
(`id`, `content`, `repo` = "cpython-stdlib", `path`, `license` = "PSF-2.0"), 200 files per
row group: not through `codekiln curate`, which takes a minute more and would drop the
files its filters and dedup reject. --data indexes a curated folder instead. A seeded
--held-out share of the files is left out of the index, to be queried as unseen code.

Prints and, with --json, writes:

- build: seconds for `build_index` with --workers processes; corpus and index sizes, the Bloom
  filter alone as a fraction of the corpus (Data Portraits report about 3%) and the whole
  index (Bloom filter + source table + document table);
- query speed in ms per KB of document, `AttributionIndex.query` with sources, on --queries
  windows of 1-4 KB cut from indexed files ("training") and from held-out files;
- coverage: the share of characters of those windows inside a reported span. Training text
  is covered except near window edges (a span needs a whole stored gram); held-out stdlib
  code shares licence headers and copied idioms with the rest, so some of it is found too;
- false positives: the share of grams of --fresh-kb KB of fresh code-like text (random
  identifiers, numbers and operators in Python-shaped lines, text no corpus holds) that the
  Bloom filter alone reports, against the configured rate and the filter's expected rate;
  and the share still reported once the source table verifies them (the default query).
"""

from __future__ import annotations

import argparse
import json
import random
import sysconfig
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from codekiln.attribution import AttributionConfig, AttributionIndex, build_index
from codekiln.shards import curated_shards

ROWS_PER_GROUP = 200
KEYWORDS = "def return if else for in while import from class with as try except not and or"


def stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(
        p
        for p in root.rglob("*.py")
        if "site-packages" not in p.parts and "__pycache__" not in p.parts and p.is_file()
    )


def write_corpus(files: list[Path], out_dir: Path) -> None:
    root = Path(sysconfig.get_paths()["stdlib"])
    records = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        rel = str(path.relative_to(root))
        records.append(
            {
                "id": rel,
                "content": text,
                "repo": "cpython-stdlib",
                "path": rel,
                "license": "PSF-2.0",
            }
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pylist(records), out_dir / "part-00000.parquet", row_group_size=ROWS_PER_GROUP
    )


def read_texts(data: Path) -> list[str]:
    texts: list[str] = []
    for path in curated_shards(data):
        texts += [t for t in pq.read_table(path, columns=["content"])["content"].to_pylist() if t]
    return texts


def windows(texts: list[str], count: int, rng: random.Random) -> list[str]:
    """`count` windows of 1-4 KB cut from random texts (whole texts when shorter)."""
    out = []
    candidates = [t for t in texts if len(t) >= 200]
    for _ in range(count):
        text = rng.choice(candidates)
        size = rng.randint(1000, 4000)
        start = rng.randint(0, max(len(text) - size, 0))
        out.append(text[start : start + size])
    return out


def fresh_code(kb: int, rng: random.Random) -> str:
    """Code-shaped text that no corpus holds: random identifiers, literals and operators."""
    keywords = KEYWORDS.split()
    lines, size = [], 0
    while size < kb * 1000:
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(3, 9)))
        words = [
            rng.choice(keywords),
            name,
            rng.choice(["=", "+=", "==", "(", ".", "["]),
            str(rng.randint(0, 99999)),
            rng.choice([")", "]", ":", ",", " + 1"]),
        ]
        line = "    " * rng.randint(0, 3) + " ".join(words)
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def time_queries(index: AttributionIndex, docs: list[str]) -> tuple[float, float]:
    """(ms per KB, share of characters covered by spans) over `docs`."""
    covered = 0
    started = time.perf_counter()
    for doc in docs:
        covered += sum(span.end - span.start for span in index.query(doc))
    seconds = time.perf_counter() - started
    chars = sum(len(d) for d in docs)
    return seconds * 1e3 / (chars / 1000), covered / chars


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a curated folder (default: the stdlib)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--held-out", type=float, default=0.02, help="share of stdlib files")
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--stride", type=int, default=50)
    parser.add_argument("--fpr", type=float, default=0.001)
    parser.add_argument("--whitespace", default="remove", choices=("remove", "collapse", "keep"))
    parser.add_argument("--queries", type=int, default=200, help="windows per query set")
    parser.add_argument("--fresh-kb", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    config = AttributionConfig(
        width=args.width,
        stride=args.stride,
        false_positive_rate=args.fpr,
        whitespace=args.whitespace,
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        held_out: list[str] = []
        if data is None:
            files = stdlib_files()
            rng.shuffle(files)
            cut = int(len(files) * args.held_out)
            held_out = [p.read_text(encoding="utf-8", errors="replace") for p in files[:cut]]
            data = Path(tmp) / "data"
            write_corpus(sorted(files[cut:]), data)
        started = time.perf_counter()
        result = build_index(data, Path(tmp) / "index", config, args.workers, progress=False)
        build_s = time.perf_counter() - started
        index = AttributionIndex.open(result.out_dir)

        training = windows(read_texts(data), args.queries, rng)
        held = windows(held_out, args.queries, rng) if held_out else []
        train_ms, train_cover = time_queries(index, training)
        held_ms, held_cover = time_queries(index, held) if held else (float("nan"),) * 2
        fresh = fresh_code(args.fresh_kb, rng)
        started = time.perf_counter()
        bloom_hits = index.gram_hits(fresh, verify=False)
        fresh_ms = (time.perf_counter() - started) * 1e3 / (len(fresh) / 1000)
        verified_hits = index.gram_hits(fresh, verify=True)

    counts, sizes, bloom = result.counts, result.sizes, result.manifest["bloom"]
    figures = {
        "config": config.to_dict(),
        "workers": args.workers,
        "documents": counts["documents"],
        "held_out_documents": len(held_out),
        "corpus_bytes": sizes["corpus_bytes"],
        "normalised_characters": counts["normalised_characters"],
        "grams": counts["grams"],
        "distinct_grams": counts["distinct_grams"],
        "bloom_bytes": sizes["bloom_bytes"],
        "bloom_hashes": bloom["hashes"],
        "index_bytes": sizes["index_bytes"],
        "index_files": result.manifest["outputs"],
        "bloom_fraction": sizes["bloom_fraction"],
        "index_fraction": sizes["index_fraction"],
        "build_s": build_s,
        "build_mb_per_s": sizes["corpus_bytes"] / 1e6 / build_s,
        "query_ms_per_kb_training": train_ms,
        "query_ms_per_kb_held_out": held_ms,
        "bloom_ms_per_kb_fresh": fresh_ms,
        "covered_training": train_cover,
        "covered_held_out": held_cover,
        "fresh_grams": int(len(bloom_hits)),
        "false_positive_rate_bloom": float(bloom_hits.mean()),
        "false_positive_rate_expected": bloom["expected_false_positive_rate"],
        "false_positive_rate_verified": float(verified_hits.mean()),
    }

    mb = sizes["corpus_bytes"] / 1e6
    print(
        f"corpus: {counts['documents']:,} files, {mb:.1f} MB ({len(held_out)} held out); "
        f"{counts['distinct_grams']:,} distinct grams of {args.width} characters, stride "
        f"{args.stride}, whitespace {args.whitespace}"
    )
    print(
        f"build: {build_s:.1f} s with {args.workers} workers ({figures['build_mb_per_s']:.1f} "
        f"MB/s); Bloom filter {sizes['bloom_bytes'] / 1e6:.2f} MB = "
        f"{sizes['bloom_fraction']:.1%} of the corpus (k = {bloom['hashes']}); whole index "
        f"{sizes['index_bytes'] / 1e6:.2f} MB = {sizes['index_fraction']:.1%}"
    )
    print(f"{'query':<34}{'ms/KB':>8}{'covered':>10}")
    print(f"{'training windows (with sources)':<34}{train_ms:>8.3f}{train_cover:>10.1%}")
    print(f"{'held-out windows (with sources)':<34}{held_ms:>8.3f}{held_cover:>10.1%}")
    print(f"{'fresh text, Bloom filter only':<34}{fresh_ms:>8.3f}")
    print(
        f"false positives per gram on {len(bloom_hits):,} fresh grams: Bloom filter "
        f"{figures['false_positive_rate_bloom']:.5f} (configured {args.fpr}, expected "
        f"{figures['false_positive_rate_expected']:.5f}); verified by the source table "
        f"{figures['false_positive_rate_verified']:.5f}"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
