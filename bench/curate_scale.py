"""Curate at 1x, 4x and 16x the data: memory per process and time per byte should not grow.

    python bench/curate_scale.py [--base-mb 256] [--scales 1 4 16] [--workers 2] [--json F]

For each scale, generates a synthetic corpus of base-mb x scale MB (nothing is committed; the
files live in --dir, default a temporary folder, and are deleted after each scale): Parquet
shards in The Stack's layout (`content`, `repo`, `path`, `lang`, `license`, `stars`) of
code-like Python files of log-normal sizes, built from a pool of random lines, with planted
exact copies (--exact-rate of the files) and near copies (--near-rate: one line in ~30
rewritten, Jaccard ~0.8) of files written shortly before, in other repositories and with
fewer stars, so the original is the one that survives. Then runs `codekiln curate` on it in a
fresh process, so each figure is that run's own:

- peak resident memory (VmHWM, Linux) of the main process and of the largest worker process
  (the pool's worker processes, sampled every 20 ms; a worker's figure includes the pages it
  shares with the main process since the fork);
- seconds per MB of input, whole and per stage (the manifest's timings);
- planted duplicates found: the share of exact copies dropped as `exact_duplicate` and of near
  copies dropped as `near_duplicate` or `exact_duplicate`, and the originals dropped (false
  positives: expected 0).

Prints a table and the ratios of the largest scale to the smallest (goals: memory <= 1.2x,
time per byte <= 1.2x). Disk: the largest scale needs about 2.5x its size free in --dir.

The smallest scale should give every worker several tasks, or its figures are not yet the
steady state the larger ones reach: at the default task size (tasks.rows=4096, ~16 MB of these
files) a 16 MB base gives 2 workers one task each; pass `--set tasks.rows=512` with a base that
small. At the full size (256 MB to 4 GB) curate runs ~5.5 GB in all; at ~0.45 s/MB with 2
workers (2 cores) that is ~40 minutes, plus ~10 minutes of generating.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SHARD_MB = 64  # content bytes per generated Parquet shard
ROW_GROUP = 1024
RECENT = 4096  # files a planted copy may come from: the generator's memory stays bounded

_CHILD = r"""
import json, os, resource, sys, threading, time
from codekiln.curate.config import CurateConfig
from codekiln.curate.pipeline import curate
from codekiln.curate.sources import resolve_sources

def hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None

def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return None

def children(pid):
    # Pool workers are forks: they keep this process's command line (a `git` call does not).
    found, own = [], cmdline(pid)
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(c) for c in handle.read().split())
        except OSError:
            pass
    return [child for child in found if cmdline(child) == own]

peaks, done = {}, threading.Event()
def sample():
    # VmHWM only grows, so the last reading before a worker exits is its peak.
    while not done.wait(0.02):
        for pid in children(os.getpid()):
            value = hwm_kib(pid)
            if value is not None:
                peaks[pid] = max(peaks.get(pid, 0), value)

