"""What a run starts from: its tokenizer, checked by fingerprint, and the model to train.

- The tokenizer: `--tokenizer` when given, else the pack's own copy (meta.json's tokenizer
  folder), else, for instruction tuning, the init_from model's. Whatever folder it comes
  from, its fingerprint (vocabulary, merges, special tokens) must be the pack's, and an
  init_from model's own tokenizer must be the pack's too: the same vocabulary size with other
  ids would train on garbage without a word.
- The model: the checkpoint's architecture when resuming, else init_from's weights (streamed
  into each rank's shards of the float32 master weights, or into a whole frozen bfloat16
  base under LoRA), else a fresh preset. It is built on the meta device and filled after
  it is parallelised (materialise.py). Its vocabulary must cover the pack's, and the memory
  it needs is checked before anything large is allocated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from codekiln.errors import UserError
from codekiln.train.checkpoint import seed_everything
from codekiln.train.config import TRAINING_ONLY_MODEL_SETTINGS, TrainConfig
from codekiln.train.materialise import CHECKPOINT, INIT_FROM, SEED
from codekiln.train.memory import check_memory
from codekiln.train.parallel import Distributed, check_layout


@dataclass
class RunTokenizer:
    """The run's tokenizer and the folder its files (and chat template) are read from."""

    tokenizer: Any  # tokenizers.Tokenizer
    folder: Path
    fingerprint: str


def pack_tokenizer(config: TrainConfig, data: Path, meta: dict) -> RunTokenizer:
    """The tokenizer of a pack run (see the module docstring); UserError on a mismatch."""
    from codekiln.tokenizer.family import load_any_tokenizer, tokenizer_fingerprint

    packed = meta.get("tokenizer") or {}
    expected = packed.get("fingerprint")
    if config.tokenizer is not None:
        folder = Path(config.tokenizer)
    elif packed.get("dir"):
        folder = data / packed["dir"]
    else:
        raise UserError(
            f"{data} keeps no copy of its tokenizer: pass --tokenizer DIR (the folder it was "
            "packed with), or pack the data again with this codekiln"
        )
    tokenizer = load_any_tokenizer(folder)
    found = tokenizer_fingerprint(tokenizer)
    if expected and found != expected:
        raise UserError(
            f"tokenizer {folder} is not the one {data} was packed with (its vocabulary, merges "
            "or special tokens differ): drop --tokenizer to use the pack's own copy, or pack "
            "the data again with this tokenizer"
        )
    if config.init_from is not None:
        _check_model_tokenizer(Path(config.init_from), found, f"{data} was packed with")
    return RunTokenizer(tokenizer, folder, found)


def sft_tokenizer(config: TrainConfig) -> RunTokenizer:
    """The tokenizer of an instruction-tuning run: --tokenizer, else init_from's own."""
    from codekiln.tokenizer.family import load_any_tokenizer, tokenizer_fingerprint

    if config.tokenizer is None and config.init_from is None:
        raise UserError(
            "instruction tuning needs a tokenizer: give --init-from MODEL_DIR (its tokenizer "
            "is used) or --tokenizer DIR"
        )
    folder = Path(config.tokenizer or config.init_from)
    tokenizer = load_any_tokenizer(folder)
    found = tokenizer_fingerprint(tokenizer)
    if config.init_from is not None and config.tokenizer is not None:
        _check_model_tokenizer(Path(config.init_from), found, f"{folder} is")
    return RunTokenizer(tokenizer, folder, found)


def _check_model_tokenizer(model_dir: Path, expected: str, what: str) -> None:
    """A UserError when the model folder has a tokenizer other than the run's."""
    from codekiln.tokenizer.family import load_any_tokenizer, tokenizer_fingerprint

    if not (model_dir / "tokenizer.json").is_file() and not (model_dir / "vocab.json").is_file():
        return  # no tokenizer of its own: the vocabulary-size check is all there is
    if tokenizer_fingerprint(load_any_tokenizer(model_dir)) != expected:
        raise UserError(
            f"the model in {model_dir} has another tokenizer than the one {what}: pack the "
            f"curated data with the model's own (`codekiln pack CURATED --tokenizer "
            f"{model_dir} -o TOKENS`)"
        )


@dataclass
class BuiltModel:
    """The model to train, and what its export needs to say the same as its base."""

    model: nn.Module
    export_config: Any  # the ModelConfig written out: the base's, but for the user's changes
    base_config: dict | None  # init_from's config.json, for the keys codekiln does not compute
    kind: str  # gpt_bigcode or starcoder2
    memory: dict[str, int]
    # What fills a model built on the meta device (materialise.SEED, INIT_FROM or
    # CHECKPOINT), after it is parallelised; None: the model is already real (LoRA's).
    weights: str | None = None


