"""Hugging Face format in and out: config.json + model.safetensors, without transformers.

Learned positions export as `gpt_bigcode` (StarCoder), rotary ones as `starcoder2`; both load
with `transformers.AutoModelForCausalLM`, vLLM and TGI. Weight layouts:

- ours: `blocks.{i}.attn.c_attn` is [Q | K | V] with n_kv_heads key/value heads.
- gpt_bigcode, multi-query: the same [Q | K | V] (one K/V head). Multi-head: grouped per head,
  [q_0 k_0 v_0 | q_1 k_1 v_1 | ...], because transformers views the output as (H, 3 * hd).
- starcoder2: separate q_proj, k_proj, v_proj; rotary halves as ours (GPT-NeoX style).

The output projection is tied to the token embedding and saved once, as transformers does.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from codekiln.errors import UserError
from codekiln.manifest import write_atomic, write_json
from codekiln.model.config import ModelConfig, num_parameters
from codekiln.model.gpt import CodeGPT

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
MODEL_TYPES = ("gpt_bigcode", "starcoder2")
# transformers' activation names -> ModelConfig.activation, for the GELUs CodeGPT computes.
# The tanh approximation, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), under every name
# transformers gives it (gelu_fast rounds sqrt(2/pi) to 10 digits); the exact GELU,
# x Phi(x) with erf, as "gelu" and "gelu_python". Not gelu_10 (clipped) nor quick_gelu.
HF_ACTIVATIONS = {
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_python_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_accurate": "gelu_tanh",
    "gelu": "gelu",
    "gelu_python": "gelu",
}
# ModelConfig.activation -> the name an export writes.
TO_HF_ACTIVATION = {"gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu"}
# Buffers some checkpoints carry that are no weights (causal masks, rotary frequencies).
_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")

_ARCHITECTURES = {"gpt_bigcode": "GPTBigCodeForCausalLM", "starcoder2": "Starcoder2ForCausalLM"}
# transformers' defaults for keys a config.json may leave out.
_GPT_BIGCODE_DEFAULTS = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "multi_query": True,
    "layer_norm_epsilon": 1e-5,
    "activation_function": "gelu_pytorch_tanh",
    "resid_pdrop": 0.1,
    "initializer_range": 0.02,
}
_STARCODER2_DEFAULTS = {
    "vocab_size": 49152,
    "hidden_size": 3072,
    "intermediate_size": 12288,
    "num_hidden_layers": 30,
    "num_attention_heads": 24,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "norm_epsilon": 1e-5,
    "hidden_act": "gelu_pytorch_tanh",
    "residual_dropout": 0.0,
    "initializer_range": 0.018042,
}


def model_type(config: ModelConfig) -> str:
    """The transformers architecture a config exports as; UserError if none fits."""
    if config.position == "rotary":
        return "starcoder2"
    if config.n_kv_heads not in (1, config.n_head):
        raise UserError(
            f"gpt_bigcode has multi-query (n_kv_heads 1) or multi-head (n_kv_heads = n_head) "
            f"attention only, not {config.n_kv_heads} of {config.n_head} heads: use "
            'position="rotary" to export grouped-query attention as starcoder2'
        )
    return "gpt_bigcode"


def to_hf_state_dict(model: CodeGPT) -> dict[str, Tensor]:
    """The model's weights under transformers' names for its model_type (tied weight once)."""
    config = model.config
    kind = model_type(config)
    state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    C, kv = config.n_embd, config.kv_dim
    out: dict[str, Tensor] = {}
    if kind == "gpt_bigcode":
        out["transformer.wte.weight"] = state["wte.weight"]
        out["transformer.wpe.weight"] = state["wpe.weight"]
        for i in range(config.n_layer):
            ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
            for name in _BLOCK_PARAMS:
                tensor = state[ours + name]
                if name.startswith("attn.c_attn") and config.n_kv_heads > 1:
                    tensor = _qkv_to_per_head(tensor, config.n_head)
                out[theirs + name] = tensor
        out["transformer.ln_f.weight"] = state["ln_f.weight"]
        out["transformer.ln_f.bias"] = state["ln_f.bias"]
        return out
    out["model.embed_tokens.weight"] = state["wte.weight"]
    for i in range(config.n_layer):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        for suffix in ("weight", "bias"):
            q, k, v = state[ours + "attn.c_attn." + suffix].split((C, kv, kv))
            # clone: safetensors refuses tensors that share storage
            out[theirs + "self_attn.q_proj." + suffix] = q.clone()
            out[theirs + "self_attn.k_proj." + suffix] = k.clone()
            out[theirs + "self_attn.v_proj." + suffix] = v.clone()
            for mine, hf in _STARCODER2_NAMES.items():
                out[theirs + hf + "." + suffix] = state[ours + mine + "." + suffix]
    out["model.norm.weight"] = state["ln_f.weight"]
    out["model.norm.bias"] = state["ln_f.bias"]
    return out


def from_hf_state_dict(config: ModelConfig, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """transformers' weights (gpt_bigcode names for learned positions, starcoder2 names for
    rotary) as a CodeGPT state dict. UserError for missing, unexpected or untied weights."""
    kind = model_type(config)
    state = {k: v for k, v in state.items() if not k.endswith(_BUFFER_SUFFIXES)}
    C, kv = config.n_embd, config.kv_dim
    used: set[str] = set()

    def take(name: str) -> Tensor:
        if name not in state:
            raise UserError(f"{kind} weights lack {name}: the checkpoint is incomplete")
        used.add(name)
        return state[name]

    out: dict[str, Tensor] = {}
    if kind == "gpt_bigcode":
        embedding = out["wte.weight"] = take("transformer.wte.weight")
        out["wpe.weight"] = take("transformer.wpe.weight")
        for i in range(config.n_layer):
            ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
            for name in _BLOCK_PARAMS:
                tensor = take(theirs + name)
                if name.startswith("attn.c_attn") and config.n_kv_heads > 1:
                    _check_shape(theirs + name, tensor, (3 * C, C)[: tensor.dim()])
                    tensor = _qkv_from_per_head(tensor, config.n_head)
                out[ours + name] = tensor
        out["ln_f.weight"] = take("transformer.ln_f.weight")
        out["ln_f.bias"] = take("transformer.ln_f.bias")
    else:
        embedding = out["wte.weight"] = take("model.embed_tokens.weight")
        for i in range(config.n_layer):
            ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
            for suffix in ("weight", "bias"):
                parts = []
                for proj, rows in (("q_proj", C), ("k_proj", kv), ("v_proj", kv)):
                    name = theirs + "self_attn." + proj + "." + suffix
                    tensor = take(name)
                    _check_shape(name, tensor, (rows, C)[: tensor.dim()])
                    parts.append(tensor)
                out[ours + "attn.c_attn." + suffix] = torch.cat(parts)
                for mine, hf in _STARCODER2_NAMES.items():
                    out[ours + mine + "." + suffix] = take(theirs + hf + "." + suffix)
        out["ln_f.weight"] = take("model.norm.weight")
        out["ln_f.bias"] = take("model.norm.bias")
    head = state.get("lm_head.weight")
    if head is not None:
        used.add("lm_head.weight")
        if head.shape != embedding.shape or not torch.equal(head, embedding):
            raise UserError(
                "lm_head.weight differs from the token embedding: codekiln models tie them, "
                "so checkpoints with a separate output head cannot be loaded"
            )
    unexpected = sorted(set(state) - used)
    if unexpected:
        raise UserError(
            f"{kind} checkpoint has weights codekiln does not know: {', '.join(unexpected[:5])}"
            + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else "")
        )
    return out


_BLOCK_PARAMS = tuple(
    f"{module}.{suffix}"
    for module in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")
    for suffix in ("weight", "bias")
)
# Our block's names -> starcoder2's, for everything but the fused q/k/v.
_STARCODER2_NAMES = {
    "ln_1": "input_layernorm",
    "attn.c_proj": "self_attn.o_proj",
    "ln_2": "post_attention_layernorm",
    "mlp.c_fc": "mlp.c_fc",
    "mlp.c_proj": "mlp.c_proj",
}


def _qkv_to_per_head(tensor: Tensor, n_head: int) -> Tensor:
    """[Q | K | V] rows -> [q_0 k_0 v_0 | q_1 k_1 v_1 | ...] (multi-head gpt_bigcode)."""
    rest = tensor.shape[1:]
    return tensor.reshape(3, n_head, -1, *rest).transpose(0, 1).reshape(tensor.shape).clone()


def _qkv_from_per_head(tensor: Tensor, n_head: int) -> Tensor:
    rest = tensor.shape[1:]
    return tensor.reshape(n_head, 3, -1, *rest).transpose(0, 1).reshape(tensor.shape).contiguous()


def _check_shape(name: str, tensor: Tensor, expected: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != tuple(expected):
        raise UserError(
            f"weight {name} has shape {tuple(tensor.shape)}, but config.json implies "
            f"{tuple(expected)}: the config does not match the weights"
        )


def hf_config(config: ModelConfig, bos_id: int = 0, eos_id: int = 0, dtype: str = "float32"):
    """config.json for transformers, vLLM and TGI."""
    kind = model_type(config)
    common = {
        "architectures": [_ARCHITECTURES[kind]],
        "model_type": kind,
        "vocab_size": config.vocab_size,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "initializer_range": config.std,
        "tie_word_embeddings": True,
        "use_cache": True,
        "torch_dtype": dtype,
    }
    if kind == "gpt_bigcode":
        return {
            **common,
            "n_positions": config.n_positions,
            "n_embd": config.n_embd,
            "n_layer": config.n_layer,
            "n_head": config.n_head,
            "n_inner": config.inner_dim,
            "multi_query": config.n_kv_heads == 1,
            "activation_function": TO_HF_ACTIVATION[config.activation],
            "layer_norm_epsilon": config.layer_norm_epsilon,
            "resid_pdrop": config.dropout,
            "embd_pdrop": config.dropout,
            "attn_pdrop": config.dropout,
            "scale_attn_weights": True,
            "attention_softmax_in_fp32": True,
            "scale_attention_softmax_in_fp32": True,
        }
    return {
        **common,
        "max_position_embeddings": config.n_positions,
        "hidden_size": config.n_embd,
        "intermediate_size": config.inner_dim,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.n_kv_heads,
        "hidden_act": TO_HF_ACTIVATION[config.activation],
        "norm_epsilon": config.layer_norm_epsilon,
        # transformers 5 reads rope_parameters; vLLM and older transformers read rope_theta.
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "sliding_window": None,
        "use_bias": True,
        "attention_dropout": config.dropout,
        "residual_dropout": config.dropout,
        "embedding_dropout": config.dropout,
    }


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """The ModelConfig of a gpt_bigcode or starcoder2 config.json; UserError for settings
    CodeGPT does not compute (non-GELU activation, untied head, cross-attention, scaled RoPE)."""
    kind = hf.get("model_type")
    if kind not in MODEL_TYPES:
        raise UserError(
            f"model_type {kind!r} is not supported: codekiln loads {' and '.join(MODEL_TYPES)} "
            "models (StarCoder and StarCoder2)"
        )
    if hf.get("tie_word_embeddings", True) is False:
        raise UserError(f"{kind} model has an untied output head; codekiln models tie it")
    if kind == "gpt_bigcode":
        hf = {**_GPT_BIGCODE_DEFAULTS, **hf}
        activation = _activation(hf["activation_function"])
        if not hf.get("scale_attn_weights", True) or hf.get("add_cross_attention", False):
            raise UserError("gpt_bigcode without scaled attention or with cross-attention")
        return ModelConfig(
            vocab_size=hf["vocab_size"],
            n_positions=hf["n_positions"],
            n_embd=hf["n_embd"],
            n_layer=hf["n_layer"],
            n_head=hf["n_head"],
            n_kv_heads=1 if hf["multi_query"] else hf["n_head"],
            n_inner=_default_to_none(hf.get("n_inner"), 4 * hf["n_embd"]),
            activation=activation,
            position="learned",
            layer_norm_epsilon=hf["layer_norm_epsilon"],
            dropout=hf["resid_pdrop"],
            init_std=_default_to_none(hf["initializer_range"], hf["n_embd"] ** -0.5),
        )
    hf = {**_STARCODER2_DEFAULTS, **hf}
    activation = _activation(hf["hidden_act"])
    if not hf.get("use_bias", True):
        raise UserError("starcoder2 model without biases; codekiln's linear layers have them")
    head_dim = hf.get("head_dim")
    if head_dim is not None and head_dim * hf["num_attention_heads"] != hf["hidden_size"]:
        raise UserError(f"starcoder2 head_dim {head_dim} is not hidden_size / heads")
    rope = hf.get("rope_parameters") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if hf.get("rope_scaling") or rope_type != "default" or hf.get("partial_rotary_factor", 1) != 1:
        raise UserError(f"starcoder2 with scaled or partial RoPE ({rope_type}) is not supported")
    context = hf["max_position_embeddings"]
    if hf.get("sliding_window"):
        # Up to the window, sliding-window attention is plain causal attention.
        context = min(context, hf["sliding_window"])
    return ModelConfig(
        vocab_size=hf["vocab_size"],
        n_positions=context,
        n_embd=hf["hidden_size"],
        n_layer=hf["num_hidden_layers"],
        n_head=hf["num_attention_heads"],
        n_kv_heads=hf["num_key_value_heads"],
        n_inner=_default_to_none(hf["intermediate_size"], 4 * hf["hidden_size"]),
        activation=activation,
        position="rotary",
        rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
        layer_norm_epsilon=hf["norm_epsilon"],
        dropout=hf["residual_dropout"],
        init_std=_default_to_none(hf["initializer_range"], hf["hidden_size"] ** -0.5),
    )


def _default_to_none(value: Any, default: Any) -> Any:
    """None where a config.json states CodeGPT's default, so an export round-trips exactly."""
    if value is None or (isinstance(value, int | float) and math.isclose(value, default)):
        return None
    return value


