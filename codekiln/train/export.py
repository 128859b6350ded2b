"""A checkpoint -> the Hugging Face folder: what the end of a run writes, and what
`codekiln export RUN [--step N]` writes offline, on the CPU, in one process, from a checkpoint
of any layout (the same code for both, so they agree).

    OUT/model/     config.json, safetensors, tokenizer, README.md (a LoRA run: only with
                   merge, the adapter merged into its base)
    OUT/adapter/   a LoRA run: adapter_config.json + adapter_model.safetensors (peft's
                   format), its tokenizer and README.md

Everything the export needs beyond the weights is in the checkpoint's state.json, under
"export" (`export_info` makes it while training): the config to write (a fine-tuned base's,
with its dropouts), the base's config.json keys, the tokenizer folder and the model card.
A LoRA checkpoint holds the adapters only; its base is read from init_from again, which must
be the same files (checked by fingerprint).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import torch

from codekiln.errors import UserError
from codekiln.manifest import atomic_path, fingerprint, read_manifest, write_atomic
from codekiln.train.checkpoint import (
    checkpoint_dirs,
    checkpoint_shapes,
    load_checkpoint_weights,
    read_checkpoint_state,
    verify_checkpoint,
)
from codekiln.train.config import TrainConfig


def is_adapter_key(name: str) -> bool:
    """Whether a parameter name is a LoRA adapter's (what a LoRA checkpoint holds)."""
    return ".lora_A." in name or ".lora_B." in name


def export_info(
    config: TrainConfig, built, tokenizer_folder: Path, card: dict[str, Any]
) -> dict[str, Any]:
    """What state.json keeps for exporting the checkpoint later: JSON values only."""
    init_from = config.init_from
    tokenizer_dir = tokenizer_folder
    # The base model's folder when it has the run's tokenizer: it may hold a chat template
    # the pack's copy lacks.
    if init_from is not None and (Path(init_from) / "tokenizer.json").is_file():
        tokenizer_dir = Path(init_from)
    return {
        "export_config": dataclasses.asdict(built.export_config),
        "base_config": built.base_config,
        "kind": built.kind,
        "tokenizer_dir": str(Path(tokenizer_dir).resolve()),
        "card": card,
    }


def run_card(
    config: TrainConfig,
    meta: dict[str, Any],
    data: Path,
    sft: bool,
    tokenizer_fingerprint: str,
    progress: dict[str, Any],
    global_batch: int,
    base_config: dict | None,
) -> dict[str, Any]:
    """The model card's facts about a run (model/card.py renders them); `progress` holds
    steps, tokens, final_loss and val_loss. The base's license is read at export time."""
    from codekiln.model.card import curate_summary

    splits = meta.get("splits", {})
    facts: dict[str, Any] = {
        ("pairs" if sft else "pack"): str(data),
        "train_tokens": splits.get("train", {}).get("tokens"),
        "valid_tokens": splits.get("valid", {}).get("tokens"),
        "tokenizer_fingerprint": tokenizer_fingerprint,
    }
    if not sft:
        facts["languages"] = sorted(splits.get("train", {}).get("languages", {}))
        facts["document_format"] = (meta.get("format") or {}).get("family")
    curated = _curated_folder(data, sft)
    summary = curate_summary(curated) if curated is not None else None
    if summary:
        facts["curated"] = summary
    what = {"pretrain": config.model, "finetune": "fine-tune", "lora": "LoRA fine-tune"}
    card: dict[str, Any] = {
        "name": f"codekiln {what[config.kind]}",
        "description": "A code language model trained with `codekiln train`.",
        "data": facts,
        "training": {
            "kind": config.kind + (" (instruction tuning)" if sft else ""),
            "steps": progress["steps"],
            "tokens": progress["tokens"],
            "seq_len": config.seq_len,
            "global_batch_sequences": global_batch,
            "optimizer": f"AdamW(betas={list(config.betas)}, weight_decay={config.weight_decay})",
            "lr": f"{config.lr} warmup {config.warmup_steps} cosine to {config.min_lr}",
            "fim_rate": config.fim_rate,
            "final_loss": progress["final_loss"],
            "val_loss": progress["val_loss"],
            "init_from": config.init_from,
        },
    }
    if config.lora:
        targets = ", ".join(config.lora_targets or []) or "every attention and MLP projection"
        card["training"]["lora"] = (
            f"rank {config.lora_rank}, alpha {config.lora_alpha}, dropout "
            f"{config.lora_dropout}, on {targets}; base in {config.base_dtype}"
        )
    if config.license is not None:
        card["license"] = config.license
    if config.init_from is not None:
        name = (base_config or {}).get("_name_or_path")
        card["base_model"] = name if _is_hub_id(name) else str(config.init_from)
    return card


