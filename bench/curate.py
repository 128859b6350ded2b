"""Curate throughput on the standard library, against a plain read and, optionally, other code.

    python bench/curate.py [--repeat 3] [--workers 1 2] [--set near_dedup=false ...]
                           [--baseline-src DIR] [--baseline-json FILE] [--profile]

Prints MB/s for a plain read (open + read of every file the stdlib source lists, the floor any
curation pays) and for `curate` with each worker count, with its ratio to the plain read, the
time of each step (the manifest's timings: plan, process, exact_dedup, near_dedup, write; the
rest is the report) and the step that dominates. The page cache is warmed first. Every curate
run is a fresh process, timed from inside, so each pays what a `codekiln curate` command pays
(imports aside); best of --repeat runs. Each run also counts the CPU seconds of its process and
its workers: bytes per CPU second is the per-worker throughput, which holds still on a machine
that other jobs share, where wall times do not.

--baseline-src DIR runs the same curate with the codekiln package of another checkout (e.g.
`git worktree add /tmp/main main`), alternating with this one in the same repeats, and prints
this tree's speed-up over it: the comparison to trust on a shared, noisy machine.
--baseline-json FILE compares with the figures of an earlier run (its --json output) instead,
which only means something on the same idle machine. --profile runs one single-worker curate
under cProfile and prints the share of the heavy parts of each step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("plan_s", "process_s", "exact_dedup_s", "near_dedup_s", "write_s")
# (label, function name as cProfile reports it): the parts that --profile reports.
PROFILED = (
    ("examine (process step, in all)", "examine"),
    ("  pii redaction", "redact_pii"),
    ("  decontamination", "find"),
    ("  quality filters", "_content_reason"),
    ("  language detection", "detect_language"),
    ("  license header", "spdx_header"),
    ("  license notice", "header_notice"),
    ("  read files", "read_task"),
    ("  write task files", "_write_parquet"),
    ("near-dup signatures", "signature_task"),
    ("  shingles", "shingle_set"),
    ("  minhash", "min_hashes"),
    ("  band hashes", "band_hashes"),
    ("near-dup buckets", "bucket_task"),
    ("exact dedup", "exact_duplicate_table"),
    ("write outputs", "_write_outputs"),
    ("report", "build_report"),
)


def plain_read(paths: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    total = 0
    for path in paths:
        with open(path, "rb") as handle:
            total += len(handle.read())
    return time.perf_counter() - started, total


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_once(workers: int, sets: list[str], profile: str | None = None) -> dict:
    """One curate of the stdlib in this process: wall and CPU seconds, bytes in, step timings."""
    from codekiln.curate.config import CurateConfig
    from codekiln.curate.pipeline import curate
    from codekiln.curate.sources import stdlib_source

    config = CurateConfig.load(sets=sets)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile(time.process_time)  # CPU time: steady under load
            profiler.enable()
        started, cpu = time.perf_counter(), cpu_seconds()
        result = curate([stdlib_source()], out, config, workers=workers, progress=False)
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        timings = json.loads((out / "manifest.json").read_text())["timings"]
    bytes_in = result.report["totals"]["bytes_in"]
    return {"seconds": seconds, "cpu_s": cpu, "bytes_in": bytes_in, "steps": timings}


def run_in(tree: Path, workers: int, sets: list[str]) -> dict:
    """`run_once` in a fresh interpreter that imports codekiln from `tree`."""
    command = [sys.executable, __file__, "--one", str(workers)]
    for setting in sets:
        command += ["--set", setting]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"curate with the code in {tree} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _steps(steps: dict[str, float]) -> str:
    return "  ".join(f"{k.removesuffix('_s')} {steps[k]:.2f}" for k in STEPS if k in steps)


def dominant(steps: dict[str, float], total: float) -> tuple[str, float]:
    """The step that took longest (the remainder is `report`), and its share of the total."""
    parts = {k.removesuffix("_s"): v for k, v in steps.items() if k in STEPS}
    parts["report"] = max(0.0, total - sum(parts.values()))
    name = max(parts, key=parts.__getitem__)
    return name, parts[name] / total


def print_profile(path: str) -> dict[str, float]:
    import pstats

    stats = pstats.Stats(path).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    total = max(ct for _, _, _, ct, _ in stats.values())
    shares = {}
    print(f"profile of one single-worker run ({total:.2f} CPU-s under cProfile):")
    for label, name in PROFILED:
        files = ("decontam.py",) if name == "find" else ()
        ct = sum(
            v[3]
            for (file, _, fn), v in stats.items()
            if fn == name and "codekiln" in file and (not files or file.endswith(files))
        )
        shares[label.strip()] = ct / total
        print(f"  {label:32s} {ct:7.2f} s  {ct / total:6.1%}")
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--set", action="append", default=[], help="a curate setting, e.g. near_dedup=false"
    )
    parser.add_argument("--baseline-src", type=Path, help="a checkout to compare with")
    parser.add_argument("--baseline-json", type=Path, help="figures of an earlier run")
    parser.add_argument("--profile", action="store_true", help="print each part's share")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # a child run: one curate with the codekiln on PYTHONPATH
        print(json.dumps(run_once(args.one, args.set)))
        return
    sys.path.insert(0, str(ROOT))  # measure this tree's codekiln, whatever is installed

    from codekiln.curate.config import CurateConfig
    from codekiln.curate.sources import plan_tasks, stdlib_source

    source = stdlib_source()
    tasks = plan_tasks([source], CurateConfig.load(sets=args.set))
    paths = [e.ref for t in tasks for e in t.entries if e.state == "file"]
    plain_read(paths)  # warm the page cache
    read_s, read_bytes = min(plain_read(paths) for _ in range(args.repeat))
    figures: dict = {
        "corpus": source.path,
        "files": len(paths),
        "bytes": read_bytes,
        "cpus": os.cpu_count(),
        "plain_read_mb_s": read_bytes / read_s / 1e6,
    }
    baseline = json.loads(args.baseline_json.read_text()) if args.baseline_json else None
    print(f"stdlib: {len(paths):,} files, {read_bytes / 1e6:,.1f} MB at {source.path}")
    print(f"plain read          {read_s:7.3f} s  {figures['plain_read_mb_s']:8.1f} MB/s  1.00x")
    trees = {"this": ROOT}
    if args.baseline_src:
        trees["baseline"] = args.baseline_src.resolve()
    for workers in args.workers:
        best: dict[str, dict] = {}
        least_cpu: dict[str, float] = {}
        for _ in range(args.repeat):
            for name, tree in trees.items():  # alternated, so both see the same load
                run = run_in(tree, workers, args.set)
                if name not in best or run["seconds"] < best[name]["seconds"]:
                    best[name] = run
                least_cpu[name] = min(least_cpu.get(name, run["cpu_s"]), run["cpu_s"])
        run = best["this"]
        rate = run["bytes_in"] / run["seconds"] / 1e6
        per_cpu = run["bytes_in"] / least_cpu["this"] / 1e6
        ratio = rate / figures["plain_read_mb_s"]
        step, share = dominant(run["steps"], run["seconds"])
        key = f"curate_{workers}w"
        figures[f"{key}_mb_s"] = rate
        figures[f"{key}_mb_per_cpu_s"] = per_cpu
        figures[f"{key}_ratio_to_read"] = ratio
        figures[f"{key}_steps"] = run["steps"]
        figures[f"{key}_dominant"] = step
        print(
            f"curate, {workers} worker(s) {run['seconds']:7.3f} s  {rate:8.1f} MB/s  "
            f"{ratio:.3f}x of read;  {per_cpu:.1f} MB per CPU-second"
        )
        print(f"    steps (s): {_steps(run['steps'])}; {step} dominates ({share:.0%})")
        if "baseline" in best:
            base = best["baseline"]
            base_rate = base["bytes_in"] / base["seconds"] / 1e6
            base_per_cpu = base["bytes_in"] / least_cpu["baseline"] / 1e6
            figures[f"baseline_{workers}w_mb_s"] = base_rate
            figures[f"baseline_{workers}w_mb_per_cpu_s"] = base_per_cpu
            figures[f"{key}_speedup"] = base["seconds"] / run["seconds"]
            figures[f"{key}_cpu_speedup"] = per_cpu / base_per_cpu
            print(
                f"    baseline {base['seconds']:7.3f} s  {base_rate:8.1f} MB/s;  "
                f"{base_per_cpu:.1f} MB per CPU-second\n"
                f"    baseline steps (s): {_steps(base['steps'])}\n"
                f"    this tree / baseline (same run): {figures[f'{key}_speedup']:.2f}x wall, "
                f"{figures[f'{key}_cpu_speedup']:.2f}x per CPU-second"
            )
        if baseline and f"{key}_mb_s" in baseline:
            figures[f"{key}_vs_baseline_json"] = rate / baseline[f"{key}_mb_s"]
            print(
                f"    {figures[f'{key}_vs_baseline_json']:.2f}x the {baseline[f'{key}_mb_s']:.1f}"
                f" MB/s of {args.baseline_json} (another run: compare on an idle machine)"
            )
    one, two = figures.get("curate_1w_mb_s"), figures.get("curate_2w_mb_s")
    if one and two:
        figures["scaling_2w_over_1w"] = two / one
        print(f"2 workers vs 1: {two / one:.2f}x")
    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            stats = str(Path(tmp) / "curate.prof")
            run_once(1, args.set, profile=stats)
            figures["profile_shares"] = print_profile(stats)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
