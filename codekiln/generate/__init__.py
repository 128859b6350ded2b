"""Generation: one `Backend` interface, several engines behind it, and `load_backend` to
pick one from a string.

    backend = load_backend("runs/demo/model")           # or "http://localhost:8000/v1"
    [[sample]] = backend.complete(["def fib(n):"], SamplingParams(greedy=True, stop=["\\ndef"]))
    [[middle]] = backend.infill(["def f(x):\\n    return "], ["\\n"], SamplingParams())
    for delta in backend.stream("import os\\n", SamplingParams(max_new_tokens=32)): ...

Which engine runs the model is the spec's business:

- `http://host:port[/v1]` -> `OpenAIBackend`, any OpenAI-compatible `/v1/completions` server
  (vLLM, TGI, llama.cpp, `codekiln serve`);
- a folder whose config.json is gpt_bigcode or starcoder2 -> `CodekilnBackend`, codekiln's
  own incremental decoding (`engine="transformers"` forces transformers instead);
- any other Hugging Face causal LM folder -> `TransformersBackend`;
- `engine="ctranslate2"` -> `CTranslate2Backend` (a gpt_bigcode folder, converted once),
  `engine="vllm"` -> `VLLMBackend` (a GPU): optional engines made for serving.

Modules:
- `params`: `SamplingParams` and `Completion`, the plain data every engine shares.
- `text`: incremental detokenization and stop strings matched across token boundaries.
- `sampling`: greedy, temperature, top-k and top-p on logits.
- `backend`: the `Backend` protocol, the FIM prompt layout and what the engines share.
- `native`: `CodekilnBackend`, codekiln's own KV-cached decoding of a CodeGPT.
- `hf`: `TransformersBackend`, any Hugging Face causal LM through `model.generate`.
- `openai`: `OpenAIBackend`, an OpenAI-compatible `/v1/completions` endpoint.
- `ct2`, `vllm`: `CTranslate2Backend`, `VLLMBackend`, optional engines for serving.

The engines import `backend` and `params`, never this package's factory; the factory
imports an engine only when asked for it, so the data classes import without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from codekiln.errors import UserError
from codekiln.generate.params import Completion, SamplingParams, sample_seed

if TYPE_CHECKING:
    from codekiln.generate.backend import Backend

ENGINES = ("auto", "codekiln", "transformers", "ctranslate2", "vllm")

_LAZY = {
    "Backend": "codekiln.generate.backend",
    "TextStream": "codekiln.generate.backend",
    "fim_layout": "codekiln.generate.backend",
    "CodekilnBackend": "codekiln.generate.native",
    "TransformersBackend": "codekiln.generate.hf",
    "OpenAIBackend": "codekiln.generate.openai",
}

__all__ = ["ENGINES", "Completion", "SamplingParams", "load_backend", "sample_seed", *_LAZY]


def load_backend(spec: str | Path, **options: Any) -> Backend:
    """The backend for a model folder or an OpenAI-compatible URL (see the module docstring).

    options go to the backend's constructor, except `engine` (one of ENGINES) for a folder.
    """
    text = str(spec)
    if text.startswith(("http://", "https://")):
        options.pop("engine", None)
        from codekiln.generate.openai import OpenAIBackend

        return OpenAIBackend(text, **options)
    engine = options.pop("engine", "auto")
    if engine not in ENGINES:
        raise UserError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    folder = Path(spec)
    if not folder.exists():
        raise UserError(f"model folder {folder} does not exist")
    if not folder.is_dir():
        raise UserError(f"{folder} is not a model folder (a directory with config.json)")
    if engine == "auto":
        engine = "codekiln" if _codekiln_reads(folder) else "transformers"
        if options.get("dtype") == "int8" and engine == "transformers":
            raise UserError(
                f"{folder} is not a model codekiln's engine reads, and int8 decoding is "
                "codekiln's: use --dtype float32 or bfloat16"
            )
    if engine == "codekiln":
        from codekiln.generate.native import CodekilnBackend

        return CodekilnBackend.from_folder(folder, **options)
    if engine == "ctranslate2":
        from codekiln.generate.ct2 import CTranslate2Backend

        return CTranslate2Backend(folder, **options)
    if engine == "vllm":
        from codekiln.generate.vllm import VLLMBackend

        return VLLMBackend(folder, **options)
    from codekiln.model.lora import is_adapter

    if is_adapter(folder):
        raise UserError(
            f"{folder} is a LoRA adapter: the codekiln engine merges it onto its base (drop "
            "--engine transformers), or merge it first (`codekiln train ... --lora --merge`)"
        )
    from codekiln.generate.hf import TransformersBackend

    return TransformersBackend(folder, **options)


def _codekiln_reads(folder: Path) -> bool:
    """Whether config.json describes a model CodeGPT computes (else transformers runs it);
    a LoRA adapter folder is codekiln's to merge onto its base."""
    from codekiln.model.hf import config_from_hf, read_hf_config
    from codekiln.model.lora import is_adapter

    if is_adapter(folder):
        return True
    config = read_hf_config(folder)  # a missing or broken config.json is the user's to fix
    try:
        config_from_hf(config)
    except UserError:
        return False
    return True


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
