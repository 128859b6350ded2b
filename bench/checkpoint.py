"""Checkpoint save and load time: the old whole state dict gathered to rank 0 against every
rank writing its own shards (torch.distributed.checkpoint), under FSDP2 on CPU with gloo.

    python bench/checkpoint.py [--preset small] [--world-size 2] [--repeat 1] [--dir DIR]
                               [--json FIGURES]

Each rank builds the preset's model (same seed), shards it with FSDP2 over `--world-size`
ranks and gives AdamW its state (the moments of one step), so a checkpoint is weights + two
moments. Then, with a barrier before and after each timing:

- gather: the way before sharded checkpoints (checkpoint format 1): `full_model_state` /
  `full_optimizer_state` (every shard gathered to rank 0, on CPU), `torch.save`, fsync and
  SHA-256 by rank 0; loaded by every rank hashing and reading the whole files and
  `load_full_state` keeping its shards.
- sharded: `sharded_state` + `save_checkpoint` (DCP, every rank writes its own shards, files
  fsynced and hashed, state.json last) and `load_sharded_state` (each rank reads its shards).

Prints seconds per save and load (best of --repeat), the bytes rank 0 wrote, and rank 0's
peak resident memory after the sharded way and after the gathering one (which runs
second). `checkpoint_bench` returns the rows for bench/scale.py.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def checkpoint_bench(
    preset: str = "small", world_size: int = 2, repeat: int = 1, folder: Path | None = None
) -> list[dict]:
    """[{method, save_s, load_s, rank0_bytes, total_bytes, rank0_peak_rss}] for "gather"
    and "sharded" (the peak after the sharded way, then after both)."""
    own = folder is None
    folder = Path(tempfile.mkdtemp(prefix="ckpt-bench-")) if own else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = mp.Manager().list()
    try:
        mp.spawn(
            _rank, args=(world_size, _free_port(), preset, repeat, folder, rows), nprocs=world_size
        )
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)
    return list(rows)


def _rank(rank, world_size, port, preset, repeat, folder: Path, rows) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        model, optimizer = _sharded_model(preset, rank, world_size)
        # Sharded first: the peak resident memory only grows, so its reading after each way
        # shows what the gathering adds.
        results = [_sharded_way(model, optimizer, folder / "sharded", rank) for _ in range(repeat)]
        sharded = {"save_s": min(r[0] for r in results), "load_s": min(r[1] for r in results)}
        sharded["rank0_peak_rss"] = _peak_rss()
        results = [_gather_way(model, optimizer, folder / "gather", rank) for _ in range(repeat)]
        gather = {"save_s": min(r[0] for r in results), "load_s": min(r[1] for r in results)}
        gather["rank0_peak_rss"] = _peak_rss()
        if rank == 0:
            step = folder / "sharded" / "checkpoints" / "step_1"
            rows.append({"method": "gather", **gather, **_sizes(folder / "gather", "rank0")})
            rows.append({"method": "sharded", **sharded, **_sizes(step, "__0_")})
    finally:
        dist.barrier()
        dist.destroy_process_group()


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _sharded_model(preset: str, rank: int, world_size: int):
    from codekiln.model.config import preset as model_preset
    from codekiln.model.gpt import CodeGPT
    from codekiln.train.config import TrainConfig
    from codekiln.train.optim import build_optimizer
    from codekiln.train.parallel import Distributed, parallelize

    torch.manual_seed(0)
    model = CodeGPT(model_preset(preset))
    distributed = Distributed(rank, world_size)
    model = parallelize(model, distributed, parallel="fsdp")
    optimizer = build_optimizer(model, TrainConfig().resolved(), torch.device("cpu"))
    tokens = torch.randint(0, model.config.vocab_size, (1, 16))
    _, loss = model(tokens, labels=tokens)
    loss.backward()
    optimizer.step()  # AdamW's moments exist: a checkpoint is weights + two moments
    optimizer.zero_grad(set_to_none=True)
    return model, optimizer


def _timed(run) -> float:
    dist.barrier()
    start = time.perf_counter()
    run()
    dist.barrier()
    return time.perf_counter() - start


def _gather_way(model, optimizer, folder: Path, rank: int) -> tuple[float, float]:
    from codekiln.manifest import file_sha256
    from codekiln.train.state_dicts import full_model_state, full_optimizer_state, load_full_state

    if rank == 0:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)

    def save():
        weights = full_model_state(model)
        moments = full_optimizer_state(model, optimizer)
        if rank == 0:
            for name, payload in (("rank0_model.pt", weights), ("rank0_optimizer.pt", moments)):
                with open(folder / name, "wb") as handle:
                    torch.save(payload, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                file_sha256(folder / name)  # recorded in state.json, as write_checkpoint did

    def load():
        loaded = []
        for name in ("rank0_model.pt", "rank0_optimizer.pt"):
            file_sha256(folder / name)  # every rank checked it, as load_checkpoint_file did
            loaded.append(torch.load(folder / name, weights_only=True))
        load_full_state(model, loaded[0], optimizer, loaded[1])

    return _timed(save), _timed(load)


def _sharded_way(model, optimizer, folder: Path, rank: int) -> tuple[float, float]:
    from codekiln.train.checkpoint import save_checkpoint, shard_reader
    from codekiln.train.state_dicts import load_sharded_state, sharded_state

    root = folder / "checkpoints"
    if rank == 0:
        shutil.rmtree(folder, ignore_errors=True)
    dist.barrier()

    def save():
        shards = sharded_state(model, optimizer)
        save_checkpoint(root, 1, shards, {"rng.pt": []}, {"version": 2} if rank == 0 else None, 1)

    def load():
        load_sharded_state(model, optimizer, shard_reader(root / "step_1"))

    return _timed(save), _timed(load)


def _sizes(folder: Path, rank0_prefix: str) -> dict[str, int]:
    files = [p for p in folder.iterdir() if p.is_file()]
    return {
        "rank0_bytes": sum(p.stat().st_size for p in files if p.name.startswith(rank0_prefix)),
        "total_bytes": sum(p.stat().st_size for p in files),
    }


def print_table(rows: list[dict]) -> None:
    mib = 1 << 20
    print(
        f"{'method':<8} {'save s':>7} {'load s':>7} {'rank 0 wrote MiB':>17} "
        f"{'total MiB':>10} {'rank 0 peak RSS MiB':>20}"
    )
    for row in rows:
        print(
            f"{row['method']:<8} {row['save_s']:>7.2f} {row['load_s']:>7.2f} "
            f"{row['rank0_bytes'] / mib:>17.1f} {row['total_bytes'] / mib:>10.1f} "
            f"{row['rank0_peak_rss'] / mib:>20.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--dir", type=Path, default=None, help="Where to write (default: a temp dir)."
    )
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    args = parser.parse_args()
    rows = checkpoint_bench(args.preset, args.world_size, args.repeat, args.dir)
    print_table(rows)
    if args.json is not None:
        args.json.write_text(json.dumps({"preset": args.preset, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
