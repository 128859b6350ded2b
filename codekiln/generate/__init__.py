"""Generation: one `Backend` interface, three engines behind it.

    backend = load_backend("runs/demo/model")           # or "http://localhost:8000/v1"
    [[sample]] = backend.complete(["def fib(n):"], SamplingParams(greedy=True, stop=["\\ndef"]))
    [[middle]] = backend.infill(["def f(x):\\n    return "], ["\\n"], SamplingParams())
    for delta in backend.stream("import os\\n", SamplingParams(max_new_tokens=32)): ...

- `params`: `SamplingParams` and `Completion`, the plain data every engine shares.
- `text`: incremental detokenization and stop strings matched across token boundaries.
- `sampling`: greedy, temperature, top-k and top-p on logits.
- `backend`: the `Backend` protocol, the FIM prompt layout and `load_backend`.
- `native`: `CodekilnBackend`, codekiln's own KV-cached decoding of a CodeGPT.
- `hf`: `TransformersBackend`, any Hugging Face causal LM through `model.generate`.
- `openai`: `OpenAIBackend`, an OpenAI-compatible `/v1/completions` endpoint.

The data classes import without torch; the engines load torch (and transformers) on first use.
"""

from codekiln.generate.params import Completion, SamplingParams, sample_seed

_LAZY = {
    "Backend": "codekiln.generate.backend",
    "TextStream": "codekiln.generate.backend",
    "load_backend": "codekiln.generate.backend",
    "fim_layout": "codekiln.generate.backend",
    "CodekilnBackend": "codekiln.generate.native",
    "TransformersBackend": "codekiln.generate.hf",
    "OpenAIBackend": "codekiln.generate.openai",
}

__all__ = ["Completion", "SamplingParams", "sample_seed", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