def _activation(name: Any) -> str:
    """ModelConfig.activation for a transformers activation name; UserError for others."""
    if not isinstance(name, str) or name not in HF_ACTIVATIONS:
        raise UserError(
            f"activation {name!r} is not supported: CodeGPT computes GELU, exact or its tanh "
            f"approximation ({', '.join(HF_ACTIVATIONS)})"
        )
    return HF_ACTIVATIONS[name]


def export_hf(
    model: CodeGPT,
    out_dir: str | Path,
    tokenizer_dir: str | Path | None = None,
    card: dict | None = None,
) -> Path:
    """Write a folder `transformers.AutoModelForCausalLM.from_pretrained` loads.

    config.json, model.safetensors, generation_config.json, the tokenizer's files when
    tokenizer_dir is given (bos = eos = its <|endoftext|> id; 0 without one) and a README.md
    model card from `card` (name, description, license, data, training, evaluation, ...).
    The weights keep the model's dtype; the model must be whole (gather FSDP shards first).
    """
    config = model.config
    kind = model_type(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    eos_id = 0
    if tokenizer_dir is not None:
        eos_id = _tokenizer_eos(Path(tokenizer_dir), config.vocab_size)
    from safetensors.torch import save_file

    tensors = {name: t.cpu().contiguous() for name, t in to_hf_state_dict(model).items()}
    dtype = str(model.wte.weight.dtype).removeprefix("torch.")
    tmp = out / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out / WEIGHTS)
    if tokenizer_dir is not None:
        for name in TOKENIZER_FILES:
            source = Path(tokenizer_dir) / name
            if source.exists():
                shutil.copyfile(source, out / name)
    write_json(
        out / "generation_config.json",
        {
            "bos_token_id": eos_id,
            "eos_token_id": eos_id,
            "pad_token_id": eos_id,
            "max_length": config.n_positions,
        },
    )
    write_atomic(out / "README.md", model_card(config, kind, card))
    write_json(out / "config.json", hf_config(config, eos_id, eos_id, dtype))
    return out


