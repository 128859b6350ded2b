"""Continuous batching in codekiln's server: concurrent requests through one running decode
batch against the same scheduler with batching off (`max_batch` 1), in one run.

    python bench/batching.py [--preset small] [--clients 16] [--prompt-tokens 400]
                             [--new-tokens 60] [--max-batch 16] [--threads N] [--json FIGURES]

A randomly initialised preset is exported with `export_hf` (and a small BPE tokenizer
trained on this Python's standard library) and loaded with `CodekilnBackend.from_folder`.
--clients greedy requests, each a different --prompt-tokens slice of the standard library,
are submitted at once to the server's `Scheduler` (no HTTP) and decode exactly --new-tokens
tokens each (end of text ignored). Each configuration reports tokens/s (generated tokens
over the wall time from the first submit to the last sample), median and worst time to first
token, and where the scheduler's time went: prefill (the same work with batching on or off)
and decode steps. The batched samples must equal the unbatched ones, or the figures compare
different work and the bench stops. The ratio is batched over unbatched tokens/s
(goal: >= 4).

On a CPU prefill is compute-bound and costs the same either way, so it bounds the ratio:
with 400-token prompts and 60 new tokens, (prefill + serial decode) / prefill.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import stdlib_text, write_tokenizer  # noqa: E402  (bench/generate.py)

from codekiln.generate import CodekilnBackend, SamplingParams  # noqa: E402
from codekiln.model.config import num_parameters, preset  # noqa: E402
from codekiln.model.gpt import CodeGPT  # noqa: E402
from codekiln.model.hf import export_hf  # noqa: E402
from codekiln.serve import ServeConfig  # noqa: E402
from codekiln.serve.api import GenerationRequest  # noqa: E402
from codekiln.serve.batching import BatchRunner  # noqa: E402
from codekiln.serve.metrics import Metrics  # noqa: E402
from codekiln.serve.scheduler import Scheduler  # noqa: E402


class Timed:
    """Seconds the scheduler spends in prefill and in decode steps (wrapping its methods)."""

    def __init__(self) -> None:
        self.seconds = {"_prefill": 0.0, "_decode": 0.0}
        self.steps = 0
        for name in self.seconds:
            setattr(BatchRunner, name, self._wrap(name, getattr(BatchRunner, name)))

    def _wrap(self, name, method):
        def timed(runner, *args):
            start = time.perf_counter()
            result = method(runner, *args)
            self.seconds[name] += time.perf_counter() - start
            self.steps += name == "_decode"
            return result

        return timed

    def take(self) -> dict:
        figures = {"prefill_s": self.seconds["_prefill"], "decode_s": self.seconds["_decode"]}
        figures["decode_steps"] = self.steps
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.steps = 0
        return figures


class Observed(Metrics):
    """Metrics that also keep every histogram observation (time to first token)."""

    def __init__(self) -> None:
        super().__init__()
        self.observed: dict[str, list[float]] = {}

    def observe(self, histogram: str, seconds: float) -> None:
        self.observed.setdefault(histogram, []).append(seconds)
        super().observe(histogram, seconds)


def run(backend, prompts: list[str], args, max_batch: int, timed: Timed) -> tuple[dict, list]:
    metrics = Observed()
    scheduler = Scheduler(
        backend, ServeConfig(max_batch=max_batch, max_queue=len(prompts)), metrics
    )
    params = SamplingParams(greedy=True, max_new_tokens=args.new_tokens, ignore_eos=True)
    start = time.perf_counter()
    generations = [scheduler.submit(GenerationRequest((p,), params)) for p in prompts]
    samples = [generation.result()[0] for generation in generations]
    wall = time.perf_counter() - start
    assert scheduler.close(10), "the scheduler did not stop"
    tokens = sum(sample.tokens for sample in samples)
    assert tokens == args.new_tokens * len(prompts)
    ttft = sorted(metrics.observed["time_to_first_token_seconds"])
    figures = {
        "max_batch": max_batch,
        "seconds": wall,
        "tokens_per_s": tokens / wall,
        "ttft_median_s": statistics.median(ttft),
        "ttft_max_s": ttft[-1],
        **timed.take(),
    }
    return figures, [sample.text for sample in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--prompt-tokens", type=int, default=400)
    parser.add_argument("--new-tokens", type=int, default=60)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--tokenizer-vocab", type=int, default=4096)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = preset(args.preset)
    if args.prompt_tokens + args.new_tokens > config.n_positions:
        parser.error(f"prompt + new tokens exceed the {args.preset} context")
    text = stdlib_text()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir = write_tokenizer(Path(tmp) / "tokenizer", text, args.tokenizer_vocab)
        folder = export_hf(CodeGPT(config), Path(tmp) / args.preset, tokenizer_dir=tokenizer_dir)
        backend = CodekilnBackend.from_folder(folder, device="cpu")
    ids = backend.prompt_ids(text)
    stride = max(1, (len(ids) - args.prompt_tokens) // args.clients)
    prompts = [
        backend.tokenizer.decode(ids[i * stride : i * stride + args.prompt_tokens])
        for i in range(args.clients)
    ]
    timed = Timed()
    batched, batched_texts = run(backend, prompts, args, args.max_batch, timed)
    serial, serial_texts = run(backend, prompts, args, 1, timed)
    if batched_texts != serial_texts:
        sys.exit("batched and unbatched samples differ: the timings would compare nothing")
    figures = {
        "preset": args.preset,
        "parameters": num_parameters(config),
        "clients": args.clients,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batched": batched,
        "unbatched": serial,
        "ratio_tokens_per_s": batched["tokens_per_s"] / serial["tokens_per_s"],
        "ratio_decode": serial["decode_s"] / batched["decode_s"],
    }
    print(
        f"{args.preset} ({figures['parameters'] / 1e6:.1f}M parameters, {figures['threads']} "
        f"threads): {args.clients} clients, prompts of {args.prompt_tokens} tokens, "
        f"{args.new_tokens} new tokens each"
    )
    header = ("max_batch", "tokens/s", "TTFT p50", "max", "prefill", "decode")
    print("  " + " ".join(f"{name:>9}" for name in header))
    for row in (batched, serial):
        print(
            f"  {row['max_batch']:9d} {row['tokens_per_s']:9.1f} {row['ttft_median_s']:8.2f}s "
            f"{row['ttft_max_s']:8.2f}s {row['prefill_s']:8.2f}s {row['decode_s']:8.2f}s"
        )
    print(
        f"  batched / unbatched: {figures['ratio_tokens_per_s']:.2f}x tokens/s (goal >= 4), "
        f"{figures['ratio_decode']:.2f}x in the decode steps"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
