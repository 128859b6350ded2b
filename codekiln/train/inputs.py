"""What a run starts from: the pack's tokenizer, checked by hash, and the model to train.

The model's vocabulary is the pack's meta.json vocab_size unless model_overrides sets one
(which must then be at least the pack's); init_from's must be at least the pack's too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from codekiln.errors import UserError
from codekiln.manifest import file_sha256
from codekiln.train.checkpoint import seed_everything
from codekiln.train.config import TrainConfig
from codekiln.train.memory import check_memory
from codekiln.train.parallel import Distributed


def load_checked_tokenizer(config: TrainConfig, data: Path, meta: dict):
    """The tokenizer of the pack, checked by hash; None when none is given (and none is
    needed)."""
    from codekiln.tokenizer.special import load_tokenizer

    if config.tokenizer is None:
        if config.fim_rate > 0:
            raise UserError(
                f"Fill-in-the-Middle (fim_rate {config.fim_rate}) needs the tokenizer {data} "
                "was packed with: pass --tokenizer DIR, or set fim_rate=0"
            )
        return None
    path = Path(config.tokenizer)
    file = path / "tokenizer.json" if path.is_dir() else path
    tokenizer = load_tokenizer(path)  # a UserError if it is missing or not a tokenizer
    expected = meta.get("tokenizer_sha256")
    if expected and file_sha256(file) != expected:
        raise UserError(
            f"tokenizer {path} is not the one {data} was packed with (its sha256 differs "
            "from meta.json's tokenizer_sha256): pass the pack's tokenizer, or pack the data "
            "again with this one"
        )
    return tokenizer


def build_model(
    config: TrainConfig,
    meta: dict,
    state: dict[str, Any] | None,
    distributed: Distributed,
    dtype: torch.dtype,
) -> nn.Module:
    """The float32 model to train, on the CPU: the checkpoint's architecture when resuming
    (`state`), else init_from's weights, else a fresh preset. Each is checked against the pack
    and against the memory there is before it is allocated."""
    from codekiln.model.config import ModelConfig
    from codekiln.model.gpt import CodeGPT

    if state is not None:
        saved = TrainConfig.from_dict(state["config"])
        keys = ("model", "model_overrides", "init_from")
        changed = [
            f"{k} {getattr(saved, k)!r} -> {getattr(config, k)!r}"
            for k in keys
            if getattr(saved, k) != getattr(config, k)
        ]
        if changed:
            raise UserError(
                "cannot resume: the checkpoint holds another model ("
                + ", ".join(changed)
                + "); resume with its model settings or start a new run"
            )
        model_config = ModelConfig(**state["model_config"])
        _check_context(model_config, config)
        check_memory(model_config, config, distributed, dtype)
        seed_everything(config.seed)
        return CodeGPT(model_config)  # the checkpoint's weights replace these
    if config.init_from is not None:
        from codekiln.model.hf import import_hf

        if config.model_overrides:
            raise UserError(
                "model_overrides cannot change a model loaded with init_from; drop them"
            )
        seed_everything(config.seed)
        model = import_hf(config.init_from).float()  # float32 master weights
        _check_vocab(model.config.vocab_size, int(meta["vocab_size"]), config.init_from)
        _check_context(model.config, config)
        check_memory(model.config, config, distributed, dtype)
        return model
    model_config = _model_config(config, meta)
    check_memory(model_config, config, distributed, dtype)
    seed_everything(config.seed)
    return CodeGPT(model_config)


def _model_config(config: TrainConfig, meta: dict):
    """The preset with the overrides, its vocabulary the pack's unless overridden."""
    from codekiln.model.config import preset

    overrides = dict(config.model_overrides)
    vocab = int(meta["vocab_size"])
    overrides.setdefault("vocab_size", vocab)
    model_config = preset(config.model, **overrides)
    _check_vocab(model_config.vocab_size, vocab, f"model '{config.model}'")
    _check_context(model_config, config)
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