def check_checkpoint_model(checkpoint: Path, state: dict[str, Any]) -> None:
    """A UserError unless the checkpoint's tensors are those of the model its state.json
    describes (names and shapes; a LoRA run's adapters only). Reads DCP's metadata and
    builds the model on the meta device: nothing is allocated."""
    from codekiln.model.config import ModelConfig

    config = TrainConfig.from_dict(state["config"])
    model = _meta_model(ModelConfig(**state["model_config"]), config, state["export"]["kind"])
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if config.lora:
        expected = {k: v for k, v in expected.items() if is_adapter_key(k)}
    found = checkpoint_shapes(checkpoint)
    where = f"checkpoint {checkpoint} holds another model than its state.json describes"
    for name, shape in expected.items():
        if name not in found:
            raise UserError(f"{where}: it has no {name}; it was not written by this run")
        if found[name] != shape:
            raise UserError(
                f"{where}: {name} is {list(found[name])} there but {list(shape)} in the "
                "model; it was not written by this run"
            )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise UserError(f"{where}: it has {len(extra)} tensors the model lacks ({extra[0]}, ...)")


def _meta_model(model_config, config: TrainConfig, kind: str):
    """The model as exported (the LoRA adapters added), on the meta device."""
    from codekiln.model.gpt import CodeGPT

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = CodeGPT(model_config)
        if config.lora:
            from codekiln.model.lora import add_lora
            from codekiln.train.inputs import lora_spec

            add_lora(model, kind, lora_spec(config))
    return model


@dataclasses.dataclass
class ExportResult:
    checkpoint: Path  # the checkpoint exported
    model_dir: Path | None  # the Hugging Face folder (a LoRA run's: with merge)
    adapter_dir: Path | None  # a LoRA run's peft adapter folder


def export_run(
    run: Path, step: int | None = None, output: Path | None = None, merge: bool | None = None
) -> ExportResult:
    """`codekiln export`: the checkpoint of `step` (default: the newest) of the training run
    in `run`, written to `output` (default RUN/export/step_N), which must not exist or be
    empty: the Hugging Face folder itself, or for a LoRA run OUTPUT/adapter (and with
    `merge`, the run's setting by default, OUTPUT/model). Bad input is a UserError before
    anything is read."""
    found = checkpoint_dirs(Path(run) / "checkpoints")
    if not found:
        raise UserError(
            f"{run} has no checkpoints (checkpoints/step_N/): give the output folder of a "
            "`codekiln train` run that saved one"
        )
    if step is None:
        checkpoint = found[-1]
    else:
        matches = [p for p in found if p.name == f"step_{step}"]
        if not matches:
            have = ", ".join(p.name.removeprefix("step_") for p in found)
            raise UserError(f"{run} has no checkpoint of step {step}; it has steps {have}")
        checkpoint = matches[0]
    output = Path(output) if output is not None else Path(run) / "export" / checkpoint.name
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"{output} already exists and is not empty: choose another -o folder")
    state = read_checkpoint_state(checkpoint)
    if TrainConfig.from_dict(state["config"]).lora:
        output.mkdir(parents=True, exist_ok=True)
        model_dir = export_checkpoint(checkpoint, output / "model", output / "adapter", merge)
        return ExportResult(checkpoint, model_dir, output / "adapter")
    output.parent.mkdir(parents=True, exist_ok=True)
    return ExportResult(checkpoint, export_checkpoint(checkpoint, output), None)


