"""One GPU's training MFU, peak memory and decode speed, in one run of at most ~8 minutes.

    python bench/gpu.py [--out bench-gpu] [--presets small,1b] [--seq-len 8192]
                        [--steps 10] [--warmup 3] [--decode-tokens 128]
    python bench/gpu.py --smoke [--out DIR]      # the same code paths on CPU, tiny sizes

For each preset, a randomly initialised model trains on random tokens at --seq-len as
`codekiln train` does on one GPU: bf16 autocast, every block compiled (`torch.compile`,
codekiln's default on CUDA), fused AdamW (train/optim.py), through
`codekiln.train.step.optimizer_step`. Activation checkpointing is used where needed: a
step that runs out of memory without it is retried with it. The warm-up steps (compilation
included) are not timed.

MFU = flops_per_token x tokens/s / peak, with PaLM's count (6N + 12 L C T per token,
`codekiln.model.config.flops_per_token`) and the device's dense bf16 datasheet peak found by
its exact name (`codekiln.train.metrics.PEAK_BF16_FLOPS`; a name not there is measured, and
the output says so). Peak memory is `torch.cuda.max_memory_allocated` over the preset's
steps. Decode tokens/s is codekiln's generation path (`CodekilnBackend.complete`, greedy, KV
cache, batch 1) on the trained weights in bf16: (N - 1) new tokens over the time after the
first. Whether SDPA's flash kernel runs the model's attention is checked first
(`codekiln.train.kernels`).

Prints a table and writes OUT/gpu.json. The full run needs CUDA and says so in one line
without it; --smoke runs everything on CPU with a 2-layer model in seconds, compiled (a test
runs it). No preset starts after --max-minutes (6): the whole run stays within ~8 minutes.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from pathlib import Path

import torch

from codekiln.generate import CodekilnBackend, SamplingParams
from codekiln.model.config import flops_per_token, num_parameters, preset
from codekiln.model.gpt import CodeGPT
from codekiln.train.config import TrainConfig
from codekiln.train.kernels import flash_attention_problem
from codekiln.train.metrics import device_peak
from codekiln.train.optim import build_optimizer
from codekiln.train.parallel import Distributed, parallelize
from codekiln.train.step import autocast_context, compute_dtype, optimizer_step

# Sequences per step at the full run's 8,192 tokens: as many as fit an 80 GB card with room.
FULL = {"small": {"batch_size": 8}, "1b": {"batch_size": 2}}
SMOKE = {"tiny": {"batch_size": 2, "overrides": {"n_layer": 2, "n_embd": 64, "n_head": 2}}}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    torch._dynamo.reset()  # compiled graphs hold on to what they were traced with
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def train_steps(
    name: str,
    settings: dict,
    args: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype,
    checkpointing: bool,
) -> tuple[dict, CodeGPT]:
    """Train `name` for warm-up + timed steps; (figures, the trained model)."""
    seq_len, batch_size = args.seq_len, settings["batch_size"]
    config = preset(name, n_positions=max(seq_len, 1024), **settings.get("overrides", {}))
    train_config = TrainConfig(model=name, batch_size=batch_size, seq_len=seq_len, lr=1e-4)
    compiled = train_config.compiles(device.type) if args.compile is None else args.compile
    torch.manual_seed(0)
    with torch.device(device):
        model = CodeGPT(config)
    model.train()
    model = parallelize(
        model, Distributed(), activation_checkpointing=checkpointing, compile=compiled
    )
    optimizer = build_optimizer(model, train_config.resolved(), device)
    generator = torch.Generator(device).manual_seed(1)
    tokens = torch.randint(
        0, config.vocab_size, (batch_size, seq_len + 1), generator=generator, device=device
    )
    batch = (tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())
    autocast = autocast_context(device, dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.warmup):
        loss, _ = optimizer_step(model, optimizer, [batch], 1e-4, 1.0, autocast)
    loss.item()
    warmup_s = time.perf_counter() - start
    sync(device)
    start = time.perf_counter()
    steps = 0
    while steps < args.steps:
        loss, _ = optimizer_step(model, optimizer, [batch], 1e-4, 1.0, autocast)
        steps += 1
        if steps >= 2 and time.perf_counter() - start > args.step_seconds:
            break  # the time budget: fewer timed steps rather than a run past 8 minutes
    final_loss = loss.item()  # syncs
    seconds = (time.perf_counter() - start) / steps
    rate = batch_size * seq_len / seconds
    flops = flops_per_token(config, seq_len)
    figures = {
        "parameters": num_parameters(config),
        "batch_size": batch_size,
        "seq_len": seq_len,
        "activation_checkpointing": checkpointing,
        "compiled": compiled,
        "dtype": str(dtype).removeprefix("torch."),
        "timed_steps": steps,
        "warmup_s": round(warmup_s, 3),
        "step_s": seconds,
        "tokens_per_s": rate,
        "flops_per_token": flops,
        "achieved_flops": flops * rate,
        "loss": final_loss,
    }
    if device.type == "cuda":
        figures["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    del optimizer
    return figures, model


def train_preset(name: str, settings: dict, args, device, dtype) -> tuple[dict, CodeGPT]:
    """`train_steps` without activation checkpointing, and with it when that runs out of
    memory (or always with --checkpointing)."""
    if not args.checkpointing:
        try:
            return train_steps(name, settings, args, device, dtype, checkpointing=False)
        except torch.OutOfMemoryError:
            print(f"{name}: out of memory without activation checkpointing; again with it")
        free(device)  # out of the except block: its traceback held the model's tensors
    return train_steps(name, settings, args, device, dtype, checkpointing=True)


def decode_rate(model: CodeGPT, args: argparse.Namespace, device: torch.device, tokenizer) -> dict:
    """Greedy decoding with codekiln's backend on `model`'s weights (bf16 on a GPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.device("meta"):
        plain = CodeGPT(model.config)  # a fresh module: the trained blocks are compiled
    plain = plain.to_empty(device=device)
    plain.load_state_dict(model.state_dict())
    backend = CodekilnBackend(plain.to(dtype), tokenizer)
    prompt_ids = list(range(100, 100 + args.prompt_tokens))
    prompt = tokenizer.decode(prompt_ids)

    def seconds(new_tokens: int) -> float:
        params = SamplingParams(greedy=True, max_new_tokens=new_tokens, ignore_eos=True)
        sync(device)
        start = time.perf_counter()
        [[sample]] = backend.complete([prompt], params)
        sync(device)
        assert sample.tokens == new_tokens
        return time.perf_counter() - start

    seconds(args.decode_tokens)  # warm-up: kernels, allocator
    first = min(seconds(1) for _ in range(2))
    total = min(seconds(args.decode_tokens) for _ in range(2))
    per_token = (total - first) / (args.decode_tokens - 1)
    return {
        "decode_dtype": str(dtype).removeprefix("torch."),
        "decode_prompt_tokens": len(backend.prompt_ids(prompt)),
        "decode_new_tokens": args.decode_tokens,
        "decode_first_token_ms": first * 1e3,
        "decode_tokens_per_s": 1 / per_token,
    }


def bench_tokenizer():
    """A byte-level BPE over a few of this Python's standard library files."""
    import sysconfig

    from codekiln.tokenizer.train import train_bpe

    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:10]
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    return train_bpe(texts, 512)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-gpu"), help="folder for gpu.json")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on CPU, in seconds")
    parser.add_argument("--presets", help="comma-separated (default: small,1b; smoke: tiny)")
    parser.add_argument("--seq-len", type=int, help="default 8192 (smoke: 64)")
    parser.add_argument("--steps", type=int, help="timed steps per preset (default 10)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 3)")
    parser.add_argument("--step-seconds", type=float, default=60.0, help="timed steps' budget")
    parser.add_argument(
        "--max-minutes", type=float, default=6.0, help="start no preset after this long"
    )
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--decode-tokens", type=int, help="default 128 (smoke: 4)")
    parser.add_argument("--checkpointing", action="store_true", help="always checkpoint")
    compile_group = parser.add_mutually_exclusive_group()
    compile_group.add_argument("--compile", dest="compile", action="store_true", default=None)
    compile_group.add_argument("--no-compile", dest="compile", action="store_false")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print(
            "bench/gpu.py: no CUDA device here (torch.cuda.is_available() is False); the full "
            "run needs one GPU: run it there, or pass --smoke for the CPU code-path check",
            file=sys.stderr,
        )
        return 2
    plan = SMOKE if args.smoke else FULL
    names = args.presets.split(",") if args.presets else list(plan)
    defaults = {"seq_len": 64, "steps": 2, "warmup": 1, "decode_tokens": 4}
    if not args.smoke:
        defaults = {"seq_len": 8192, "steps": 10, "warmup": 3, "decode_tokens": 128}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.smoke:
        args.prompt_tokens = min(args.prompt_tokens, 16)
        if args.compile is None:
            args.compile = True  # the GPU run's code path (codekiln's CPU default is off)
    if args.decode_tokens < 2:
        parser.error("--decode-tokens must be at least 2 (the first token is timed apart)")

    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = compute_dtype(TrainConfig(dtype="auto"), device)
    peak, why = device_peak(device, dtype)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    results: dict = {
        "device": name or "cpu",
        "torch": torch.__version__,
        "smoke": args.smoke,
        "peak_flops": peak,
        "peak_source": "datasheet (dense bf16)" if why is None else why,
        "presets": {},
    }
    print(f"{results['device']}: peak {peak / 1e12:,.1f} TFLOP/s ({results['peak_source']})")
    tokenizer = bench_tokenizer()
    started = time.perf_counter()
    for preset_name in names:
        if time.perf_counter() - started > args.max_minutes * 60:
            print(f"{preset_name}: skipped, past --max-minutes {args.max_minutes}")
            results["presets"][preset_name] = {"skipped": "time"}
            continue
        settings = plan.get(preset_name, {"batch_size": 1})
        config = preset(preset_name, **settings.get("overrides", {}))
        flash = flash_attention_problem(config, args.seq_len, dtype, device)
        if flash is not None:
            print(f"WARNING: {preset_name}: attention will not use FlashAttention: {flash}")
        figures, model = train_preset(preset_name, settings, args, device, dtype)
        figures["mfu"] = figures["achieved_flops"] / peak
        figures["flash_attention"] = "n/a (CPU)" if device.type != "cuda" else (flash or "yes")
        figures.update(decode_rate(model, args, device, tokenizer))
        results["presets"][preset_name] = figures
        del model
        free(device)
        memory = figures.get("peak_memory_gib")
        print(
            f"{preset_name}: {figures['parameters'] / 1e6:,.0f}M parameters, "
            f"{figures['batch_size']} x {figures['seq_len']} tokens"
            f"{', activation checkpointing' if figures['activation_checkpointing'] else ''}"
            f"{', compiled' if figures['compiled'] else ''}: "
            f"{figures['tokens_per_s']:,.0f} tokens/s, MFU {figures['mfu']:.1%}, "
            + (f"peak memory {memory:,.1f} GiB, " if memory is not None else "")
            + f"decode {figures['decode_tokens_per_s']:,.1f} tokens/s"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
