"""The train stage's one config, and the result `train()` returns."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codekiln.errors import UserError

DTYPES = ("auto", "float32", "bfloat16")
PARALLEL = ("ddp", "fsdp", "tp", "fsdp+tp")


@dataclass
class TrainConfig:
    """How `codekiln train` turns token shards into a model.

    The global batch of one optimizer step is batch_size x grad_accum x data-parallel size
    sequences of seq_len tokens; `batch_size` is per data-parallel rank and per micro-step. The
    data-parallel size is the world size, over tp_size under fsdp+tp, and 1 under tp.

    >>> TrainConfig(max_steps=10, warmup_steps=2).betas
    (0.9, 0.95)
    """

    model: str = "tiny"  # a preset of codekiln.model.config.PRESETS
    model_overrides: dict = field(default_factory=dict)  # e.g. {"n_layer": 2}
    init_from: str | None = None  # an HF model folder to continue from (import_hf)
    tokenizer: str | None = None  # the pack's tokenizer folder: FIM, val_bpb, the export
    seq_len: int = 256
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int = 200
    max_minutes: float | None = None  # this invocation's training time; then stop cleanly
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 20
    weight_decay: float = 0.1  # on matrices and embeddings (ndim >= 2), not biases or norms
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    fim_rate: float = 0.5
    fim_spm_rate: float = 0.5
    eval_every: int = 50  # 0: only at the end
    eval_batches: int = 8
    log_every: int = 10
    checkpoint_every: int = 100  # 0: only at the end
    keep_checkpoints: int = 2
    seed: int = 1234
    dtype: str = "auto"  # auto: bf16 autocast on CUDA and AMX CPUs, else float32
    compile: bool = False
    activation_checkpointing: bool = False
    parallel: str = "ddp"  # ddp | fsdp | tp | fsdp+tp, under torchrun with more than one process
    tp_size: int | None = None  # tensor-parallel ranks under fsdp+tp (data parallel: the rest)
    peak_flops: float | None = None  # per device, for MFU; None: a table or a measured matmul

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise UserError(f"train config: model must name a preset, got {self.model!r}")
        if not isinstance(self.model_overrides, dict):
            raise UserError(
                "train config: model_overrides must be a table of model settings, e.g. "
                f'{{"n_layer": 2}}, got {self.model_overrides!r}'
            )
        for name in ("init_from", "tokenizer"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, str | Path) or not str(value):
                    raise UserError(f"train config: {name} must be a folder path, got {value!r}")
                setattr(self, name, str(value))
        whole = {
            "seq_len": 1,
            "batch_size": 1,
            "grad_accum": 1,
            "max_steps": 1,
            "warmup_steps": 0,
            "eval_every": 0,
            "eval_batches": 1,
            "log_every": 1,
            "checkpoint_every": 0,
            "keep_checkpoints": 1,
            "seed": 0,
        }
        for name, least in whole.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UserError(
                    f"train config: {name} must be a whole number >= {least}, got {value!r}"
                )
        if self.seed >= 2**32:
            raise UserError(f"train config: seed must be below 2**32, got {self.seed}")
        for name in ("lr", "min_lr", "weight_decay", "grad_clip", "fim_rate", "fim_spm_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"train config: {name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise UserError(f"train config: {name} must be finite and >= 0, got {value!r}")
            setattr(self, name, float(value))
        if self.lr <= 0:
            raise UserError(f"train config: lr must be positive (e.g. 3e-4), got {self.lr}")
        if self.min_lr > self.lr:
            raise UserError(
                f"train config: min_lr ({self.min_lr}) must not exceed lr ({self.lr}); "
                "the cosine decays from lr down to min_lr"
            )
        for name in ("fim_rate", "fim_spm_rate"):
            if getattr(self, name) > 1:
                raise UserError(
                    f"train config: {name} is a probability in [0, 1] (StarCoder: 0.5), "
                    f"got {getattr(self, name)}"
                )
        if self.max_minutes is not None:
            if isinstance(self.max_minutes, bool) or not isinstance(self.max_minutes, int | float):
                raise UserError(
                    f"train config: max_minutes must be a number, not {self.max_minutes!r}"
                )
            if not self.max_minutes > 0:
                raise UserError(
                    f"train config: max_minutes must be positive (or none), got {self.max_minutes}"
                )
            self.max_minutes = float(self.max_minutes)
        betas = self.betas
        if (
            not isinstance(betas, list | tuple)
            or len(betas) != 2
            or not all(isinstance(b, int | float) and 0 <= b < 1 for b in betas)
        ):
            raise UserError(
                "train config: betas must be two numbers in [0, 1), e.g. [0.9, 0.95], "
                f"got {betas!r}"
            )
        self.betas = (float(betas[0]), float(betas[1]))  # TOML gives a list
        if self.dtype not in DTYPES:
            raise UserError(
                f"train config: dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r} "
                "(float16 needs loss scaling, which codekiln does not do: use bfloat16)"
            )
        if self.parallel not in PARALLEL:
            raise UserError(
                f"train config: parallel must be one of {', '.join(PARALLEL)}, "
                f"got {self.parallel!r}"
            )
        if self.tp_size is not None and (
            isinstance(self.tp_size, bool) or not isinstance(self.tp_size, int) or self.tp_size < 1
        ):
            raise UserError(
                f"train config: tp_size must be a whole number >= 1 (e.g. the GPUs of a node), "
                f"got {self.tp_size!r}"
            )
        if self.parallel == "fsdp+tp" and self.tp_size is None:
            raise UserError(
                "train config: parallel=fsdp+tp needs tp_size, the tensor-parallel ranks of "
                "each data-parallel replica (e.g. tp_size=4)"
            )
        for name in ("compile", "activation_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"train config: {name} must be true or false")
        if self.peak_flops is not None:
            ok = isinstance(self.peak_flops, int | float) and not isinstance(self.peak_flops, bool)
            if not ok or not self.peak_flops > 0:
                raise UserError(
                    f"train config: peak_flops must be a positive FLOP/s figure (e.g. 989e12 for "
                    f"an H100's dense bf16), got {self.peak_flops!r}"
                )
            self.peak_flops = float(self.peak_flops)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config saved by `to_dict` (a checkpoint's); unknown keys are a UserError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"train config: unknown setting(s) {', '.join(unknown)}")
        return cls(**values)


@dataclass
class TrainResult:
    out_dir: Path
    steps: int  # optimizer steps done in all, resumed runs included
    tokens: int  # training tokens seen in all (every rank)
    final_loss: float  # the mean training loss of the last logged interval
    val_loss: float | None  # the last evaluation's, None without a valid split
    model_dir: Path | None  # the exported Hugging Face folder
    skipped: bool = False  # a finished run with the same settings was already there
