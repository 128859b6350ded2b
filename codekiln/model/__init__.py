"""The model: a GPT-BigCode-style decoder in pure, single-device PyTorch.

The config names import without torch; the network and the Hugging Face conversion load
torch on first use, so reading or validating a config stays cheap.
"""

from codekiln.model.config import PRESETS, ModelConfig, flops_per_token, num_parameters, preset

_LAZY = {
    "CodeGPT": "codekiln.model.gpt",
    "KVCache": "codekiln.model.gpt",
    "export_hf": "codekiln.model.hf",
    "import_hf": "codekiln.model.hf",
    "to_hf_state_dict": "codekiln.model.convert",
    "from_hf_state_dict": "codekiln.model.convert",
}

__all__ = ["PRESETS", "ModelConfig", "flops_per_token", "num_parameters", "preset", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