def _tokenizer_eos(folder: Path, vocab_size: int) -> int:
    from tokenizers import Tokenizer

    from codekiln.tokenizer.special import EOS

    file = folder / "tokenizer.json"
    if not file.exists():
        raise UserError(f"no tokenizer.json in {folder}: give the tokenizer stage's folder")
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as exc:  # the Rust side raises plain Exceptions
        raise UserError(f"{file} is not a readable tokenizer.json ({exc})") from None
    eos_id = tokenizer.token_to_id(EOS)
    if eos_id is None:
        raise UserError(f"tokenizer {folder} has no {EOS} token to end generation with")
    if tokenizer.get_vocab_size() > vocab_size:
        raise UserError(
            f"tokenizer {folder} has {tokenizer.get_vocab_size()} tokens but the model embeds "
            f"{vocab_size}: set the model's vocab_size to at least the tokenizer's"
        )
    return eos_id


def model_card(config: ModelConfig, kind: str, card: dict | None = None) -> str:
    """README.md: YAML front matter for the Hub, then the card's facts, one section a key.

    Values may be text, a dict (a list of `key: value`) or a list (bullets).
    """
    card = dict(card or {})
    name = str(card.pop("name", "codekiln model"))
    description = card.pop("description", None)
    license_id = card.pop("license", None)
    front = [
        "---",
        f"license: {json.dumps(str(license_id).lower() if license_id else 'other')}",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        f"tags: [code, codekiln, {kind}]",
        "---",
    ]
    heads = f"{config.n_head} ({config.n_kv_heads} key/value)"
    model = {
        "architecture": f"{kind} ({config.position} positions)",
        "parameters": f"{num_parameters(config):,}",
        "layers": config.n_layer,
        "hidden size": config.n_embd,
        "attention heads": heads,
        "context": f"{config.n_positions} tokens",
        "vocabulary": f"{config.vocab_size} tokens",
    }
    lines = [*front, "", f"# {name}", ""]
    lines += [
        str(description) if description else "A code language model trained with codekiln.",
        "",
    ]
    lines += ["## Model", "", _render(model), ""]
    lines += [
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
        'model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")',
        'inputs = tokenizer("def fibonacci(n):", return_tensors="pt")',
        "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=64)[0]))",
        "```",
        "",
    ]
    for key in ("data", "training", "evaluation", *[k for k in card if k not in _ORDERED]):
        if key in card:
            lines += [f"## {key.replace('_', ' ').capitalize()}", "", _render(card[key]), ""]
    lines += ["## License", "", str(license_id) if license_id else "Not stated.", ""]
    return "\n".join(lines)


