"""CPU fine-tuning steps: codekiln against transformers + peft on the same StarCoder2 folder.

    python bench/finetune.py [--small] [--batch-size 2] [--seq-len 512] [--steps 1]
                             [--repeat 3] [--modes full,lora,lora-bf16-base]
                             [--precisions float32,bfloat16] [--threads N] [--json FIGURES]

A random-weight StarCoder2-shaped model (by default hidden 768, 12 layers, 12 query and 2
key/value heads, MLP 3072, vocabulary 49,152, 16,384 positions, sliding window 4,096: about
110M parameters; --small: a tiny one) is made with transformers and saved as sharded
safetensors to a temporary folder. Both engines load that folder, each in its own fresh
process, so a process's peak resident memory (ru_maxrss, loading included) is that engine's
alone:

- codekiln: `import_hf` (float32), `add_lora` for LoRA, `build_optimizer`, `optimizer_step`
  with `TrainConfig`'s defaults for the run's kind (AdamW betas (0.9, 0.95), eps 1e-8, fused;
  weight decay 0.01 on matrices for full fine-tuning, 0 under LoRA; gradient clipping at 1).
- transformers + peft: `AutoModelForCausalLM.from_pretrained` with SDPA attention and no KV
  cache, `peft.get_peft_model` for LoRA, and the same step written out: forward with
  `labels`, backward, `clip_grad_norm_(1.0)`, fused `torch.optim.AdamW` with the same
  hyper-parameters and the same two groups (decay on parameters of two or more dimensions).

Rows (mode x precision): full fine-tuning and LoRA (rank 8, alpha 16, no dropout on q, k,
v, o_proj, c_fc and the MLP's c_proj for both) with float32 weights, computing in float32 or
under bfloat16 autocast (forward and loss; both engines alike); and lora-bf16-base: LoRA on a
frozen bfloat16 base under bfloat16 autocast (codekiln: `import_hf(dtype=bfloat16)` with its
norms in float32, as train/inputs.py prepares it; transformers: `from_pretrained(dtype=
bfloat16)`). Adapters are float32 in both.

Same batch for both: B x T random token ids. transformers shifts `labels` itself, so it gets
labels = input_ids and scores the T - 1 next tokens; codekiln gets labels[:, t] = ids[:, t+1]
and -100 at the last position (as its loader pads), the same T - 1 targets. The first step's
losses (same weights, same batch, before any update; LoRA's B starts at zero) must agree: a
large difference means the figures compare different work. tokens/s counts B x T per step.

Per row the two engines' processes load and warm up one after the other, then take turns
timing --steps steps; the best of --repeat timings counts. Ratios are codekiln over
transformers + peft: tokens/s (goal >= 1.3x) and peak RSS (goal <= 0.8x). The default batch
is 2 x 512 tokens: a float32 full fine-tuning step of 4 x 512 takes over 20 s on two cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

MODES = ("full", "lora", "lora-bf16-base")
PRECISIONS = ("float32", "bfloat16")
ENGINES = ("codekiln", "transformers")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"]
LORA_RANK, LORA_ALPHA, LORA_DROPOUT = 8, 16.0, 0.0  # TrainConfig's and peft's defaults
LEARNING_RATE = {"full": 2e-5, "lora": 2e-4}  # TrainConfig's defaults, set explicitly
SEED = 0
# --small: a few seconds per row, for the smoke test.
SMALL_SHAPE = {
    "hidden": 64,
    "layers": 2,
    "heads": 4,
    "kv_heads": 2,
    "intermediate": 256,
    "vocab": 1024,
    "positions": 512,
    "window": 256,
}


def make_model(folder: Path, shape: dict[str, int]) -> int:
    """A random-weight Starcoder2ForCausalLM of `shape` saved to `folder` as sharded
    safetensors (about 5 shards); returns its parameter count (the tied head once)."""
    from transformers import Starcoder2Config, Starcoder2ForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    config = Starcoder2Config(
        hidden_size=shape["hidden"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"],
        intermediate_size=shape["intermediate"],
        vocab_size=shape["vocab"],
        max_position_embeddings=shape["positions"],
        sliding_window=shape["window"],
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(SEED)
    model = Starcoder2ForCausalLM(config)
    parameters = sum(p.numel() for p in model.parameters())
    shard_mb = max(1, parameters * 4 // 5 // 2**20)
    model.save_pretrained(folder, max_shard_size=f"{shard_mb}MB")
    return parameters


def cpu_features() -> list[str]:
    """The matmul-relevant flags of /proc/cpuinfo that this CPU has."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    wanted = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")
    return [flag for flag in wanted if flag in flags]


