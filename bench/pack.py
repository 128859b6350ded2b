"""Pack throughput on the curated standard library, against `tokenizers`' own encode_batch.

    python bench/pack.py [--workers 2] [--repeat 3] [--vocab-size 49152] [--variants]
                         [--data CURATED] [--tokenizer DIR] [--json FIGURES]

Prints tokens, seconds and tokens/s for:

- `pack(..., workers=W)`: the whole call (hashing the inputs, the split pass, reading Parquet,
  encoding the metadata prefixes and contents, writing .bin/.idx/meta/manifest);
- the reference, `Tokenizer.encode_batch` on the records' contents only (no prefixes: those
  are pack's extra work), already in memory, with the same tokenizer and special-token
  matching off, on a Rayon pool of W threads (RAYON_NUM_THREADS=W): the same cores;
- the same with `encode_batch_fast` (no offsets), the fastest call `tokenizers` has;
- with --variants, two things pack does differently, undone: `pack_rayon_in_workers` leaves
  each worker's tokenizer on its own Rayon pool (one thread per core, `tokenizers`' default:
  W x cores threads); `pack_main_thread` encodes on each worker's main thread.

Every run is a fresh process (Rayon's pool is fixed at first use, and a process that forked
after using it could deadlock), the kinds take turns, and the best of --repeat runs counts.
CPU seconds (user + sys, workers included) and the cpu/wall ratio show how many cores a run
kept busy. The corpus is curated once into --out/curated; the tokenizer (49,152 tokens, as
StarCoder's) is trained once into --out/tokenizer-V, with `codekiln tokenizer train` when it
exists, else with `tokenizers` directly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent
KINDS = ("pack", "encode_batch", "encode_batch_fast")
VARIANTS = ("pack_rayon_in_workers", "pack_main_thread")


def curated_stdlib(out: Path) -> Path:
    from codekiln.curate.pipeline import curate
    from codekiln.curate.sources import stdlib_source

    target = out / "curated"
    curate([stdlib_source()], target, workers=os.cpu_count() or 1, progress=False)
    return target


def trained_tokenizer(data: Path, out: Path, vocab_size: int) -> Path:
    """A tokenizer folder for `data`, trained once and cached."""
    target = out / f"tokenizer-{vocab_size}"
    from codekiln.tokenizer.train import TokenizerConfig, train_tokenizer

    train_tokenizer(data, target, TokenizerConfig(vocab_size=vocab_size))
    return target


def contents(data: Path) -> list[str]:
    texts = []
    for path in sorted(data.glob("part-*.parquet")):
        texts += [t for t in pq.read_table(path, columns=["content"])["content"].to_pylist() if t]
    return texts


def cpu_seconds() -> float:
    """User + sys time of this process and its finished children (pack's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def run_one(kind: str, data: Path, tokenizer_dir: Path, workers: int) -> dict:
    """One measurement, in this (fresh) process."""
    if kind.startswith("pack"):
        import codekiln.pack.encode as encode_module
        import codekiln.pack.pack as pack_module

        # Workers fork with these in place.
        if kind == "pack_rayon_in_workers":
            encode_module._serial_tokenizers = contextlib.nullcontext
        if kind == "pack_main_thread":
            encode_module._on_own_thread = lambda fn, *args, **kwargs: fn(*args, **kwargs)
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = time.perf_counter(), cpu_seconds()
            result = pack_module.pack(
                data, tokenizer_dir, Path(tmp) / "out", workers=workers, progress=False
            )
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            timings = json.loads((Path(tmp) / "out" / "manifest.json").read_text())["timings"]
        tokens = sum(s["tokens"] for s in result.meta["splits"].values())
        return {"tokens": tokens, "wall_s": wall, "cpu_s": cpu, "encode_s": timings["encode_s"]}
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    tokenizer.encode_special_tokens = True  # as pack encodes: special-token text is text
    texts = contents(data)
    encode = getattr(tokenizer, kind)
    before = threads()
    wall, cpu = time.perf_counter(), cpu_seconds()
    encodings = encode(texts, add_special_tokens=False)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    tokens = sum(len(e) for e in encodings)
    return {"tokens": tokens, "wall_s": wall, "cpu_s": cpu, "new_threads": threads() - before}


def measure(kind: str, data: Path, tokenizer_dir: Path, workers: int) -> dict:
    env = dict(os.environ)
    if not kind.startswith("pack"):
        # The reference may use exactly the cores pack's workers use.
        env.update(RAYON_NUM_THREADS=str(workers), TOKENIZERS_PARALLELISM="true")
    else:
        env.pop("RAYON_NUM_THREADS", None)
        env.pop("TOKENIZERS_PARALLELISM", None)
    command = [sys.executable, __file__, "--one", kind, "--data", str(data)]
    command += ["--tokenizer", str(tokenizer_dir), "--workers", str(workers)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{kind} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=49152)
    parser.add_argument("--data", type=Path, help="curated shards (default: the stdlib)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "pack")
    parser.add_argument("--variants", action="store_true", help="also " + ", ".join(VARIANTS))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--one", choices=KINDS + VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", type=Path, help="a tokenizer folder (default: train one)")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.data, args.tokenizer, args.workers)))
        return

    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data or curated_stdlib(args.out)
    tokenizer_dir = args.tokenizer or trained_tokenizer(data, args.out, args.vocab_size)
    kinds = list(KINDS) + (list(VARIANTS) if args.variants else [])
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for _ in range(args.repeat):
        for kind in kinds:  # taking turns: a busy spell on the machine hits every kind
            runs[kind].append(measure(kind, data, tokenizer_dir, args.workers))
    best = {kind: min(results, key=lambda r: r["wall_s"]) for kind, results in runs.items()}
    size = sum(p.stat().st_size for p in data.glob("part-*.parquet"))
    print(
        f"corpus: {data} ({size / 1e6:,.1f} MB of Parquet); tokenizer: {tokenizer_dir}; "
        f"{args.workers} worker(s) / Rayon threads; {os.cpu_count()} CPUs; "
        f"best of {args.repeat}"
    )
    figures: dict = {"workers": args.workers, "cpus": os.cpu_count(), "repeat": args.repeat}
    reference = best["encode_batch"]
    for kind, result in best.items():
        rate = result["tokens"] / result["wall_s"]
        ratio = rate / (reference["tokens"] / reference["wall_s"])
        busy = result["cpu_s"] / result["wall_s"]
        extra = f"  +{result['new_threads']} threads" if "new_threads" in result else ""
        print(
            f"{kind:22s} {result['tokens']:>11,} tokens {result['wall_s']:7.2f} s "
            f"{rate:>11,.0f} tokens/s  {ratio:5.2f}x of encode_batch  "
            f"cpu {result['cpu_s']:6.2f} s ({busy:.2f} cores){extra}"
        )
        figures[kind] = {**result, "tokens_per_s": rate, "ratio_to_encode_batch": ratio}
        figures[kind]["all_wall_s"] = [r["wall_s"] for r in runs[kind]]
    fast = best["encode_batch_fast"]
    ratio_fast = (best["pack"]["tokens"] / best["pack"]["wall_s"]) / (
        fast["tokens"] / fast["wall_s"]
    )
    figures["pack_ratio_to_encode_batch_fast"] = ratio_fast
    print(f"pack / encode_batch_fast: {ratio_fast:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