_ORDERED = ("data", "training", "evaluation")


def _render(value: Any) -> str:
    if isinstance(value, dict):
        return "\n".join(f"- **{k}**: {_inline(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "\n".join(f"- {_inline(v)}" for v in value)
    return str(value)


def _inline(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return "`" + json.dumps(value, default=str) + "`"
    return str(value)


def read_hf_config(folder: str | Path) -> dict[str, Any]:
    """A Hugging Face model folder's config.json; a UserError if it is missing or not JSON."""
    config_file = Path(folder) / "config.json"
    if not config_file.exists():
        raise UserError(f"no config.json in {folder}: give a Hugging Face model folder")
    try:
        return json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{config_file} is not readable JSON ({exc})") from None


def import_hf(folder: str | Path) -> CodeGPT:
    """A CodeGPT from a gpt_bigcode or starcoder2 folder (ours or transformers'), in eval
    mode, weights in the dtype they were saved in (call .float() for float32)."""
    folder = Path(folder)
    hf = read_hf_config(folder)
    try:
        config = config_from_hf(hf)
    except UserError as exc:
        raise UserError(f"{folder / 'config.json'}: {exc}") from None
    state = from_hf_state_dict(config, _read_weights(folder))
    with torch.device("meta"):
        model = CodeGPT(config)
    expected = model.state_dict()
    for name, tensor in state.items():
        _check_shape(name, tensor, tuple(expected[name].shape))
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def _read_weights(folder: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    index = folder / WEIGHTS_INDEX
    if (folder / WEIGHTS).exists():
        files = [folder / WEIGHTS]
    elif index.exists():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{index} is not a readable safetensors index ({exc})") from None
        files = [folder / name for name in sorted(set(weight_map.values()))]
    elif (folder / "pytorch_model.bin").exists():
        raise UserError(
            f"{folder} holds pytorch_model.bin only: save it as safetensors first "
            "(transformers: model.save_pretrained(folder, safe_serialization=True))"
        )
    else:
        raise UserError(f"no {WEIGHTS} in {folder}: the model folder has no weights")
    state: dict[str, Tensor] = {}
    for file in files:
        try:
            state.update(load_file(str(file)))
        except Exception as exc:  # safetensors raises its own error type, or OSError
            raise UserError(f"{file} is missing or corrupt ({exc})") from None
    return state
