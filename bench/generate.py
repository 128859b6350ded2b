"""CPU generation speed: codekiln's KV-cached decoding against transformers' `generate`.

    python bench/generate.py [--presets tiny,small] [--prompt-tokens 128] [--new-tokens 64]
                             [--repeat 3] [--dtype float32] [--threads N] [--json FIGURES]

For each preset, a randomly initialised model is exported with `export_hf` (and a small BPE
tokenizer trained on this Python's standard library) to a temporary folder; both engines load
that very folder: `CodekilnBackend.from_folder` and `AutoModelForCausalLM.from_pretrained`.
Both decode the same prompt greedily for exactly --new-tokens tokens (end of text ignored:
`ignore_eos` here, `min_new_tokens` there). Ours is timed through `Backend.complete`, with
tokenizing, incremental detokenizing and stop checks included; theirs is the bare `generate`
call on token ids. In float32 the first generated tokens must agree, or the figures would
compare different work and the bench stops (bfloat16 rounds differently: reported only).

Time to first token (TTFT) is a 1-token generation: prefill plus one sampling step. ms per
generated token is (time for N tokens - TTFT) / (N - 1). The engines take turns; the best
of --repeat timings counts. The ratios are ours over theirs (goal: <= 0.5 per token).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from codekiln.generate import CodekilnBackend, SamplingParams
from codekiln.model.config import num_parameters, preset
from codekiln.model.gpt import CodeGPT
from codekiln.model.hf import export_hf
from codekiln.tokenizer.special import EOS
from codekiln.tokenizer.train import train_bpe

PARITY_TOKENS = 8


def stdlib_text(limit: int = 400_000) -> str:
    """Source of this Python's standard library, the first `limit` characters, in name order."""
    parts, size = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        size += len(text)
        if size >= limit:
            break
    return "".join(parts)[:limit]


def write_tokenizer(folder: Path, text: str, vocab_size: int) -> Path:
    tokenizer = train_bpe(text.split("\n\n"), vocab_size, min_frequency=0)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def bench_preset(name: str, args: argparse.Namespace, tokenizer_dir: Path, text: str) -> dict:
    from transformers import AutoModelForCausalLM

    config = preset(name)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_hf(CodeGPT(config), Path(tmp) / name, tokenizer_dir=tokenizer_dir)
        ours = CodekilnBackend.from_folder(folder, device="cpu", dtype=args.dtype)
        theirs = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, args.dtype))
        theirs.eval()
    prompt_ids = ours.prompt_ids(text)[: args.prompt_tokens]
    prompt = ours.tokenizer.decode(prompt_ids, skip_special_tokens=False)
    assert ours.prompt_ids(prompt) == prompt_ids, "the prompt does not re-encode to itself"
    input_ids = torch.tensor([prompt_ids])

    def run_ours(new_tokens: int) -> list[int]:
        params = SamplingParams(greedy=True, max_new_tokens=new_tokens, ignore_eos=True)
        [[sample]] = ours.complete([prompt], params)
        assert sample.tokens == new_tokens
        return list(sample.token_ids)

    def run_theirs(new_tokens: int) -> list[int]:
        out = theirs.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=False,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            max_length=None,
        )
        assert out.shape[1] == len(prompt_ids) + new_tokens
        return out[0, len(prompt_ids) :].tolist()

    agree = run_ours(PARITY_TOKENS) == run_theirs(PARITY_TOKENS)
    if not agree and args.dtype == "float32":
        sys.exit(f"{name}: the engines' greedy tokens differ; the timings would compare nothing")
    engines = {"codekiln": run_ours, "transformers": run_theirs}
    ttft = dict.fromkeys(engines, math.inf)
    total = dict.fromkeys(engines, math.inf)
    for _ in range(args.repeat):
        for engine, run in engines.items():
            ttft[engine] = min(ttft[engine], seconds(run, 1))
            total[engine] = min(total[engine], seconds(run, args.new_tokens))
    figures: dict = {
        "preset": name,
        "parameters": num_parameters(config),
        "greedy_tokens_agree": agree,
    }
    for engine in engines:
        per_token = (total[engine] - ttft[engine]) / (args.new_tokens - 1)
        figures[f"{engine}_ttft_ms"] = ttft[engine] * 1e3
        figures[f"{engine}_ms_per_token"] = per_token * 1e3
        figures[f"{engine}_total_s"] = total[engine]
    figures["ratio_ms_per_token"] = (
        figures["codekiln_ms_per_token"] / figures["transformers_ms_per_token"]
    )
    figures["ratio_ttft"] = figures["codekiln_ttft_ms"] / figures["transformers_ttft_ms"]
    figures["ratio_total"] = figures["codekiln_total_s"] / figures["transformers_total_s"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,small", help="comma-separated presets")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--tokenizer-vocab", type=int, default=4096)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.new_tokens < 2:
        parser.error("--new-tokens must be at least 2 (TTFT is the first one)")

    if args.threads:
        torch.set_num_threads(args.threads)
    text = stdlib_text()
    figures: dict = {
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "presets": {},
    }
    import transformers

    figures["transformers"] = transformers.__version__
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir = write_tokenizer(Path(tmp) / "tokenizer", text, args.tokenizer_vocab)
        for name in args.presets.split(","):
            result = bench_preset(name.strip(), args, tokenizer_dir, text)
            figures["presets"][result["preset"]] = result
            print(
                f"{result['preset']} ({result['parameters'] / 1e6:.1f}M parameters, "
                f"{args.dtype}, {torch.get_num_threads()} threads; prompt {args.prompt_tokens} "
                f"tokens, {args.new_tokens} new, greedy tokens agree: "
                f"{result['greedy_tokens_agree']})"
            )
            print(f"  {'':14} {'TTFT ms':>9} {'ms/token':>9}")
            for engine in ("codekiln", "transformers"):
                print(
                    f"  {engine:14} {result[f'{engine}_ttft_ms']:9.1f} "
                    f"{result[f'{engine}_ms_per_token']:9.2f}"
                )
            print(
                f"  ours / theirs: {result['ratio_ms_per_token']:.2f}x per token (goal <= 0.5), "
                f"{result['ratio_ttft']:.2f}x TTFT, {result['ratio_total']:.2f}x end to end"
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