def rss_mb() -> float:
    """This process's resident memory now."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def batch(vocab: int, batch_size: int, seq_len: int) -> torch.Tensor:
    """The one (B, T) batch of random token ids every step of both engines trains on."""
    generator = torch.Generator().manual_seed(SEED + 1)
    return torch.randint(0, vocab, (batch_size, seq_len), generator=generator)


def codekiln_step(folder: Path, mode: str, autocast, ids: torch.Tensor):
    """(one optimizer step of codekiln returning its loss, trainable parameter count)."""
    from codekiln.model.hf import import_hf
    from codekiln.model.lora import LoraSpec, add_lora
    from codekiln.pack.loader import IGNORE_INDEX
    from codekiln.train.config import TrainConfig
    from codekiln.train.inputs import _norms_in_float32
    from codekiln.train.memory import reuse_freed_memory
    from codekiln.train.optim import build_optimizer
    from codekiln.train.step import optimizer_step

    reuse_freed_memory()  # as `codekiln train` sets it up on a CPU
    lora = mode != "full"
    bf16_base = mode == "lora-bf16-base"
    model = import_hf(folder, dtype=torch.bfloat16 if bf16_base else torch.float32)
    if bf16_base:
        _norms_in_float32(model)
    if lora:
        torch.manual_seed(SEED)
        spec = LoraSpec(LORA_RANK, LORA_ALPHA, LORA_DROPOUT, list(LORA_TARGETS))
        add_lora(model, "starcoder2", spec)
    model.train()
    config = TrainConfig(
        init_from=str(folder),
        lora=lora,
        base_dtype="bfloat16" if bf16_base else "float32",
        lr=LEARNING_RATE["lora" if lora else "full"],
    ).resolved()
    optimizer = build_optimizer(model, config, torch.device("cpu"))
    labels = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], IGNORE_INDEX)], dim=1)
    micro = [(ids, labels)]

    def step() -> float:
        loss, _ = optimizer_step(model, optimizer, micro, config.lr, config.grad_clip, autocast)
        return loss.item()

    return step, sum(p.numel() for p in model.parameters() if p.requires_grad)


def transformers_step(folder: Path, mode: str, autocast, ids: torch.Tensor):
    """(one optimizer step of transformers + peft returning its loss, trainable count)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    lora = mode != "full"
    dtype = torch.bfloat16 if mode == "lora-bf16-base" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa")
    model.config.use_cache = False
    if lora:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(SEED)
        settings = LoraConfig(
            r=LORA_RANK,
            lora_alpha=LORA_ALPHA,
            lora_dropout=LORA_DROPOUT,
            target_modules=list(LORA_TARGETS),
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, settings)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    lr = LEARNING_RATE["lora" if lora else "full"]
    decay = 0.0 if lora else 0.01
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=True)

    def step() -> float:
        with autocast or nullcontext():
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step, sum(p.numel() for p in params)