def export_checkpoint(
    checkpoint: Path,
    model_dir: Path,
    adapter_dir: Path | None = None,
    merge: bool | None = None,
    verify: bool = True,
) -> Path | None:
    """Write `checkpoint`'s model (any layout) as a Hugging Face folder at `model_dir`, and
    a LoRA run's adapter at `adapter_dir` (the base merged in at `model_dir` only with
    `merge`, the run's setting by default), each to a temporary name and renamed. One
    process, CPU, no process group. `verify` checks every file's SHA-256 first. Returns the
    model folder, None when there is none (an unmerged LoRA run)."""
    from codekiln.model.config import ModelConfig
    from codekiln.model.hf import copy_tokenizer, export_hf

    state = read_checkpoint_state(checkpoint)
    if verify:
        verify_checkpoint(checkpoint, state)
    check_checkpoint_model(checkpoint, state)
    config = TrainConfig.from_dict(state["config"])
    info = state["export"]
    merge = config.merge if merge is None else merge
    tokenizer_dir = Path(info["tokenizer_dir"])
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise UserError(
            f"the run's tokenizer folder {tokenizer_dir} has no tokenizer.json any more: the "
            "export copies it; put it back there"
        )
    card = dict(info["card"])
    if config.init_from is not None:
        from codekiln.model.card import read_base_license

        card["base_license"] = read_base_license(config.init_from)
    kind = info["kind"]
    export_config = ModelConfig(**info["export_config"])
    model = _meta_model(export_config, config, kind).to_empty(device="cpu")
    own = model.state_dict()
    if config.lora:
        _load_base(model, config, state)
        load_checkpoint_weights(checkpoint, {k: v for k, v in own.items() if is_adapter_key(k)})
    else:
        load_checkpoint_weights(checkpoint, own)
    model.eval()
    if config.lora:
        from codekiln.model.card import model_card
        from codekiln.model.lora import merge_lora, save_adapter
        from codekiln.train.inputs import lora_spec

        spec = lora_spec(config)
        adapter_dir = adapter_dir or model_dir.with_name("adapter")
        description = (
            f"A LoRA adapter (rank {spec.rank}) for `{config.init_from}`, trained with "
            "`codekiln train --lora`; load it with peft or `codekiln eval`/`serve`."
        )
        with atomic_path(adapter_dir) as tmp:
            save_adapter(
                model,
                kind,
                spec,
                tmp,
                base_model=str(Path(config.init_from).resolve()),
                metadata={"codekiln_base": state["base"]},
            )
            copy_tokenizer(tokenizer_dir, tmp)
            card_text = model_card(export_config, kind, {**card, "description": description})
            write_atomic(tmp / "README.md", card_text)
        if not merge:
            shutil.rmtree(model_dir, ignore_errors=True)  # an older export's, now stale
            return None
        model = merge_lora(model)  # float32: the update survives rounding
    with atomic_path(model_dir) as tmp:
        export_hf(
            model, tmp, tokenizer_dir=tokenizer_dir, card=card, base_config=info["base_config"]
        )
    return model_dir


def _load_base(model, config: TrainConfig, state: dict[str, Any]) -> None:
    """A LoRA export's frozen base: init_from's weights as the run held them (in
    base_dtype), which must be the files the run started from."""
    from codekiln.model.hf import import_hf

    if state.get("base") != base_fingerprint(config):
        raise UserError(
            f"{config.init_from} is not the model this LoRA run started from (its config "
            "or weight files changed since the checkpoint was written): export with the "
            "same base folder"
        )
    base_dtype = torch.bfloat16 if config.base_dtype == "bfloat16" else torch.float32
    base = import_hf(config.init_from, dtype=base_dtype)
    model.load_state_dict(base.state_dict(), strict=False)  # the adapters come next


def base_fingerprint(config: TrainConfig) -> str:
    """A cheap identity of init_from's model: its config.json and the names, sizes and
    modification times of its weight files (hashing many GB on every resume would not be)."""
    from codekiln.model.hf import weight_files

    folder = Path(config.init_from)
    files = weight_files(folder)
    return fingerprint(
        {
            "config": (folder / "config.json").read_text(encoding="utf-8"),
            "weights": [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files],
        }
    )


def _curated_folder(data: Path, sft: bool) -> Path | None:
    """The curated folder the data came from: itself (commit records) or the pack's input."""
    if sft:
        return data if data.is_dir() else None
    manifest = read_manifest(data) or {}
    path = ((manifest.get("inputs") or {}).get("data") or {}).get("path")
    return Path(path) if path and Path(path).is_dir() else None


def _is_hub_id(name: Any) -> bool:
    """Whether a config's _name_or_path names a Hub model (owner/name), not a local folder."""
    if not isinstance(name, str) or name.count("/") != 1 or name.startswith((".", "/", "~")):
        return False
    return not Path(name).exists()
