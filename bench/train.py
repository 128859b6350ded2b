"""CPU training throughput: codekiln's training step against transformers' GPTBigCode.

    python bench/train.py [--preset tiny] [--batch-size 8] [--seq-len 256] [--steps 5]
                          [--repeat 3] [--compile] [--hf-attn sdpa] [--json FIGURES]
    python bench/train.py --fim-overhead [--preset tiny] [--batch-size 4] [--seq-len 8192]
                          [--steps 4] [--json FIGURES]

Both models have the preset's shape and the very same weights (ours exported under
transformers' names), take the same batch of random tokens and run the same step: forward,
cross-entropy over the same shifted labels, backward, gradient clipping at 1.0 and AdamW with
codekiln's parameter groups (`codekiln.train.step.optimizer_step` for both). transformers'
`GPTBigCodeForCausalLM` is built from the config alone (no download), with --hf-attn as its
attention implementation. The kinds take turns; the best of --repeat timings counts.

Prints tokens/s and ms per step for each, ours over theirs, and the FLOP/s achieved
(flops_per_token x tokens/s, codekiln.model.config's count) as a share of a 2048 x 2048 float32
matmul's FLOP/s measured in the same run: the most this CPU's BLAS delivers on a large GEMM.
With --compile, a third row has each block compiled (`torch.compile` via train/parallel.py).

--fim-overhead times training steps at --seq-len (default 8,192) on batches from a
`TokenLoader` over a pack of this Python's standard library made in a temporary folder, with
FIM at 0.5 against FIM off, each with batches made ahead (`Prefetcher`, 2 deep, as `codekiln
train` does by default) and in the loop: the best step time (taking the batch included) of
--steps steps after one warm-up, and the mean time the loop waited for a batch. The kinds
take turns, --repeat times; the ratio FIM on / FIM off with prefetching is the figure
(goal <= 1.05). On a busy machine step times vary far more than FIM costs: the waiting
times and the time to make one batch say where FIM's cost went.
"""

from __future__ import annotations

import argparse
import json
import math
import sysconfig
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from codekiln.model.config import flops_per_token, num_parameters, preset
from codekiln.model.gpt import CodeGPT
from codekiln.model.hf import hf_config, to_hf_state_dict
from codekiln.pack.loader import IGNORE_INDEX
from codekiln.train.config import TrainConfig
from codekiln.train.metrics import measured_matmul_flops
from codekiln.train.optim import build_optimizer
from codekiln.train.parallel import Distributed, parallelize
from codekiln.train.prefetch import Prefetcher
from codekiln.train.step import autocast_context, compute_dtype, optimizer_step


class HFCausalLM(nn.Module):
    """transformers' model behind CodeGPT's call: (input_ids, labels) -> (logits, loss) with
    already-shifted labels, the loss computed as CodeGPT computes it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None):
        logits = self.model(input_ids=input_ids, use_cache=False).logits.float()
        if labels is None:
            return logits, None
        total = F.cross_entropy(
            logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        return logits, total / (labels != IGNORE_INDEX).sum().clamp(min=1)


def transformers_twin(ours: CodeGPT, attn: str) -> nn.Module:
    from transformers import GPTBigCodeConfig, GPTBigCodeForCausalLM

    settings = hf_config(ours.config)
    settings.pop("torch_dtype", None)
    config = GPTBigCodeConfig(**settings, attn_implementation=attn)
    model = GPTBigCodeForCausalLM(config)
    missing, unexpected = model.load_state_dict(to_hf_state_dict(ours), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    return HFCausalLM(model).train()


def seconds_per_step(model, optimizer, batch, steps: int, warmup: int, autocast) -> float:
    for _ in range(warmup):
        optimizer_step(model, optimizer, [batch], 1e-4, 1.0, autocast)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer_step(model, optimizer, [batch], 1e-4, 1.0, autocast)
    return (time.perf_counter() - start) / steps


def stdlib_pack(folder: Path, vocab_size: int = 2048) -> Path:
    """A pack (FIM-capable StarCoder layout) of this Python's standard library sources."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from codekiln.pack.pack import PackConfig, pack
    from codekiln.tokenizer.train import train_bpe

    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:200]
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    rows = [
        {
            "id": f"{i:08x}",
            "content": text,
            "repo": f"python/cpython{i % 16}",
            "path": f"Lib/{f.name}",
            "lang": "Python",
            "license": "PSF-2.0",
            "stars": 1,
            "kind": "file",
            "source": "stdlib",
            "size": len(text),
            "max_line_length": max((len(line) for line in text.splitlines()), default=0),
            "avg_line_length": 30.0,
            "alphanum_fraction": 0.7,
        }
        for i, (f, text) in enumerate(zip(files, texts, strict=True))
        if text.strip()
    ]
    curated = folder / "curated"
    curated.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), curated / "part-00000.parquet")
    tokenizer_dir = folder / "tokenizer"
    tokenizer_dir.mkdir()
    train_bpe(texts, vocab_size).save(str(tokenizer_dir / "tokenizer.json"))
    config = PackConfig(valid_fraction=0.0, format="starcoder")
    pack(curated, tokenizer_dir, folder / "pack", config, progress=False)
    return folder / "pack"