def worker(args: argparse.Namespace) -> None:
    """One engine's process for one row, answering the parent's lines on stdin with one JSON
    line each on stdout: after its imports, a first line; `load`: load, first step and
    warm-up; `time`: one timing of --steps steps; `done`: the peak RSS, and it ends."""
    if args.threads:
        torch.set_num_threads(args.threads)
    # What the row uses is imported before the baseline RSS, for both engines.
    if args.worker == "transformers":
        import transformers.models.starcoder2.modeling_starcoder2  # noqa: F401

        if args.mode != "full":
            import peft  # noqa: F401

        build = transformers_step
    else:
        import codekiln.train.loop  # noqa: F401

        build = codekiln_step
    print(json.dumps({"rss_imported_mb": rss_mb()}), flush=True)
    autocast = torch.autocast("cpu", torch.bfloat16) if args.precision == "bfloat16" else None
    config = json.loads((args.folder / "config.json").read_text())
    ids = batch(config["vocab_size"], args.batch_size, args.seq_len)
    step = None
    for line in sys.stdin:
        command = line.strip()
        if command == "done":
            break
        start = time.perf_counter()
        if command == "load":
            step, trainable = build(args.folder, args.mode, autocast, ids)
            loaded, load_s = rss_mb(), time.perf_counter() - start
            first_loss = step()
            for _ in range(args.warmup - 1):
                step()
            reply = {
                "first_loss": first_loss,
                "trainable": trainable,
                "rss_loaded_mb": loaded,
                "load_s": load_s,
            }
        else:
            assert command == "time" and step is not None, command
            for _ in range(args.steps):
                step()
            reply = {"seconds": (time.perf_counter() - start) / args.steps}
        print(json.dumps(reply), flush=True)
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "rss_end_mb": rss_mb()}), flush=True)


class Worker:
    """The parent's handle on a worker process."""

    def __init__(self, engine: str, mode: str, precision: str, folder: Path, args) -> None:
        command = [
            sys.executable,
            __file__,
            "--worker",
            engine,
            "--mode",
            mode,
            "--precision",
            precision,
            "--folder",
            str(folder),
            "--batch-size",
            str(args.batch_size),
            "--seq-len",
            str(args.seq_len),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--threads",
            str(args.threads or 0),
        ]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, line: str | None = None) -> dict:
        if line is not None:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        reply = self.process.stdout.readline()
        if not reply:
            sys.exit(f"a worker died (exit {self.process.wait()}); see its error above")
        return json.loads(reply)

    def finish(self) -> dict:
        figures = self.ask("done")
        self.process.stdin.close()
        self.process.wait()
        return figures


def bench_row(mode: str, precision: str, folder: Path, args) -> dict:
    """Both engines' figures for one (mode, precision), taking turns."""
    # Both import at once (one core each); then one loads and warms up at a time.
    workers = {engine: Worker(engine, mode, precision, folder, args) for engine in ENGINES}
    figures = {engine: workers[engine].ask() for engine in ENGINES}
    for engine in ENGINES:
        figures[engine].update(workers[engine].ask("load"))
    best = dict.fromkeys(ENGINES, math.inf)
    for _ in range(args.repeat):
        for engine in ENGINES:
            best[engine] = min(best[engine], workers[engine].ask("time")["seconds"])
    tokens = args.batch_size * args.seq_len
    for engine in ENGINES:
        figures[engine].update(workers[engine].finish())
        figures[engine]["seconds_per_step"] = best[engine]
        figures[engine]["tokens_per_s"] = tokens / best[engine]
    ours, theirs = figures["codekiln"], figures["transformers"]
    return {
        "mode": mode,
        "precision": precision,
        **figures,
        "speedup": ours["tokens_per_s"] / theirs["tokens_per_s"],
        "memory_ratio": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
        "loss_difference": abs(ours["first_loss"] - theirs["first_loss"]),
    }


