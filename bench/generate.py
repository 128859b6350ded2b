"""CPU generation speed: codekiln's KV-cached decoding against transformers' `generate` and
CTranslate2, in float32 and int8.

    python bench/generate.py [--presets tiny,small] [--prompt-tokens 128] [--new-tokens 64]
                             [--repeat 5] [--dtype float32] [--no-int8] [--threads N]
                             [--json FIGURES]

For each preset, a randomly initialised model is exported with `export_hf` (and a small BPE
tokenizer trained on this Python's standard library) to a temporary folder; every engine
loads that very folder: `CodekilnBackend.from_folder`, `AutoModelForCausalLM.from_pretrained`
and `CTranslate2Backend` (which converts it with ctranslate2's converter first, outside the
timings). Each decodes the same prompt greedily for exactly --new-tokens tokens (end of text
ignored). Ours and CTranslate2 are timed through `Backend.complete`, tokenizing, incremental
detokenizing and stop checks included; transformers' is the bare `generate` call on token
ids. In float32 the first generated tokens must agree, or the figures would compare
different work and the bench stops (bfloat16 and int8 round differently: reported only).

The int8 rows are codekiln's `--dtype int8` (fbgemm dynamic int8 linears and head) and
CTranslate2's int8 (its `int8` compute type), on the same exported folder, in the same run.
CTranslate2 is left out where the package is missing, or cannot compute in --dtype here.

The llama.cpp rows (through llama-cpp-python) load GGUF files `export_gguf` writes from the
same folder, in f32 and q8_0; they are timed on token ids through its own decoding loop
(greedy, end of text ignored), with its own tokenizer and detokenizer at the ends as the
other engines'. They are left out, with a note, where llama_cpp or gguf is missing.

Time to first token (TTFT) is a 1-token generation: prefill plus one sampling step. ms per
generated token is (time for N tokens - TTFT) / (N - 1). The engines take turns; the best
of --repeat timings counts (on a shared machine the best is the one least disturbed). The
ratios are ours over theirs: goals <= 0.5 per token against transformers, <= 1.0 int8
against CTranslate2 int8; the best row of the others (lowest ms/token) is named as the mark
for codekiln's own CPU engine.
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
from scale import cpu_features  # bench/scale.py, beside this script

from codekiln.generate import CodekilnBackend, SamplingParams
from codekiln.model.config import num_parameters, preset
from codekiln.model.gpt import CodeGPT
from codekiln.model.hf import export_hf
from codekiln.tokenizer.special import EOS
from codekiln.tokenizer.train import train_bpe

PARITY_TOKENS = 8
LLAMA_QUANTS = ("f32", "q8_0")


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


def ctranslate2_computes(dtype: str) -> bool:
    """Whether ctranslate2 is installed and can compute in dtype on this CPU."""
    try:
        import ctranslate2
    except ImportError:
        return False
    return dtype in ctranslate2.get_supported_compute_types("cpu")


def llama_cpp_missing() -> str | None:
    """Why the llama.cpp rows cannot run here, or None when they can."""
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401

        from codekiln.model.gguf import export_gguf  # noqa: F401
    except ImportError as error:
        return f"{error.name} is not installed (pip install codekiln[gguf,llama])"
    return None


def llama_cpp_runner(path: Path, prompt: str, threads: int):
    """A run(new_tokens) -> token ids through llama-cpp-python: tokenize, decode greedily
    with its own loop, detokenize."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(path),
        n_ctx=0,  # the model's
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )

    def run(new_tokens: int) -> list[int]:
        llm.reset()  # no reuse of the previous run's cache: every run prefills the prompt
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        tokens = []
        for token in llm.generate(ids, temp=0.0, repeat_penalty=1.0):
            tokens.append(token)
            if len(tokens) == new_tokens:
                break
        llm.detokenize(tokens)
        return tokens

    return run


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def bench_preset(name: str, args: argparse.Namespace, tokenizer_dir: Path, text: str) -> dict:
    from transformers import AutoModelForCausalLM

    config = preset(name)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    gguf_files = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_hf(CodeGPT(config), Path(tmp) / name, tokenizer_dir=tokenizer_dir)
        backends = {"codekiln": CodekilnBackend.from_folder(folder, device="cpu", dtype=args.dtype)}
        theirs = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, args.dtype))
        theirs.eval()
        if args.int8:
            backends["codekiln_int8"] = CodekilnBackend.from_folder(folder, dtype="int8")
        ct2_dtypes = [d for d in (args.dtype, "int8" if args.int8 else None) if d]
        for dtype in ct2_dtypes:
            if ctranslate2_computes(dtype):
                from codekiln.generate.ct2 import CTranslate2Backend

                key = "ctranslate2" + ("_int8" if dtype == "int8" else "")
                backends[key] = CTranslate2Backend(folder, "cpu", dtype, threads=threads)
        if args.llama_cpp:
            from codekiln.model.gguf import export_gguf

            # Read into memory now: the folder goes when this block ends.
            for quant in args.llama_quants:
                path = export_gguf(folder, Path(tmp) / f"model-{quant}.gguf", quant)
                gguf_files[quant] = path.read_bytes()
    ours = backends["codekiln"]
    prompt_ids = ours.prompt_ids(text)[: args.prompt_tokens]
    prompt = ours.tokenizer.decode(prompt_ids, skip_special_tokens=False)
    assert ours.prompt_ids(prompt) == prompt_ids, "the prompt does not re-encode to itself"
    input_ids = torch.tensor([prompt_ids])

    def through_backend(backend):
        def run(new_tokens: int) -> list[int]:
            params = SamplingParams(greedy=True, max_new_tokens=new_tokens, ignore_eos=True)
            [[sample]] = backend.complete([prompt], params)
            assert sample.tokens == new_tokens
            return list(sample.token_ids)

        return run

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

    engines = {key: through_backend(backend) for key, backend in backends.items()}
    engines["transformers"] = run_theirs
    gguf_dir = tempfile.TemporaryDirectory()
    for quant, data in gguf_files.items():
        path = Path(gguf_dir.name) / f"model-{quant}.gguf"
        path.write_bytes(data)
        key = "llama_cpp" + ("" if quant == "f32" else f"_{quant}")
        engines[key] = llama_cpp_runner(path, prompt, threads)
    reference = engines["codekiln"](PARITY_TOKENS)
    agree = {key: run(PARITY_TOKENS) == reference for key, run in engines.items()}
    exact = [key for key in ("transformers", "ctranslate2") if key in engines]
    if args.dtype == "float32" and not all(agree[key] for key in exact):
        sys.exit(f"{name}: the engines' greedy tokens differ ({agree}); the timings would differ")
    ttft = dict.fromkeys(engines, math.inf)
    total = dict.fromkeys(engines, math.inf)
    for _ in range(args.repeat):
        for engine, run in engines.items():
            ttft[engine] = min(ttft[engine], seconds(run, 1))
            total[engine] = min(total[engine], seconds(run, args.new_tokens))
    figures: dict = {
        "preset": name,
        "parameters": num_parameters(config),
        "greedy_tokens_agree": agree["transformers"],
        "agree_with_codekiln": agree,
        "engines": list(engines),
    }
    for engine in engines:
        per_token = (total[engine] - ttft[engine]) / (args.new_tokens - 1)
        figures[f"{engine}_ttft_ms"] = ttft[engine] * 1e3
        figures[f"{engine}_ms_per_token"] = per_token * 1e3
        figures[f"{engine}_total_s"] = total[engine]
    figures.update(ratios(figures, "codekiln", "transformers", ""))
    if "ctranslate2" in engines:
        figures.update(ratios(figures, "codekiln", "ctranslate2", "_vs_ctranslate2"))
    if "ctranslate2_int8" in engines:
        figures.update(ratios(figures, "codekiln_int8", "ctranslate2_int8", "_int8_vs_ctranslate2"))
    if "llama_cpp" in engines:
        figures.update(ratios(figures, "codekiln", "llama_cpp", "_vs_llama_cpp"))
    if "llama_cpp_q8_0" in engines and "codekiln_int8" in engines:
        figures.update(
            ratios(figures, "codekiln_int8", "llama_cpp_q8_0", "_int8_vs_llama_cpp_q8_0")
        )
    others = [e for e in engines if not e.startswith("codekiln")]
    figures["best_other"] = min(others, key=lambda e: figures[f"{e}_ms_per_token"])
    gguf_dir.cleanup()
    return figures


