"""Hugging Face model folders, without transformers: read one into a CodeGPT, write one.

A folder holds config.json, the weights (model.safetensors, sharded safetensors with an
index, or pytorch_model.bin), generation_config.json, the tokenizer's files and a README.md
model card (card.py). The mapping of settings and weight names between the two formats is
convert.py's; this module reads and writes the files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from codekiln.errors import UserError
from codekiln.manifest import atomic_path, write_atomic, write_json
from codekiln.model.card import model_card
from codekiln.model.config import ModelConfig
from codekiln.model.convert import (
    BUFFER_SUFFIXES,
    WeightFiller,
    check_tied_head,
    check_weight_names,
    config_from_hf,
    hf_config,
    model_type,
    to_hf_state_dict,
    weight_slots,
)
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
        unexpected = [n for n in where if n not in known and not n.endswith(BUFFER_SUFFIXES)]
        check_weight_names(kind, unexpected, [name for name in slots if name not in where])
        with torch.device("meta"):
            shapes = {name: p.shape for name, p in CodeGPT(config).named_parameters()}
        sources: dict[str, list[str]] = {}
        for hf_name, slot in slots.items():
            sources.setdefault(slot.name, []).append(hf_name)
        for ours, names in sources.items():
            first = where[names[0]].get(names[0])
            target = torch.empty(shapes[ours], dtype=first.dtype)
            filler = WeightFiller(config, {ours: target})
            for name in names:
                filler.put(name, first if name == names[0] else where[name].get(name))
            del first
            if ours == "wte.weight" and "lm_head.weight" in where and "lm_head.weight" not in slots:
                check_tied_head(where["lm_head.weight"].get("lm_head.weight"), target)
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
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
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
    filler = WeightFiller(config, dict(model.named_parameters()))
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
