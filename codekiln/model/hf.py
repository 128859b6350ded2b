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

import contextlib
import dataclasses
import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from codekiln.errors import UserError
from codekiln.manifest import write_atomic, write_json
from codekiln.model.card import model_card
from codekiln.model.config import ModelConfig
from codekiln.model.gpt import CodeGPT

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
BIN_WEIGHTS = "pytorch_model.bin"
BIN_WEIGHTS_INDEX = "pytorch_model.bin.index.json"
# What a model folder's tokenizer is made of; an export copies those its source has
# (chat_template.jinja: where transformers 5 keeps a chat template).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
)
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
            tensor = _qkv_to_per_head(tensor, slot.per_head)
        out[hf_name] = tensor
    return out


class _WeightFiller:
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
        if name.endswith(_BUFFER_SUFFIXES):
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
            tensor = _qkv_from_per_head(tensor, slot.per_head)
        with torch.no_grad():
            target.copy_(tensor)
        self.seen.add(name)

    def finish(self) -> None:
        _check_names(self.kind, self.unexpected, [n for n in self.slots if n not in self.seen])
        if self.head is not None:
            _check_tied_head(self.head, self.targets["wte.weight"])


def _check_names(kind: str, unexpected: list[str], missing: list[str]) -> None:
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


def _check_tied_head(head: Tensor, embedding: Tensor) -> None:
    head = head.to(embedding.dtype)
    if head.shape != embedding.shape or not torch.equal(head, embedding):
        raise UserError(
            "lm_head.weight differs from the token embedding although config.json "
            "ties them (tie_word_embeddings is true or unset): set "
            '"tie_word_embeddings": false if the model has its own output head'
        )


def hf_parameters(folder: str | Path, config: ModelConfig) -> Iterator[tuple[str, Tensor]]:
    """CodeGPT's parameters, by our names, from a transformers folder of `config`'s
    model_type, one whole parameter at a time in the dtype it was saved in: a fused c_attn
    is assembled from starcoder2's q/k/v (or reordered from multi-head gpt_bigcode's per-head
    layout) before it is yielded. Names are checked (nothing missing, nothing unknown)
    before anything is read, and shapes as each tensor is; a caller that keeps only its shard
    of each parameter never holds more than the largest one (train/materialise.py)."""
    files = weight_files(Path(folder))
    kind = model_type(config)
    slots = weight_slots(config)
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(_TensorReader(file)) for file in files]
        where = {name: reader for reader in readers for name in reader.names()}
        known = {*slots, "lm_head.weight"}  # a tied head saved anyway: compared below
        unexpected = [n for n in where if n not in known and not n.endswith(_BUFFER_SUFFIXES)]
        _check_names(kind, unexpected, [name for name in slots if name not in where])
        with torch.device("meta"):
            shapes = {name: p.shape for name, p in CodeGPT(config).named_parameters()}
        sources: dict[str, list[str]] = {}
        for hf_name, slot in slots.items():
            sources.setdefault(slot.name, []).append(hf_name)
        for ours, names in sources.items():
            first = where[names[0]].get(names[0])
            target = torch.empty(shapes[ours], dtype=first.dtype)
            filler = _WeightFiller(config, {ours: target})
            for name in names:
                filler.put(name, first if name == names[0] else where[name].get(name))
            del first
            if ours == "wte.weight" and "lm_head.weight" in where and "lm_head.weight" not in slots:
                _check_tied_head(where["lm_head.weight"].get("lm_head.weight"), target)
            yield ours, target


class _TensorReader:
    """One weight file's tensors by name, read one at a time: safetensors through safe_open,
    .bin memory-mapped and unpickled with weights_only."""

    def __init__(self, file: Path):
        self.file = file
        self.handle = None
        self.state: dict | None = None

    def __enter__(self) -> _TensorReader:
        try:
            if self.file.suffix == ".safetensors":
                from safetensors import safe_open

                self.handle = safe_open(str(self.file), framework="pt")
            else:
                self.state = dict(_read_tensors(self.file))
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"{self.file} is truncated or corrupt ({str(exc)[:200]})") from None
        return self

    def __exit__(self, *exc) -> None:
        self.handle = self.state = None

    def names(self) -> list[str]:
        return list(self.handle.keys()) if self.handle is not None else list(self.state)

    def get(self, name: str) -> Tensor:
        if self.state is not None:
            return self.state[name]
        try:
            return self.handle.get_tensor(name)
        except Exception as exc:
            raise UserError(f"{self.file} is truncated or corrupt ({str(exc)[:200]})") from None