def timed_steps(model, optimizer, loader, depth: int, steps: int, autocast) -> tuple:
    """(best seconds per step, mean seconds the loop waited for a batch) over `steps` steps
    after one warm-up, with batches from `loader` made `depth` ahead (0: in the loop)."""
    prefetch = Prefetcher(
        loader, depth, convert=lambda b: (torch.from_numpy(b.input_ids), torch.from_numpy(b.labels))
    )
    batches = iter(prefetch)
    best, waited = math.inf, 0.0
    try:
        for step in range(steps + 1):
            start = time.perf_counter()
            batch = next(batches)
            wait = time.perf_counter() - start
            optimizer_step(model, optimizer, [batch], 1e-4, 1.0, autocast)
            if step:  # the first step warms up
                best = min(best, time.perf_counter() - start)
                waited += wait
    finally:
        prefetch.close()
    return best, waited / steps


def fim_overhead(args: argparse.Namespace) -> dict:
    """Step time with FIM on against off, with and without prefetching (see the docstring)."""
    from codekiln.pack.loader import LoaderConfig, TokenLoader

    config = preset(args.preset, n_positions=max(args.seq_len, preset(args.preset).n_positions))
    train_config = TrainConfig(model=args.preset, batch_size=args.batch_size, lr=1e-4).resolved()
    cpu = torch.device("cpu")
    dtype = compute_dtype(train_config, cpu)
    best: dict[str, float] = {}
    waits: dict[str, float] = {}
    make: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = stdlib_pack(Path(tmp))
        loaders = {
            rate: TokenLoader(
                data,
                data / "tokenizer",
                LoaderConfig(args.seq_len, args.batch_size, seed=0, fim_rate=rate),
            )
            for rate in (0.5, 0.0)
        }
        for rate, loader in loaders.items():
            start = time.perf_counter()
            for step in range(4):
                loader.batch(1, step)
            make[f"fim_{rate}"] = (time.perf_counter() - start) / 4 * 1e3
        torch.manual_seed(0)
        model = CodeGPT(config).train()
        optimizer = build_optimizer(model, train_config, cpu)
        autocast = autocast_context(cpu, dtype)
        for _ in range(args.repeat):  # the kinds take turns; the best of each counts
            for depth in (2, 0):
                for rate, loader in loaders.items():
                    key = f"fim_{rate}_prefetch_{depth}"
                    seconds, wait = timed_steps(
                        model, optimizer, loader, depth, args.steps, autocast
                    )
                    best[key] = min(best.get(key, math.inf), seconds * 1e3)
                    waits[key] = min(waits.get(key, math.inf), wait * 1e3)
    cpu_info = Path("/proc/cpuinfo")
    flags = set(cpu_info.read_text().split()) if cpu_info.exists() else set()
    figures = {
        "preset": args.preset,
        "parameters": num_parameters(config),
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "cpu_features": sorted(flags & {"amx_bf16", "amx_tile", "avx512f", "avx512_bf16", "avx2"}),
        "batch_ms": make,
        "ms_per_step": best,
        "wait_ms_per_step": waits,
        "fim_ratio_prefetch": best["fim_0.5_prefetch_2"] / best["fim_0.0_prefetch_2"],
        "fim_ratio_inline": best["fim_0.5_prefetch_0"] / best["fim_0.0_prefetch_0"],
    }
    print(
        f"{args.preset} ({num_parameters(config) / 1e6:.1f}M) at {args.batch_size} x "
        f"{args.seq_len} tokens, {figures['dtype']}, {torch.get_num_threads()} threads, CPU "
        f"{' '.join(figures['cpu_features']) or '-'}; one batch: "
        f"{make['fim_0.5']:.1f} ms with FIM, {make['fim_0.0']:.1f} ms without"
    )
    print(f"{'step':<24}{'ms/step':>10}{'waiting ms':>12}")
    for key, ms in best.items():
        print(f"{key:<24}{ms:>10.1f}{waits[key]:>12.1f}")
    print(
        f"FIM on / off: {figures['fim_ratio_prefetch']:.3f}x with batches made ahead, "
        f"{figures['fim_ratio_inline']:.3f}x made in the loop (goal <= 1.05x ahead)"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per repeat")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time compiled blocks")
    parser.add_argument("--hf-attn", default="sdpa", choices=("sdpa", "eager"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--fim-overhead",
        action="store_true",
        help="time train() with FIM on and off instead (defaults: batch 4 x 8,192 tokens)",
    )
    args = parser.parse_args()
    if args.fim_overhead:
        defaults = {"batch_size": 8, "seq_len": 256, "steps": 5}
        for name, value in {"batch_size": 4, "seq_len": 8192, "steps": 4}.items():
            if getattr(args, name) == defaults[name]:
                setattr(args, name, value)
        figures = fim_overhead(args)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        return

    config = preset(args.preset)
    train_config = TrainConfig(model=args.preset, batch_size=args.batch_size, lr=1e-4).resolved()
    cpu = torch.device("cpu")
    default_dtype = compute_dtype(train_config, cpu)  # codekiln's "auto"
    torch.manual_seed(0)
    ours = CodeGPT(config).train()
    theirs = transformers_twin(ours, args.hf_attn)
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(
        0, config.vocab_size, (args.batch_size, args.seq_len + 1), generator=generator
    )
    batch = (tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())
    with torch.no_grad():
        loss_ours = ours(*batch)[1].item()
        loss_theirs = theirs(*batch)[1].item()
    models = {"codekiln": ours, "transformers": theirs}
    if args.compile:
        twin = CodeGPT(config).train()
        twin.load_state_dict(ours.state_dict())
        models["codekiln_compiled"] = parallelize(twin, Distributed(), compile=True)
    optimizers = {name: build_optimizer(m, train_config, cpu) for name, m in models.items()}
    dtypes = [torch.float32] + ([torch.bfloat16] if default_dtype == torch.bfloat16 else [])
    kinds = {  # (model name, dtype) -> timing key
        (name, dtype): f"{name}_{str(dtype).removeprefix('torch.')}"
        for name in models
        for dtype in dtypes
    }

    matmul = {dtype: 0.0 for dtype in dtypes}
    best = {key: math.inf for key in kinds.values()}
    for _ in range(args.repeat):
        for dtype in dtypes:
            matmul[dtype] = max(matmul[dtype], measured_matmul_flops(cpu, dtype, 2048))
        for (name, dtype), key in kinds.items():
            autocast = autocast_context(cpu, dtype)
            seconds = seconds_per_step(
                models[name], optimizers[name], batch, args.steps, args.warmup, autocast
            )
            best[key] = min(best[key], seconds)

    step_tokens = args.batch_size * args.seq_len
    flops = flops_per_token(config, args.seq_len)
    figures = {
        "preset": args.preset,
        "parameters": num_parameters(config),
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "threads": torch.get_num_threads(),
        "hf_attn": args.hf_attn,
        "codekiln_default_dtype": str(default_dtype).removeprefix("torch."),
        "initial_loss": {"codekiln": loss_ours, "transformers": loss_theirs},
        "flops_per_token": flops,
        "matmul_flops": {str(d).removeprefix("torch."): f for d, f in matmul.items()},
    }
    rows = []
    for key in kinds.values():
        rate = step_tokens / best[key]
        share = flops * rate / matmul[torch.float32]
        figures[f"{key}_tokens_per_s"] = rate
        figures[f"{key}_of_float32_matmul"] = share
        rows.append((key, rate, best[key] * 1e3, flops * rate / 1e9, share))
    base = figures["transformers_float32_tokens_per_s"]
    default_key = kinds["codekiln", default_dtype]
    figures["speedup_same_precision"] = {
        key.removeprefix("codekiln_"): figures[f"{key}_tokens_per_s"]
        / figures[f"transformers_{key.removeprefix('codekiln_')}_tokens_per_s"]
        for key in kinds.values()
        if key.startswith("codekiln_") and not key.startswith("codekiln_compiled")
    }
    # Each as it trains by default: codekiln's "auto" dtype, transformers' float32.
    figures["speedup_vs_transformers"] = figures[f"{default_key}_tokens_per_s"] / base

    print(
        f"{args.preset}: {num_parameters(config) / 1e6:.2f}M parameters, batch "
        f"{args.batch_size} x {args.seq_len} tokens, {torch.get_num_threads()} threads, "
        f"transformers attention {args.hf_attn}; initial loss {loss_ours:.6f} (codekiln) vs "
        f"{loss_theirs:.6f} (transformers)"
    )
    for dtype, rate in matmul.items():
        print(f"2048^3 {str(dtype).removeprefix('torch.')} matmul: {rate / 1e9:,.1f} GFLOP/s")
    header = f"{'step':<28}{'tokens/s':>10}{'ms/step':>10}{'GFLOP/s':>10}{'of fp32 mm':>11}"
    print(header + f"{'vs transformers fp32':>22}")
    for name, rate, ms, gflops, share in rows:
        print(
            f"{name:<28}{rate:>10,.0f}{ms:>10.1f}{gflops:>10.1f}{share:>10.1%}{rate / base:>21.2f}x"
        )
    same = ", ".join(f"{k} {v:.2f}x" for k, v in figures["speedup_same_precision"].items())
    print(f"codekiln / transformers at the same precision: {same}")
    print(
        f"codekiln's default step ({figures['codekiln_default_dtype']}) / transformers' "
        f"default (float32): {figures['speedup_vs_transformers']:.2f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