shards, out, workers, sets = json.loads(sys.argv[1])
config = CurateConfig.load(sets=sets)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
started = time.perf_counter()
result = curate(resolve_sources(shards), out, config, workers=workers, progress=False)
seconds = time.perf_counter() - started
done.set()
sampler.join()
main_kib = hwm_kib(os.getpid()) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
# One task runs in this process (no pool): then the main process is the worker.
worker_kib = max(peaks.values(), default=main_kib)
print(json.dumps({
    "seconds": seconds,
    "bytes_in": result.report["totals"]["bytes_in"],
    "main_rss_mb": main_kib / 1024,
    "worker_rss_mb": worker_kib / 1024,
    "worker_processes": len(peaks),
}))
"""


def line_pool(rng: np.random.Generator, size: int = 200_000) -> list[str]:
    """Code-like lines: assignments, calls and returns over a vocabulary of identifiers."""
    letters = rng.integers(0, 26, size=50_000)
    vocab = [f"{chr(97 + int(c))}{k}" for k, c in enumerate(letters)]
    names = rng.integers(0, len(vocab), size=(size, 4))
    kinds = rng.integers(0, 4, size=size).tolist()
    numbers = rng.integers(0, 1000, size=size).tolist()
    indents = rng.integers(0, 3, size=size).tolist()
    lines = []
    for k, (a, b, c, d) in enumerate(names.tolist()):
        a, b, c, d = vocab[a], vocab[b], vocab[c], vocab[d]
        pad = "    " * indents[k]
        kind = kinds[k]
        if kind == 0:
            lines.append(f"{pad}{a} = {b}({c}, {numbers[k]})\n")
        elif kind == 1:
            lines.append(f"{pad}if {a}.{b} > {c}:\n{pad}    return {d}\n")
        elif kind == 2:
            lines.append(f"{pad}def {a}_{b}(self, {c}={numbers[k]}):\n")
        else:
            lines.append(f"{pad}{a}[{b}] += {c} * {d}  # {numbers[k]}\n")
    return lines


def generate(directory: Path, total_bytes: int, exact_rate: float, near_rate: float, seed: int):
    """Write the shards; return their paths and the planted counts."""
    rng = np.random.default_rng(seed)
    # About as many pool lines as the corpus has lines, up to 200,000: unrelated files then
    # rarely share a line, let alone a run of them.
    pool = line_pool(rng, int(np.clip(total_bytes // 40, 20_000, 200_000)))
    recent: list[str] = []
    shards: list[Path] = []
    planted = {"exact": 0, "near": 0, "original": 0}
    written = 0
    rows: dict[str, list] = {k: [] for k in ("content", "repo", "path", "lang", "license", "stars")}
    shard_bytes = 0

    def flush() -> None:
        nonlocal shard_bytes
        if not rows["content"]:
            return
        path = directory / f"data-{len(shards):05d}.parquet"
        table = pa.table(
            {k: pa.array(v, pa.int64() if k == "stars" else pa.string()) for k, v in rows.items()}
        )
        pq.write_table(table, path, row_group_size=ROW_GROUP, compression="zstd")
        shards.append(path)
        for values in rows.values():
            values.clear()
        shard_bytes = 0

    index = 0
    while written < total_bytes:
        draw = rng.random()
        if recent and draw < exact_rate:
            kind, content = "exact", recent[int(rng.integers(len(recent)))]
        elif recent and draw < exact_rate + near_rate:
            kind = "near"
            lines = recent[int(rng.integers(len(recent)))].splitlines(keepends=True)
            for i in rng.choice(len(lines), size=max(1, len(lines) // 30), replace=False):
                lines[int(i)] = pool[int(rng.integers(len(pool)))]
            content = "".join(lines)
        else:
            kind = "original"
            count = int(np.clip(rng.lognormal(np.log(60), 0.9), 8, 3000))
            content = "".join([pool[i] for i in rng.integers(0, len(pool), size=count)])
            recent.append(content)
            if len(recent) > RECENT:
                recent.pop(int(rng.integers(len(recent))))
        planted[kind] += 1
        size = len(content.encode("utf-8"))
        rows["content"].append(content)
        rows["repo"].append(f"org{index % 997}/repo{index // 64}")
        # Copies sit under their kind's folder (the ledger names them); originals rank first.
        rows["path"].append(f"{kind}/pkg{index % 31}/mod_{index}.py")
        rows["lang"].append("Python")
        rows["license"].append("MIT")
        rows["stars"].append(10 if kind == "original" else 0)
        written += size
        shard_bytes += size
        index += 1
        if shard_bytes >= SHARD_MB * 1_000_000:
            flush()
    flush()
    return shards, planted


def found(out: Path) -> dict[str, float]:
    """Planted copies found, from the ledger: recall per kind and originals dropped."""
    ledger = pq.read_table(out / "ledger", columns=["path", "reason"])
    kinds = [p.split("/", 1)[0] for p in ledger.column("path").to_pylist()]
    counts: dict[str, dict[str, int]] = {}
    for kind, reason in zip(kinds, ledger.column("reason").to_pylist(), strict=True):
        slot = counts.setdefault(kind, {})
        slot[reason or "kept"] = slot.get(reason or "kept", 0) + 1
    exact, near, original = (
        counts.get("exact", {}),
        counts.get("near", {}),
        counts.get("original", {}),
    )
    dropped = original.get("exact_duplicate", 0) + original.get("near_duplicate", 0)
    return {
        "exact_recall": exact.get("exact_duplicate", 0) / max(1, sum(exact.values())),
        "near_recall": (near.get("near_duplicate", 0) + near.get("exact_duplicate", 0))
        / max(1, sum(near.values())),
        "originals_dropped": dropped / max(1, sum(original.values())),
        "original_reasons": original,
    }


def run_scale(args: argparse.Namespace, scale: float, root: Path) -> dict:
    work = root / f"x{scale:g}"
    shutil.rmtree(work, ignore_errors=True)
    corpus = work / "corpus"
    corpus.mkdir(parents=True)
    started = time.perf_counter()
    total = int(args.base_mb * scale * 1_000_000)
    shards, planted = generate(corpus, total, args.exact_rate, args.near_rate, args.seed)
    generate_s = time.perf_counter() - started
    out = work / "out"
    request = json.dumps([[str(s) for s in shards], str(out), args.workers, args.set])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, request], capture_output=True, text=True, env=env
    )
    if child.returncode != 0:
        raise SystemExit(f"curate failed at {scale:g}x:\n{child.stderr[-4000:]}")
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    manifest = json.loads((out / "manifest.json").read_text())
    mb = figures["bytes_in"] / 1e6
    figures.update(
        scale=scale,
        mb=mb,
        shards=len(shards),
        planted=planted,
        generate_s=generate_s,
        s_per_mb=figures["seconds"] / mb,
        stage_s_per_mb={k: v / mb for k, v in manifest["timings"].items()},
        **found(out),
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return figures


ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-mb", type=float, default=256.0, help="corpus size at 1x")
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 4, 16])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--exact-rate", type=float, default=0.1)
    parser.add_argument("--near-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, help="where corpora go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep each corpus and output")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--set", action="append", default=[], help="a curate setting, e.g. pii=false"
    )
    args = parser.parse_args()

    root = args.dir or Path(tempfile.mkdtemp(prefix="curate-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    need = args.base_mb * max(args.scales) * 2.5e6
    free = shutil.disk_usage(root).free
    if free < need:
        raise SystemExit(
            f"{root}: {free / 1e9:.1f} GB free, the largest scale needs ~{need / 1e9:.1f}"
        )
    print(
        f"curate at scales {' '.join(f'{s:g}x' for s in args.scales)} of {args.base_mb:g} MB, "
        f"{args.workers} worker(s), {os.cpu_count()} CPUs, planted {args.exact_rate:.0%} exact "
        f"and {args.near_rate:.0%} near copies"
    )
    header = (
        f"{'scale':>5} {'MB':>8} {'files':>9} {'s/MB':>7} {'main MB':>8} {'worker MB':>9} "
        f"{'exact':>6} {'near':>6} {'false':>6}  s/MB by stage"
    )
    print(header)
    results = []
    try:
        for scale in args.scales:
            r = run_scale(args, scale, root)
            results.append(r)
            files = sum(r["planted"].values())
            stages = " ".join(
                f"{k.removesuffix('_s')} {v:.3f}" for k, v in r["stage_s_per_mb"].items()
            )
            print(
                f"{scale:>4g}x {r['mb']:8.1f} {files:9,d} {r['s_per_mb']:7.3f} "
                f"{r['main_rss_mb']:8.0f} {r['worker_rss_mb']:9.0f} {r['exact_recall']:6.3f} "
                f"{r['near_recall']:6.3f} {r['originals_dropped']:6.4f}  {stages}",
                flush=True,
            )
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    first, last = results[0], results[-1]
    ratios = {
        "worker_rss": last["worker_rss_mb"] / first["worker_rss_mb"],
        "main_rss": last["main_rss_mb"] / first["main_rss_mb"],
        "s_per_mb": last["s_per_mb"] / first["s_per_mb"],
    }
    print(
        f"{last['scale']:g}x / {first['scale']:g}x: worker memory {ratios['worker_rss']:.2f}x, "
        f"main memory {ratios['main_rss']:.2f}x, time per byte {ratios['s_per_mb']:.2f}x "
        "(goals: <= 1.2x)"
    )
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "ratios": ratios}, indent=2) + "\n")


if __name__ == "__main__":
    main()