def build_model(
    config: TrainConfig,
    vocab_size: int,
    state: dict[str, Any] | None,
    distributed: Distributed,
    dtype: torch.dtype,
    announce: Callable[[dict[str, int]], None] | None = None,
) -> BuiltModel:
    """The model to train: the checkpoint's architecture when resuming (`state`; a LoRA
    run's base comes from init_from again), else init_from's, else a fresh preset. Each is
    checked against the data's vocabulary and the memory there is before it is allocated;
    `announce` is given the memory estimate then. The model is built on the meta device
    and `weights` says what fills it once parallelised (materialise.py); a LoRA run's is
    built on the CPU, its base read whole from init_from."""
    from codekiln.model.config import ModelConfig
    from codekiln.model.convert import config_from_hf, model_type
    from codekiln.model.gpt import CodeGPT
    from codekiln.model.hf import read_hf_config

    base_config = None
    if config.init_from is not None:
        base_config = read_hf_config(config.init_from)
        try:
            imported = config_from_hf(base_config)
        except UserError as exc:
            raise UserError(f"{Path(config.init_from) / 'config.json'}: {exc}") from None
        changed = sorted(set(config.model_overrides) - set(TRAINING_ONLY_MODEL_SETTINGS))
        if changed:
            raise UserError(
                f"model_overrides cannot change {', '.join(changed)} of a model loaded with "
                f"init_from: only its training settings ({', '.join(TRAINING_ONLY_MODEL_SETTINGS)})"
            )
        # Fine-tuning trains without dropout unless asked for it, whatever the base's config
        # says; the export keeps the base's values but for the ones the user set.
        no_dropout = {"dropout": 0.0, "attn_dropout": None, "embd_dropout": None}
        export_config = dataclasses.replace(imported, **config.model_overrides)
        model_config = dataclasses.replace(imported, **{**no_dropout, **config.model_overrides})
        _check_vocab(model_config.vocab_size, vocab_size, config.init_from)
    else:
        model_config = export_config = _model_config(config, vocab_size)
    if state is not None and not config.lora:
        # The checkpoint's weights replace the model's: its architecture is the one built.
        model_config = ModelConfig(**state["model_config"])
        if config.init_from is None:
            export_config = model_config
    kind = model_type(model_config)
    _check_context(model_config, config)
    check_layout(model_config, config, distributed.world_size)  # the mesh and the stages
    trainable = None
    if config.lora:
        from codekiln.model.lora import lora_parameter_count

        trainable = lora_parameter_count(model_config, kind, lora_spec(config))
    memory = check_memory(model_config, config, distributed, dtype, trainable)
    if announce is not None:
        announce(memory)
    seed_everything(config.seed)
    if not config.lora:
        # On the meta device: each rank allocates and fills only its own shards once the
        # model is parallelised (train/materialise.py), never the whole model.
        with torch.device("meta"):
            model = CodeGPT(model_config)
        if state is not None:
            weights = CHECKPOINT
        else:
            weights = SEED if config.init_from is None else INIT_FROM
        return BuiltModel(model, export_config, base_config, kind, memory, weights)
    # LoRA: the frozen base is read whole (in base_dtype), as import_hf does.
    from codekiln.model.hf import import_hf

    base_dtype = torch.bfloat16 if config.base_dtype == "bfloat16" else torch.float32
    overrides = {k: getattr(model_config, k) for k in ("dropout", "attn_dropout", "embd_dropout")}
    model = import_hf(config.init_from, dtype=base_dtype, overrides=overrides)
    from codekiln.model.lora import add_lora

    _norms_in_float32(model)
    seed_everything(config.seed)  # the adapters' A are drawn from the run's seed
    add_lora(model, kind, lora_spec(config))
    return BuiltModel(model, export_config, base_config, kind, memory)


def lora_spec(config: TrainConfig):
    """The LoraSpec of a LoRA run's settings."""
    from codekiln.model.lora import LoraSpec

    return LoraSpec(config.lora_rank, config.lora_alpha, config.lora_dropout, config.lora_targets)


def _norms_in_float32(model: nn.Module) -> None:
    """LayerNorms and the position table of a bfloat16 base in float32: they are small, and
    the model keeps its residual stream in the norms' precision (model/gpt.py)."""
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            module.float()
    if getattr(model, "wpe", None) is not None:
        model.wpe.float()


def _model_config(config: TrainConfig, vocab_size: int):
    """The preset with the overrides, its vocabulary the data's unless overridden."""
    from codekiln.model.config import preset

    overrides = dict(config.model_overrides)
    overrides.setdefault("vocab_size", vocab_size)
    model_config = preset(config.model, **overrides)
    _check_vocab(model_config.vocab_size, vocab_size, f"model '{config.model}'")
    return model_config


def _check_vocab(model_vocab: int, data_vocab: int, what: str) -> None:
    if model_vocab < data_vocab:
        raise UserError(
            f"{what} has a vocabulary of {model_vocab:,} ids but the token shards use "
            f"{data_vocab:,}: drop the vocab_size override (the pack's is used), or pack "
            "with a smaller tokenizer"
        )


def _check_context(model_config, config: TrainConfig) -> None:
    if config.seq_len > model_config.n_positions:
        raise UserError(
            f"seq_len {config.seq_len} is longer than the model's context of "
            f"{model_config.n_positions} tokens: lower seq_len or raise n_positions"
        )