def ratios(figures: dict, ours: str, theirs: str, suffix: str) -> dict:
    return {
        f"ratio_ms_per_token{suffix}": figures[f"{ours}_ms_per_token"]
        / figures[f"{theirs}_ms_per_token"],
        f"ratio_ttft{suffix}": figures[f"{ours}_ttft_ms"] / figures[f"{theirs}_ttft_ms"],
        f"ratio_total{suffix}": figures[f"{ours}_total_s"] / figures[f"{theirs}_total_s"],
    }


def print_preset(result: dict, args: argparse.Namespace) -> None:
    print(
        f"{result['preset']} ({result['parameters'] / 1e6:.1f}M parameters, {args.dtype}, "
        f"{torch.get_num_threads()} threads; prompt {args.prompt_tokens} tokens, "
        f"{args.new_tokens} new; first {PARITY_TOKENS} greedy tokens as codekiln "
        f"{args.dtype}: "
        + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in result["agree_with_codekiln"].items())
        + ")"
    )
    print(f"  {'':18} {'TTFT ms':>9} {'ms/token':>9}")
    for engine in result["engines"]:
        label = engine.replace("_int8", " int8").replace("llama_cpp_", "llama.cpp ")
        label = label.replace("llama_cpp", "llama.cpp f32")
        print(
            f"  {label:18} {result[f'{engine}_ttft_ms']:9.1f} "
            f"{result[f'{engine}_ms_per_token']:9.2f}"
        )
    print(
        f"  ours / transformers: {result['ratio_ms_per_token']:.2f}x per token (goal <= 0.5), "
        f"{result['ratio_ttft']:.2f}x TTFT, {result['ratio_total']:.2f}x end to end"
    )
    if "ratio_ms_per_token_vs_ctranslate2" in result:
        print(
            f"  ours / CTranslate2, {args.dtype}: "
            f"{result['ratio_ms_per_token_vs_ctranslate2']:.2f}x per token, "
            f"{result['ratio_ttft_vs_ctranslate2']:.2f}x TTFT"
        )
    if "ratio_ms_per_token_int8_vs_ctranslate2" in result:
        print(
            f"  ours / CTranslate2, int8: "
            f"{result['ratio_ms_per_token_int8_vs_ctranslate2']:.2f}x per token (goal <= 1.0), "
            f"{result['ratio_ttft_int8_vs_ctranslate2']:.2f}x TTFT"
        )
    if "ratio_ms_per_token_vs_llama_cpp" in result:
        print(
            f"  ours / llama.cpp, {args.dtype} vs f32: "
            f"{result['ratio_ms_per_token_vs_llama_cpp']:.2f}x per token, "
            f"{result['ratio_ttft_vs_llama_cpp']:.2f}x TTFT"
        )
    if "ratio_ms_per_token_int8_vs_llama_cpp_q8_0" in result:
        print(
            f"  ours / llama.cpp, int8 vs q8_0: "
            f"{result['ratio_ms_per_token_int8_vs_llama_cpp_q8_0']:.2f}x per token, "
            f"{result['ratio_ttft_int8_vs_llama_cpp_q8_0']:.2f}x TTFT"
        )
    best = result["best_other"]
    fastest_ours = min(
        (e for e in result["engines"] if e.startswith("codekiln")),
        key=lambda e: result[f"{e}_ms_per_token"],
    )
    print(
        f"  the mark for codekiln's CPU engine: {best} at "
        f"{result[f'{best}_ms_per_token']:.2f} ms/token; ours at best ({fastest_ours}) "
        f"{result[f'{fastest_ours}_ms_per_token'] / result[f'{best}_ms_per_token']:.2f}x that"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,small", help="comma-separated presets")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time codekiln's int8 against CTranslate2's int8 (default: on)",
    )
    parser.add_argument(
        "--llama-cpp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time llama.cpp on GGUF exports, f32 and q8_0 (default: on where installed)",
    )
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
        "cpu": cpu_features(),
        "torch": torch.__version__,
        "presets": {},
    }
    import transformers

    figures["transformers"] = transformers.__version__
    try:
        import ctranslate2

        figures["ctranslate2"] = ctranslate2.__version__
    except ImportError:
        print("ctranslate2 is not installed: its rows are left out")
    args.llama_quants = LLAMA_QUANTS
    if args.llama_cpp and (missing := llama_cpp_missing()):
        print(f"llama.cpp rows left out: {missing}")
        args.llama_cpp = False
    if args.llama_cpp:
        import llama_cpp

        figures["llama_cpp"] = llama_cpp.__version__
        if "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode():
            # Its AMX kernels die with SIGILL on q8_0 here; the Makefile's build leaves them out.
            print("llama.cpp q8_0 row left out: llama-cpp-python was built with AMX kernels")
            args.llama_quants = ("f32",)
    print(f"CPU: {figures['cpu']}")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir = write_tokenizer(Path(tmp) / "tokenizer", text, args.tokenizer_vocab)
        for name in args.presets.split(","):
            result = bench_preset(name.strip(), args, tokenizer_dir, text)
            figures["presets"][result["preset"]] = result
            print_preset(result, args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