def rows(modes: list[str], precisions: list[str]) -> list[tuple[str, str]]:
    """(mode, precision) pairs; a bfloat16 base computes in bfloat16 only."""
    return [
        (mode, precision)
        for mode in modes
        for precision in precisions
        if not (mode == "lora-bf16-base" and precision == "float32")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a tiny model (smoke test)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=1, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps, the first included")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated: " + ",".join(MODES)
    )
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not set(modes) <= set(MODES) or not set(precisions) <= set(PRECISIONS):
        parser.error(f"--modes from {', '.join(MODES)}; --precisions from {', '.join(PRECISIONS)}")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first step gives the compared losses)")

    from importlib.metadata import version

    shape = (
        dict(SMALL_SHAPE)
        if args.small
        else {
            "hidden": 768,
            "layers": 12,
            "heads": 12,
            "kv_heads": 2,
            "intermediate": 3072,
            "vocab": 49152,
            "positions": 16384,
            "window": 4096,
        }
    )
    if args.seq_len > shape["positions"]:
        parser.error(f"--seq-len is at most the model's {shape['positions']} positions")
    threads = args.threads or torch.get_num_threads()
    figures: dict = {
        "shape": shape,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "steps": args.steps,
        "repeat": args.repeat,
        "threads": threads,
        "cpu_features": cpu_features(),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "peft": version("peft"),
        "lora": {"rank": LORA_RANK, "alpha": LORA_ALPHA, "dropout": LORA_DROPOUT},
        "rows": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "starcoder2"
        figures["parameters"] = make_model(folder, shape)
        shards = len(list(folder.glob("*.safetensors")))
        print(
            f"StarCoder2-shaped model: {figures['parameters'] / 1e6:.1f}M parameters "
            f"({shards} safetensors shards); batch {args.batch_size} x {args.seq_len} tokens; "
            f"{threads} torch threads; CPU: {' '.join(figures['cpu_features']) or 'no AVX2'}; "
            f"torch {torch.__version__}, transformers {figures['transformers']}, "
            f"peft {figures['peft']}",
            flush=True,
        )
        for mode, precision in rows(modes, precisions):
            row = bench_row(mode, precision, folder, args)
            figures["rows"].append(row)
            ours, theirs = row["codekiln"], row["transformers"]
            print(
                f"  {mode} {precision}: first-step loss {ours['first_loss']:.6f} (codekiln) vs "
                f"{theirs['first_loss']:.6f} (transformers + peft); trainable "
                f"{ours['trainable']:,} vs {theirs['trainable']:,}",
                flush=True,
            )
    print_table(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


def print_table(figures: dict) -> None:
    header = (
        f"{'mode':<16}{'precision':<10}{'ours tok/s':>11}{'theirs':>9}{'x (>=1.3)':>10}"
        f"{'ours MB':>9}{'theirs':>8}{'x (<=0.8)':>10}{'loss diff':>11}"
    )
    print(header)
    for row in figures["rows"]:
        ours, theirs = row["codekiln"], row["transformers"]
        print(
            f"{row['mode']:<16}{row['precision']:<10}{ours['tokens_per_s']:>11,.0f}"
            f"{theirs['tokens_per_s']:>9,.0f}{row['speedup']:>9.2f}x"
            f"{ours['peak_rss_mb']:>9,.0f}{theirs['peak_rss_mb']:>8,.0f}"
            f"{row['memory_ratio']:>9.2f}x{row['loss_difference']:>11.2e}"
        )
    features = " ".join(figures["cpu_features"]) or "none of AMX, AVX-512, AVX2"
    print(f"CPU: {features}; {figures['threads']} torch threads")
    if not figures["rows"]:
        return
    imported = []
    for engine in ENGINES:
        sizes = sorted(row[engine]["rss_imported_mb"] for row in figures["rows"])
        span = f"{sizes[0]:,.0f}" + (f"-{sizes[-1]:,.0f}" if sizes[-1] - sizes[0] >= 1 else "")
        imported.append(f"{engine} {span} MB")
    print("peak RSS includes loading; after the imports alone: " + ", ".join(imported))


if __name__ == "__main__":
    main()
