"""Start-up memory at scale, on the CPU: today's start against the meta-device start.

    python bench/scale.py [--preset 1b] [--ranks 2] [--parallel fsdp] [--step] [--json FIGURES]

Two torchrun launches of `--ranks` gloo processes each, one after the other:

- "whole": the start codekiln had before the meta device: every rank builds and initialises
  the whole float32 model on the host, then FSDP2 shards it (the whole copy is freed).
- "meta": the start `codekiln train` makes now: every rank builds the model on the meta
  device, shards it, then allocates and fills only its own shards (train/materialise.py).

Each rank reports its peak resident memory (VmHWM) less its resident memory after imports
and joining the process group, from the start of set-up (build, parallelize, materialise,
the optimizer) to its end; with --step, through one optimizer step too (batch 1 x 128
tokens: AdamW's moments and the gradients add ~12 bytes a parameter / ranks to both, so it
needs ~10 GB a rank at 1b). Without --step the table says "set-up only". Also printed: the
CPU's vector and matrix features (AMX, AVX-512, AVX2), and the checkpoint save/load table
of the `small` preset under fsdp: the full state gathered on rank 0 against sharded
torch.distributed.checkpoint (`checkpoint_rows`, from bench/checkpoint.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB (VmRSS, VmHWM)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def cpu_features() -> str:
    """The CPU's model name and which of AMX, AVX-512 and AVX2 its flags list."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    wanted = [
        ("AMX-BF16", "amx_bf16"),
        ("AMX-INT8", "amx_int8"),
        ("AVX-512F", "avx512f"),
        ("AVX-512-BF16", "avx512_bf16"),
        ("AVX-512-VNNI", "avx512_vnni"),
        ("AVX-512-FP16", "avx512_fp16"),
        ("AVX2", "avx2"),
    ]
    present = [name for name, flag in wanted if flag in flags]
    return f"{model}, {os.cpu_count()} cores; " + (", ".join(present) or "no AVX2/AVX-512/AMX")


def worker(start: str, preset_name: str, parallel: str, step: bool, out: Path) -> None:
    """One rank: set up `preset_name` under `parallel` with the `start` ("whole" or "meta"),
    optionally one optimizer step, and write its memory figures to out/rank_N.json."""
    import torch

    from codekiln.model.config import num_parameters, preset
    from codekiln.model.gpt import CodeGPT
    from codekiln.train.config import TrainConfig
    from codekiln.train.materialise import SEED, materialise
    from codekiln.train.memory import reuse_freed_memory
    from codekiln.train.optim import build_optimizer
    from codekiln.train.parallel import all_gather_objects, init_distributed, parallelize
    from codekiln.train.step import optimizer_step

    torch.set_num_threads(1)
    distributed = init_distributed()
    reuse_freed_memory()  # as `codekiln train` does on a CPU
    config = TrainConfig(model=preset_name, parallel=parallel, seq_len=128, batch_size=1)
    config = config.resolved("none")  # the learning rate and the rest the preset implies
    model_config = preset(preset_name)
    base = _status_kib("VmRSS")
    if start == "whole":
        torch.manual_seed(config.seed)
        model = parallelize(CodeGPT(model_config), distributed, parallel=parallel)
    else:
        with torch.device("meta"):
            model = CodeGPT(model_config)
        fill = lambda m: materialise(m, model_config, distributed.device, SEED, config.seed)  # noqa: E731
        model = parallelize(model, distributed, parallel=parallel, materialise=fill)
    optimizer = build_optimizer(model, config, distributed.device)
    figures = {"setup": (_status_kib("VmHWM") - base) * 1024}
    if step:
        tokens = torch.randint(0, model_config.vocab_size, (1, config.seq_len + 1))
        optimizer_step(model, optimizer, [(tokens[:, :-1], tokens[:, 1:])], 1e-4, 1.0)
        figures["step"] = (_status_kib("VmHWM") - base) * 1024
    figures["params"] = num_parameters(model_config)
    figures = all_gather_objects(figures)
    if distributed.rank == 0:
        (out / f"{start}.json").write_text(json.dumps(figures))
    import torch.distributed as dist

    dist.barrier()
    dist.destroy_process_group()


def _launch(start: str, args, out: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(args.ranks), __file__, "--worker", start]
    command += ["--preset", args.preset, "--parallel", args.parallel, "--out", str(out)]
    if args.step:
        command.append("--step")
    run = subprocess.run(command, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise SystemExit(f"the {start} start failed:\n{run.stderr[-3000:]}")
    return json.loads((out / f"{start}.json").read_text())


def checkpoint_rows(preset: str = "small", ranks: int = 2) -> list[dict]:
    """Checkpoint save and load time of `preset`'s model and AdamW state under fsdp on
    `ranks` ranks: the full state gathered on rank 0 (the old way) against every rank
    writing its own shards with torch.distributed.checkpoint (bench/checkpoint.py)."""
    sys.path.insert(0, str(Path(__file__).parent))  # its spawned ranks import it by name
    from checkpoint import checkpoint_bench

    return checkpoint_bench(preset, ranks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="1b")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--parallel", default="fsdp", choices=["fsdp", "ddp", "tp"])
    parser.add_argument("--step", action="store_true", help="measure through one step too")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--no-checkpoints", action="store_true", help="skip the checkpoint timing table"
    )
    parser.add_argument("--worker", choices=["whole", "meta"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.preset, args.parallel, args.step, args.out)
        return

    gib = 1 << 30
    with tempfile.TemporaryDirectory() as tmp:
        runs = {start: _launch(start, args, Path(tmp)) for start in ("whole", "meta")}
    phase = "set-up + one optimizer step" if args.step else "set-up only"
    key = "step" if args.step else "setup"
    params = runs["meta"][0]["params"]
    print(f"CPU: {cpu_features()}")
    print(
        f"peak host memory per rank, {args.preset} ({params / 1e9:.2f}B parameters) under "
        f"{args.parallel} on {args.ranks} ranks, {phase}:"
    )
    print(f"{'start':<8}" + "".join(f"{f'rank {r} GiB':>12}" for r in range(args.ranks)))
    for start, ranks in runs.items():
        print(f"{start:<8}" + "".join(f"{r[key] / gib:>12.2f}" for r in ranks))
    ratio = max(r[key] for r in runs["meta"]) / max(r[key] for r in runs["whole"])
    print(f"meta / whole (largest rank): {ratio:.2f}x (goal <= 0.6x)")
    rows = []
    if not args.no_checkpoints:
        rows = checkpoint_rows("small", args.ranks)
        from checkpoint import print_table  # bench/ is on sys.path now

        print(f"\ncheckpoint save and load, small under fsdp on {args.ranks} ranks:")
        print_table(rows)
    if args.json:
        figures = {"phase": phase, "cpu": cpu_features(), "ratio": ratio, **runs}
        figures["checkpoints"] = rows
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
