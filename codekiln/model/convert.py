"""Hugging Face format conversion: config.json settings and weight names, both ways.

Learned positions export as `gpt_bigcode` (StarCoder), rotary ones as `starcoder2`; both load
with `transformers.AutoModelForCausalLM`, vLLM and TGI. Weight layouts:

- ours: `blocks.{i}.attn.c_attn` is [Q | K | V] with n_kv_heads key/value heads.
- gpt_bigcode, multi-query: the same [Q | K | V] (one K/V head). Multi-head: grouped per head,
  [q_0 k_0 v_0 | q_1 k_1 v_1 | ...], because transformers views the output as (H, 3 * hd).
- starcoder2: separate q_proj, k_proj, v_proj; rotary halves as ours (GPT-NeoX style).

The output projection is tied to the token embedding and saved once, as transformers does.
Reading and writing model folders (weight files, the tokenizer, the model card) is hf.py's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from codekiln.errors import UserError
from codekiln.model.config import ModelConfig
from codekiln.model.gpt import CodeGPT

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
BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")

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
    "embd_pdrop": 0.1,
    "attn_pdrop": 0.1,
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
    "attention_dropout": 0.0,
    "embedding_dropout": 0.0,
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
    if config.sliding_window is not None or not config.bias:
        raise UserError(
            "gpt_bigcode has neither sliding-window attention nor bias-free layers: use "
            'position="rotary" to export them as starcoder2'
        )
    return "gpt_bigcode"


@dataclass(frozen=True)
class _Slot:
    """Where one transformers tensor lives in CodeGPT: a parameter, or a block of its rows
    (starcoder2's q/k/v share c_attn), reordered per head (`per_head` = n_head) for
    multi-head gpt_bigcode's interleaved c_attn."""

    name: str
    rows: tuple[int, int] | None = None
    per_head: int = 0


def weight_slots(config: ModelConfig) -> dict[str, _Slot]:
    """transformers' tensor name -> its slot in CodeGPT, for the config's model_type.

    >>> slots = weight_slots(ModelConfig(n_embd=8, n_head=2, n_layer=1, position="rotary"))
    >>> slots["model.layers.0.self_attn.k_proj.weight"]
    _Slot(name='blocks.0.attn.c_attn.weight', rows=(8, 12), per_head=0)
    """
    kind = model_type(config)
    C, kv = config.n_embd, config.kv_dim
    linear = ("weight", "bias") if config.bias else ("weight",)
    norm = ("weight", "bias")
    slots: dict[str, _Slot] = {}
    if kind == "gpt_bigcode":
        slots["transformer.wte.weight"] = _Slot("wte.weight")
        slots["transformer.wpe.weight"] = _Slot("wpe.weight")
        per_head = config.n_head if config.n_kv_heads > 1 else 0
        for i in range(config.n_layer):
            for module in _BLOCK_MODULES:
                for leaf in norm if module.startswith("ln") else linear:
                    mine = f"blocks.{i}.{module}.{leaf}"
                    heads = per_head if module == "attn.c_attn" else 0
                    slots[f"transformer.h.{i}.{module}.{leaf}"] = _Slot(mine, per_head=heads)
        for leaf in norm:
            slots[f"transformer.ln_f.{leaf}"] = _Slot(f"ln_f.{leaf}")
    else:
        slots["model.embed_tokens.weight"] = _Slot("wte.weight")
        parts = (("q_proj", 0, C), ("k_proj", C, C + kv), ("v_proj", C + kv, C + 2 * kv))
        for i in range(config.n_layer):
            ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
            for leaf in linear:
                for proj, lo, hi in parts:
                    name = f"{theirs}self_attn.{proj}.{leaf}"
                    slots[name] = _Slot(f"{ours}attn.c_attn.{leaf}", (lo, hi))
            for mine, hf in _STARCODER2_NAMES.items():
                for leaf in norm if mine.startswith("ln") else linear:
                    slots[f"{theirs}{hf}.{leaf}"] = _Slot(f"{ours}{mine}.{leaf}")
        for leaf in norm:
            slots[f"model.norm.{leaf}"] = _Slot(f"ln_f.{leaf}")
    if not config.tie_embeddings:
        slots["lm_head.weight"] = _Slot("lm_head.weight")
    return slots


def to_hf_state_dict(model: CodeGPT) -> dict[str, Tensor]:
    """The model's weights under transformers' names for its model_type (a tied output
    projection once, as the token embedding)."""
    state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    out: dict[str, Tensor] = {}
    for hf_name, slot in weight_slots(model.config).items():
        tensor = state[slot.name]
        if slot.rows is not None:
            tensor = tensor[slot.rows[0] : slot.rows[1]].clone()  # safetensors refuses views
        if slot.per_head:
            tensor = qkv_to_per_head(tensor, slot.per_head)
        out[hf_name] = tensor
    return out


class WeightFiller:
    """Copies transformers' tensors, one at a time as they are read, into CodeGPT's own
    tensors (`targets`, by our names), so a checkpoint never sits in memory beside the
    model; `finish` checks that every slot was filled and nothing was left over."""

    def __init__(self, config: ModelConfig, targets: dict[str, Tensor]):
        self.config = config
        self.kind = model_type(config)
        self.slots = weight_slots(config)
        self.targets = targets
        self.seen: set[str] = set()
        self.unexpected: list[str] = []
        self.head: Tensor | None = None

    def put(self, name: str, tensor: Tensor) -> None:
        if name.endswith(BUFFER_SUFFIXES):
            return
        slot = self.slots.get(name)
        if slot is None:
            if name == "lm_head.weight":  # a tied head saved anyway: checked in finish()
                self.head = tensor
            else:
                self.unexpected.append(name)
            return
        target = self.targets[slot.name]
        if slot.rows is not None:
            target = target[slot.rows[0] : slot.rows[1]]
        _check_shape(name, tensor, tuple(target.shape))
        if slot.per_head:
            tensor = qkv_from_per_head(tensor, slot.per_head)
        with torch.no_grad():
            target.copy_(tensor)
        self.seen.add(name)

    def finish(self) -> None:
        check_weight_names(
            self.kind, self.unexpected, [n for n in self.slots if n not in self.seen]
        )
        if self.head is not None:
            check_tied_head(self.head, self.targets["wte.weight"])


def check_weight_names(kind: str, unexpected: list[str], missing: list[str]) -> None:
    """A UserError for weights a checkpoint has that codekiln does not know, or lacks."""
    if unexpected:
        names = sorted(unexpected)
        raise UserError(
            f"{kind} checkpoint has weights codekiln does not know: "
            + ", ".join(names[:5])
            + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        )
    if missing:
        raise UserError(
            f"{kind} weights lack {missing[0]}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
            + ": the checkpoint is incomplete"
        )


def check_tied_head(head: Tensor, embedding: Tensor) -> None:
    head = head.to(embedding.dtype)
    if head.shape != embedding.shape or not torch.equal(head, embedding):
        raise UserError(
            "lm_head.weight differs from the token embedding although config.json "
            "ties them (tie_word_embeddings is true or unset): set "
            '"tie_word_embeddings": false if the model has its own output head'
        )


def from_hf_state_dict(config: ModelConfig, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """transformers' weights (gpt_bigcode names for learned positions, starcoder2 names for
    rotary) as a CodeGPT state dict, in their dtype. UserError for missing, unexpected or
    inconsistent weights."""
    with torch.device("meta"):
        shapes = {name: t.shape for name, t in CodeGPT(config).state_dict().items()}
    dtype = next(iter(state.values())).dtype if state else torch.float32
    targets = {name: torch.empty(shape, dtype=dtype) for name, shape in shapes.items()}
    filler = WeightFiller(config, targets)
    for name, tensor in state.items():
        filler.put(name, tensor)
    filler.finish()
    return targets


_BLOCK_MODULES = ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")
# Our block's names -> starcoder2's, for everything but the fused q/k/v.
_STARCODER2_NAMES = {
    "ln_1": "input_layernorm",
    "attn.c_proj": "self_attn.o_proj",
    "ln_2": "post_attention_layernorm",
    "mlp.c_fc": "mlp.c_fc",
    "mlp.c_proj": "mlp.c_proj",
}


def qkv_to_per_head(tensor: Tensor, n_head: int) -> Tensor:
    """[Q | K | V] rows -> [q_0 k_0 v_0 | q_1 k_1 v_1 | ...] (multi-head gpt_bigcode)."""
    rest = tensor.shape[1:]
    return tensor.reshape(3, n_head, -1, *rest).transpose(0, 1).reshape(tensor.shape).clone()


def qkv_from_per_head(tensor: Tensor, n_head: int) -> Tensor:
    rest = tensor.shape[1:]
    return tensor.reshape(n_head, 3, -1, *rest).transpose(0, 1).reshape(tensor.shape).contiguous()


def _check_shape(name: str, tensor: Tensor, expected: tuple[int, ...]) -> None:
    if tuple(tensor.shape) != tuple(expected):
        raise UserError(
            f"weight {name} has shape {tuple(tensor.shape)}, but config.json implies "
            f"{tuple(expected)}: the config does not match the weights"
        )


def hf_config(
    config: ModelConfig,
    bos_id: int = 0,
    eos_id: int = 0,
    dtype: str = "float32",
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """config.json for transformers, vLLM and TGI. With `base` (the config.json a model was
    imported from) every key codekiln does not compute survives as the base had it (its
    token ids, `mlp_type`, `transformers_version`, ...); the shape and settings are ours."""
    kind = model_type(config)
    common = {
        "architectures": [_ARCHITECTURES[kind]],
        "model_type": kind,
        "vocab_size": config.vocab_size,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "initializer_range": config.std,
        "tie_word_embeddings": config.tie_embeddings,
        "use_cache": True,
        "torch_dtype": dtype,
    }
    if kind == "gpt_bigcode":
        ours = {
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
            "embd_pdrop": config.embedding_dropout,
            "attn_pdrop": config.attention_dropout,
            "scale_attn_weights": True,
            "attention_softmax_in_fp32": True,
            "scale_attention_softmax_in_fp32": True,
        }
    else:
        ours = {
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
            "sliding_window": config.sliding_window,
            "use_bias": config.bias,
            "attention_dropout": config.attention_dropout,
            "residual_dropout": config.dropout,
            "embedding_dropout": config.embedding_dropout,
        }
    if not base:
        return ours
    merged = {k: v for k, v in base.items() if not k.startswith("_")}  # not _name_or_path
    kept = {k: base[k] for k in ("bos_token_id", "eos_token_id") if base.get(k) is not None}
    merged.update(ours)
    merged.update(kept)
    if "n_inner" in base and base["n_inner"] is None and config.n_inner is None:
        merged["n_inner"] = None  # transformers' way of saying 4 x n_embd, as the base said it
    if "dtype" in base:  # transformers 5 writes `dtype` where 4 wrote `torch_dtype`
        merged["dtype"] = dtype
    return merged


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """The ModelConfig of a gpt_bigcode or starcoder2 config.json; UserError for settings
    CodeGPT does not compute (non-GELU activation, cross-attention, scaled RoPE)."""
    kind = hf.get("model_type")
    if kind not in MODEL_TYPES:
        raise UserError(
            f"model_type {kind!r} is not supported: codekiln loads and trains "
            f"{' and '.join(MODEL_TYPES)} models (StarCoder, StarCoderBase, SantaCoder, "
            "tiny_starcoder_py and StarCoder2)"
        )
    tied = hf.get("tie_word_embeddings", True) is not False
    if kind == "gpt_bigcode":
        hf = {**_GPT_BIGCODE_DEFAULTS, **hf}
        activation = _activation(hf["activation_function"])
        if not hf.get("scale_attn_weights", True) or hf.get("add_cross_attention", False):
            raise UserError("gpt_bigcode without scaled attention or with cross-attention")
        dropout = _number(hf, "resid_pdrop")
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
            dropout=dropout,
            attn_dropout=_unless_equal(_number(hf, "attn_pdrop", dropout), dropout),
            embd_dropout=_unless_equal(_number(hf, "embd_pdrop", dropout), dropout),
            init_std=_default_to_none(hf["initializer_range"], hf["n_embd"] ** -0.5),
            tie_embeddings=tied,
        )
    hf = {**_STARCODER2_DEFAULTS, **hf}
    activation = _activation(hf["hidden_act"])
    head_dim = hf.get("head_dim")
    if head_dim is not None and head_dim * hf["num_attention_heads"] != hf["hidden_size"]:
        raise UserError(f"starcoder2 head_dim {head_dim} is not hidden_size / heads")
    rope = hf.get("rope_parameters") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if hf.get("rope_scaling") or rope_type != "default" or hf.get("partial_rotary_factor", 1) != 1:
        raise UserError(f"starcoder2 with scaled or partial RoPE ({rope_type}) is not supported")
    dropout = _number(hf, "residual_dropout")
    return ModelConfig(
        vocab_size=hf["vocab_size"],
        n_positions=hf["max_position_embeddings"],
        n_embd=hf["hidden_size"],
        n_layer=hf["num_hidden_layers"],
        n_head=hf["num_attention_heads"],
        n_kv_heads=hf["num_key_value_heads"],
        n_inner=_default_to_none(hf["intermediate_size"], 4 * hf["hidden_size"]),
        activation=activation,
        position="rotary",
        rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
        layer_norm_epsilon=hf["norm_epsilon"],
        dropout=dropout,
        attn_dropout=_unless_equal(_number(hf, "attention_dropout", dropout), dropout),
        embd_dropout=_unless_equal(_number(hf, "embedding_dropout", dropout), dropout),
        init_std=_default_to_none(hf["initializer_range"], hf["hidden_size"] ** -0.5),
        sliding_window=hf.get("sliding_window") or None,
        tie_embeddings=tied,
        bias=bool(hf.get("use_bias", True)),
    )


def _number(hf: dict[str, Any], key: str, default: float = 0.0) -> float:
    """A dropout of a config.json (transformers writes ints such as 0 as well as floats)."""
    value = hf.get(key, default)
    return float(default if value is None else value)


def _unless_equal(value: float, default: float) -> float | None:
    return None if value == default else value


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
