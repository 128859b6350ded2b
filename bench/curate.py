"""Curate throughput on the standard library, against a plain read of the same files.

    python bench/curate.py [--repeat 3] [--workers 1 2] [--set near_dedup=false ...]

Prints MB/s for a plain read (open + read of every file the stdlib source lists, the floor any
curation pays) and for `curate` with each worker count, and the ratio of each to the plain
read. The page cache is warmed first so every run reads from memory. Best of --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from codekiln.curate.config import CurateConfig
from codekiln.curate.pipeline import curate
from codekiln.curate.sources import plan_tasks, stdlib_source


def plain_read(paths: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    total = 0
    for path in paths:
        with open(path, "rb") as handle:
            total += len(handle.read())
    return time.perf_counter() - started, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--set", action="append", default=[], help="a curate setting, e.g. near_dedup=false"
    )
    args = parser.parse_args()

    source = stdlib_source()
    config = CurateConfig.load(sets=args.set)
    tasks = plan_tasks([source], config)
    paths = [e.ref for t in tasks for e in t.entries if e.state == "file"]
    plain_read(paths)  # warm the page cache
    read_s, read_bytes = min(plain_read(paths) for _ in range(args.repeat))
    figures = {
        "corpus": source.path,
        "files": len(paths),
        "bytes": read_bytes,
        "cpus": os.cpu_count(),
        "plain_read_mb_s": read_bytes / read_s / 1e6,
    }
    print(f"stdlib: {len(paths):,} files, {read_bytes / 1e6:,.1f} MB at {source.path}")
    print(f"plain read          {read_s:7.3f} s  {figures['plain_read_mb_s']:8.1f} MB/s  1.00x")
    for workers in args.workers:
        best = float("inf")
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                result = curate(
                    [source], Path(tmp) / "out", config, workers=workers, progress=False
                )
                best = min(best, time.perf_counter() - started)
        bytes_in = result.report["totals"]["bytes_in"]
        rate = bytes_in / best / 1e6
        ratio = rate / figures["plain_read_mb_s"]
        figures[f"curate_{workers}w_mb_s"] = rate
        figures[f"curate_{workers}w_ratio_to_read"] = ratio
        print(f"curate, {workers} worker(s) {best:7.3f} s  {rate:8.1f} MB/s  {ratio:.3f}x of read")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