def from_hf_state_dict(config: ModelConfig, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """transformers' weights (gpt_bigcode names for learned positions, starcoder2 names for
    rotary) as a CodeGPT state dict, in their dtype. UserError for missing, unexpected or
    inconsistent weights."""
    with torch.device("meta"):
        shapes = {name: t.shape for name, t in CodeGPT(config).state_dict().items()}
    dtype = next(iter(state.values())).dtype if state else torch.float32
    targets = {name: torch.empty(shape, dtype=dtype) for name, shape in shapes.items()}
    filler = _WeightFiller(config, targets)
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


def export_hf(
    model: CodeGPT,
    out_dir: str | Path,
    tokenizer_dir: str | Path | None = None,
    card: dict | None = None,
    base_config: dict[str, Any] | None = None,
) -> Path:
    """Write a folder `transformers.AutoModelForCausalLM.from_pretrained` loads.

    config.json, model.safetensors, generation_config.json, the tokenizer's files when
    tokenizer_dir is given (bos = eos = its <|endoftext|> id; 0 without one) and a README.md
    model card from `card` (name, description, license, data, training, evaluation, ...).
    `base_config`, the config.json of the model this one was fine-tuned from, keeps every
    setting codekiln does not change (see `hf_config`). The weights keep the model's dtype;
    the model must be whole (gather FSDP shards first).
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
        copy_tokenizer(Path(tokenizer_dir), out)
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
    write_json(out / "config.json", hf_config(config, eos_id, eos_id, dtype, base_config))
    return out


def copy_tokenizer(source: Path, target: Path) -> None:
    """Copy the tokenizer files (TOKENIZER_FILES) that `source` has into `target`."""
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)


def _tokenizer_eos(folder: Path, vocab_size: int) -> int:
    """The id generation ends at: the folder's eos_token (tokenizer_config.json), else
    <|endoftext|>; a UserError for a tokenizer larger than the model's vocabulary."""
    from codekiln.tokenizer.family import eos_token, load_any_tokenizer

    tokenizer = load_any_tokenizer(folder)
    eos_id = tokenizer.token_to_id(eos_token(tokenizer, folder))
    if tokenizer.get_vocab_size() > vocab_size:
        raise UserError(
            f"tokenizer {folder} has {tokenizer.get_vocab_size()} tokens but the model embeds "
            f"{vocab_size}: set the model's vocab_size to at least the tokenizer's"
        )
    return eos_id


def read_hf_config(folder: str | Path) -> dict[str, Any]:
    """A Hugging Face model folder's config.json; a UserError if it is missing or not JSON."""
    config_file = Path(folder) / "config.json"
    if not config_file.exists():
        raise UserError(f"no config.json in {folder}: give a Hugging Face model folder")
    try:
        return json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{config_file} is not readable JSON ({exc})") from None


def import_hf(
    folder: str | Path, dtype: torch.dtype | None = None, overrides: dict[str, Any] | None = None
) -> CodeGPT:
    """A CodeGPT from a gpt_bigcode or starcoder2 folder (ours or transformers'), in eval
    mode, its weights in `dtype` (None: the dtype they were saved in). `overrides` replace
    settings that leave the weights' shapes alone (dropouts, for training).

    The model is allocated once, empty, and each tensor of the checkpoint is copied into it
    as it is read (shard by shard, tensor by tensor), so the checkpoint is never held in
    memory beside the model."""
    folder = Path(folder)
    hf = read_hf_config(folder)
    try:
        config = config_from_hf(hf)
    except UserError as exc:
        raise UserError(f"{folder / 'config.json'}: {exc}") from None
    if overrides:
        config = dataclasses.replace(config, **overrides)
    files = weight_files(folder)
    if dtype is None:
        dtype = _first_dtype(files[0])
    with torch.device("meta"):
        model = CodeGPT(config)
    model = model.to(dtype=dtype).to_empty(device="cpu")
    filler = _WeightFiller(config, dict(model.named_parameters()))
    for file in files:
        for name, tensor in _read_tensors(file):
            filler.put(name, tensor)
    filler.finish()
    return model.eval()


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a Hugging Face folder: model.safetensors, the shards of
    model.safetensors.index.json, pytorch_model.bin, or the shards of its index. Every file
    an index names must be there (checked before anything is read)."""
    folder = Path(folder)
    for single, index_name in ((WEIGHTS, WEIGHTS_INDEX), (BIN_WEIGHTS, BIN_WEIGHTS_INDEX)):
        if (folder / single).is_file():
            return [folder / single]
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                names = sorted(set(weight_map.values()))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError) as exc:
                raise UserError(f"{index} is not a readable weight index ({exc})") from None
            except (TypeError, AttributeError):
                raise UserError(f"{index} is not a readable weight index") from None
            files = [folder / name for name in names]
            absent = [f.name for f in files if not f.is_file()]
            if absent:
                raise UserError(
                    f"{index} names shard {absent[0]}, which is not in {folder}"
                    + (f" ({len(absent)} shards are missing)" if len(absent) > 1 else "")
                    + ": download the whole model folder"
                )
            return files
    raise UserError(
        f"no weights in {folder}: a model folder holds {WEIGHTS}, sharded safetensors with "
        f"{WEIGHTS_INDEX}, or {BIN_WEIGHTS}"
    )


def _read_tensors(file: Path) -> Iterator[tuple[str, Tensor]]:
    """(name, tensor) of a weight file, one at a time. .bin files are memory-mapped and
    unpickled with weights_only (no code runs)."""
    try:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    yield name, handle.get_tensor(name)
            return
        try:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            # The legacy (pre-zip) format cannot be memory-mapped.
            state = torch.load(file, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise UserError(f"{file} holds no state dict of tensors")
        yield from state.items()
    except UserError:
        raise
    except Exception as exc:  # safetensors, zip and unpickling errors of many types
        raise UserError(f"{file} is truncated or corrupt ({str(exc)[:200]})") from None


def _first_dtype(file: Path) -> torch.dtype:
    for _, tensor in _read_tensors(file):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32
