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
FSDP_GRAD_SYNC = ("every_microstep", "last_microstep")
# Pipeline schedules (torch.distributed.pipelining): 1F1B by default, as Megatron-LM and
# torchtitan do. It has GPipe's bubble but holds the activations of at most pp_size
# micro-batches per stage instead of all grad_accum of them; interleaved 1F1B puts
# PP_STAGES_PER_RANK stages on each rank, which shrinks the bubble by as much for more
# point-to-point traffic.
PP_SCHEDULES = ("1f1b", "gpipe", "interleaved1f1b")
PP_STAGES_PER_RANK = {"1f1b": 1, "gpipe": 1, "interleaved1f1b": 2}
BASE_DTYPES = ("float32", "bfloat16")
# What `--resume` may change: how long the run goes on and how often it logs, evaluates and
# saves, and the layout (checkpoints are sharded by name, so any layout reads any other's;
# batch_size is per data-parallel rank, and the loader refuses a changed global batch).
# Everything else is the checkpoint's (a changed optimizer setting would silently make the
# resumed run another run).
RESUME_SETTINGS = (
    "max_steps",
    "max_minutes",
    "eval_every",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "parallel",
    "tp_size",
    "pp_size",
    "pp_schedule",
    "batch_size",
    "prefetch",  # how batches are made, not which
)
# The training-only settings of an imported model that model_overrides may change.
TRAINING_ONLY_MODEL_SETTINGS = ("dropout", "attn_dropout", "embd_dropout")
# Defaults of the settings left unset (None), by what the run does. Pretraining: nanoGPT's
# and StarCoder's shape of schedule. Full fine-tuning: a small learning rate with a short
# warmup, as BigCode's StarCoder fine-tuning scripts. LoRA: peft's usual 2e-4 and no decay of
# the adapters (StarCoder2's fine-tuning script). min_lr is a tenth of lr in every case;
# warmup_fraction is of max_steps, at least one step.
DEFAULTS = {
    "pretrain": {"lr": 3e-4, "warmup_steps": 20, "weight_decay": 0.1},
    "finetune": {"lr": 2e-5, "warmup_fraction": 0.05, "weight_decay": 0.01},
    "lora": {"lr": 2e-4, "warmup_fraction": 0.05, "weight_decay": 0.0},
}


@dataclass
class TrainConfig:
    """How `codekiln train` turns token shards into a model.

    The global batch of one optimizer step is batch_size x grad_accum x data-parallel size
    sequences of seq_len tokens; `batch_size` is per data-parallel rank and per micro-step. The
    data-parallel size is the world size over pp_size, over tp_size too under fsdp+tp, and 1
    under tp.

    >>> TrainConfig(max_steps=10, warmup_steps=2).betas
    (0.9, 0.95)
    """

    model: str = "tiny"  # a preset of codekiln.model.config.PRESETS
    # A preset's settings, e.g. {"n_layer": 2}; with init_from only the dropouts.
    model_overrides: dict = field(default_factory=dict)
    init_from: str | None = None  # a Hugging Face model folder to fine-tune (import_hf)
    tokenizer: str | None = None  # None: the pack's own copy; FIM, val_bpb, the export
    sft: bool = False  # instruction tuning: data is prompt/completion JSONL or curated commits
    seq_len: int = 256
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int = 200
    max_minutes: float | None = None  # this invocation's training time; then stop cleanly
    # None: the default of the run's kind (DEFAULTS: pretraining, fine-tuning or LoRA).
    lr: float | None = None
    min_lr: float | None = None  # None: lr / 10
    warmup_steps: int | None = None
    weight_decay: float | None = None  # on matrices and embeddings (ndim >= 2) only
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    # Context-level FIM in the loader; None: 0.5 (StarCoder) where the pack's layout does it,
    # 0 where the pack did FIM itself (StarCoder2) or its tokenizer has no FIM tokens.
    fim_rate: float | None = None
    fim_spm_rate: float = 0.5
    lora: bool = False  # train LoRA adapters on a frozen init_from model
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0  # peft's default: no dropout unless asked
    lora_targets: list[str] | None = None  # transformers' module names; None: all projections
    base_dtype: str = "float32"  # the frozen base under LoRA: float32 or bfloat16
    merge: bool = False  # LoRA: also write the merged full model to DIR/model
    license: str | None = None  # the model card's license (Hub id); None: see model/card.py
    eval_every: int = 50  # 0: only at the end
    eval_batches: int = 8
    # The fixed validation set: its first rows in one process's order, split over the
    # data-parallel ranks (train/validation.py). None: eval_batches x batch_size.
    eval_sequences: int | None = None
    log_every: int = 10
    checkpoint_every: int = 100  # 0: only at the end
    keep_checkpoints: int = 2
    seed: int = 1234
    dtype: str = "auto"  # auto: bf16 autocast on CUDA and AMX CPUs, else float32
    compile: bool | None = None  # torch.compile each block; None: on CUDA, off on CPU
    activation_checkpointing: bool = False
    parallel: str = "ddp"  # ddp | fsdp | tp | fsdp+tp, under torchrun with more than one process
    tp_size: int | None = None  # tensor-parallel ranks under fsdp+tp (data parallel: the rest)
    # Pipeline stages over the ranks (outermost mesh dimension); the micro-batches of one
    # optimizer step are its grad_accum batches. Composes with every `parallel` mode.
    pp_size: int = 1
    pp_schedule: str = "1f1b"  # 1f1b | gpipe | interleaved1f1b (see PP_SCHEDULES)
    peak_flops: float | None = None  # per device, for MFU; None: a table or a measured matmul
    # FSDP2 under grad_accum > 1: reduce-scatter every micro-step (gradients stay sharded) or
    # only the last (fewer collectives, whole fp32 gradients meanwhile); see gradient_sync.
    fsdp_grad_sync: str = "every_microstep"
    prefetch: int = 2  # batches a background thread prepares ahead (FIM included); 0: none

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
            "lora_rank": 1,
            "eval_every": 0,
            "eval_batches": 1,
            "log_every": 1,
            "checkpoint_every": 0,
            "keep_checkpoints": 1,
            "seed": 0,
            "eval_sequences": 1,
            "prefetch": 0,
        }
        for name, least in whole.items():
            value = getattr(self, name)
            if value is None and name in ("warmup_steps", "eval_sequences"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UserError(
                    f"train config: {name} must be a whole number >= {least}, got {value!r}"
                )
        if self.seed >= 2**32:
            raise UserError(f"train config: seed must be below 2**32, got {self.seed}")
        numbers = ("lr", "min_lr", "weight_decay", "grad_clip", "fim_rate", "fim_spm_rate")
        for name in (*numbers, "lora_alpha", "lora_dropout"):
            value = getattr(self, name)
            if value is None and name in ("lr", "min_lr", "weight_decay", "fim_rate"):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"train config: {name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise UserError(f"train config: {name} must be finite and >= 0, got {value!r}")
            setattr(self, name, float(value))
        if self.lr is not None and self.lr <= 0:
            raise UserError(f"train config: lr must be positive (e.g. 3e-4), got {self.lr}")
        if self.lr is not None and self.min_lr is not None and self.min_lr > self.lr:
            raise UserError(
                f"train config: min_lr ({self.min_lr}) must not exceed lr ({self.lr}); "
                "the cosine decays from lr down to min_lr"
            )
        if not self.lora_alpha > 0:
            raise UserError(f"train config: lora_alpha must be positive, got {self.lora_alpha}")
        if self.lora_dropout >= 1:
            raise UserError(f"train config: lora_dropout must be below 1, got {self.lora_dropout}")
        for name in ("fim_rate", "fim_spm_rate"):
            if getattr(self, name) is not None and getattr(self, name) > 1:
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
        if self.fsdp_grad_sync not in FSDP_GRAD_SYNC:
            raise UserError(
                f"train config: fsdp_grad_sync must be one of {', '.join(FSDP_GRAD_SYNC)}, "
                f"got {self.fsdp_grad_sync!r}"
            )
        self._check_pipeline()
        for name in ("compile", "activation_checkpointing", "lora", "merge", "sft"):
            if not isinstance(getattr(self, name), bool) and not (
                name == "compile" and self.compile is None
            ):
                raise UserError(f"train config: {name} must be true or false")
        if self.lora_targets is not None:
            if isinstance(self.lora_targets, str):
                self.lora_targets = [t.strip() for t in self.lora_targets.split(",") if t.strip()]
            if not self.lora_targets or not all(isinstance(t, str) for t in self.lora_targets):
                raise UserError(
                    'train config: lora_targets names modules, e.g. ["q_proj", "v_proj"], '
                    f"got {self.lora_targets!r}"
                )
        if self.base_dtype not in BASE_DTYPES:
            raise UserError(
                f"train config: base_dtype must be one of {', '.join(BASE_DTYPES)}, "
                f"got {self.base_dtype!r}"
            )
        if self.lora and self.init_from is None:
            raise UserError(
                "train config: LoRA adapts an existing model: give --init-from MODEL_DIR "
                "(a gpt_bigcode or starcoder2 folder)"
            )
        if (self.merge or self.base_dtype != "float32") and not self.lora:
            what = "merge" if self.merge else f"base_dtype={self.base_dtype}"
            raise UserError(f"train config: {what} is a LoRA setting: add --lora")
        if self.lora and self.parallel in ("tp", "fsdp+tp"):
            raise UserError(
                f"train config: LoRA runs under ddp or fsdp, not parallel={self.parallel}"
            )
        if self.license is not None and (not isinstance(self.license, str) or not self.license):
            raise UserError(
                "train config: license is a Hub license id (e.g. bigcode-openrail-m, "
                f"apache-2.0), got {self.license!r}"
            )
        if self.peak_flops is not None:
            ok = isinstance(self.peak_flops, int | float) and not isinstance(self.peak_flops, bool)
            if not ok or not self.peak_flops > 0:
                raise UserError(
                    f"train config: peak_flops must be a positive FLOP/s figure (e.g. 989e12 for "
                    f"an H100's dense bf16), got {self.peak_flops!r}"
                )
            self.peak_flops = float(self.peak_flops)

    def _check_pipeline(self) -> None:
        """pp_size and pp_schedule, and the micro-batches the schedule needs."""
        pp = self.pp_size
        if isinstance(pp, bool) or not isinstance(pp, int) or pp < 1:
            raise UserError(f"train config: pp_size must be a whole number >= 1, got {pp!r}")
        if self.pp_schedule not in PP_SCHEDULES:
            raise UserError(
                f"train config: pp_schedule must be one of {', '.join(PP_SCHEDULES)}, "
                f"got {self.pp_schedule!r}"
            )
        if pp == 1:
            return
        if self.lora or self.sft:
            what = "LoRA" if self.lora else "instruction tuning (sft)"
            raise UserError(f"train config: {what} runs without pipeline stages: set pp_size=1")
        micro = self.grad_accum
        if self.pp_schedule == "1f1b" and micro < pp:
            raise UserError(
                f"train config: the 1f1b schedule needs at least one micro-batch per stage: "
                f"set grad_accum >= {pp} (pp_size), got {micro}; or pp_schedule=gpipe"
            )
        rounds = max(1, micro // pp)
        if self.pp_schedule == "interleaved1f1b" and micro % rounds:
            raise UserError(
                f"train config: interleaved1f1b runs grad_accum micro-batches in "
                f"{rounds} equal rounds: set grad_accum to a multiple of pp_size ({pp}) or "
                f"below {2 * pp}, got {micro}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def compiles(self, device_type: str) -> bool:
        """Whether the blocks are compiled on a device of `device_type`: as set, or under
        None (auto) on CUDA only, where compiled blocks are much faster; on CPU compiling
        costs more start-up than it saves in short runs.

        >>> TrainConfig().compiles("cuda"), TrainConfig().compiles("cpu")
        (True, False)
        """
        return self.compile if self.compile is not None else device_type == "cuda"

    @property
    def validation_sequences(self) -> int:
        """Rows in the fixed validation set (at most what the valid split has).

        >>> TrainConfig(eval_batches=2, batch_size=4).validation_sequences
        8
        """
        if self.eval_sequences is not None:
            return self.eval_sequences
        return self.eval_batches * self.batch_size

    @property
    def kind(self) -> str:
        """What the run does: pretrain (from a preset), finetune (all of init_from's
        weights) or lora (adapters on a frozen init_from)."""
        if self.lora:
            return "lora"
        return "finetune" if self.init_from is not None else "pretrain"

    def resolved(self, fim: str = "context") -> TrainConfig:
        """This config with every unset (None) setting given its default for the run's kind
        (DEFAULTS) and for the pack's FIM (`fim`: context, file or none, from its meta.json).

        >>> TrainConfig(max_steps=100, init_from="base").resolved().warmup_steps
        5
        >>> TrainConfig().resolved(fim="file").fim_rate
        0.0
        """
        defaults = DEFAULTS[self.kind]
        lr = self.lr if self.lr is not None else defaults["lr"]
        warmup = self.warmup_steps
        if warmup is None:
            warmup = defaults.get("warmup_steps")
            if warmup is None:
                warmup = max(1, round(defaults["warmup_fraction"] * self.max_steps))
        fim_rate = self.fim_rate
        if fim_rate is None:
            fim_rate = 0.5 if fim == "context" and not self.sft else 0.0
        elif fim_rate > 0 and (fim != "context" or self.sft):
            why = {
                "file": "the pack applied FIM itself, at the file level (StarCoder2's "
                "layout): set the pack's fim_rate instead",
                "none": "the pack's tokenizer has no FIM tokens",
            }.get(fim, "instruction tuning trains on prompt/completion pairs as they are")
            raise UserError(f"train config: fim_rate {fim_rate} cannot apply ({why}); set it to 0")
        return dataclasses.replace(
            self,
            lr=lr,
            min_lr=self.min_lr if self.min_lr is not None else lr / 10,
            warmup_steps=warmup,
            weight_decay=(
                self.weight_decay if self.weight_decay is not None else defaults["weight_decay"]
            ),
            fim_rate=fim_rate,
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config saved by `to_dict` (a checkpoint's); unknown keys are a UserError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"train config: unknown setting(s) {', '.join(unknown)}")
        return cls(**values)


def resume_config(
    saved: TrainConfig, given: dict[str, Any]
) -> tuple[TrainConfig, dict[str, tuple[Any, Any]]]:
    """The settings a resumed run continues with: the checkpoint's (`saved`), with the run
    length and cadence settings of `given` (what this invocation set) applied, and no time
    limit but one given now. Returns it and {setting: (old, new)} for what changed; any other
    changed setting is a UserError naming it.

    >>> saved = TrainConfig(max_steps=100, max_minutes=5.0, lr=1e-3).resolved()
    >>> config, changed = resume_config(saved, {"max_steps": 300, "lr": 1e-3})
    >>> config.max_steps, config.max_minutes, config.lr, changed
    (300, None, 0.001, {'max_steps': (100, 300)})
    """
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise UserError(f"train config: unknown setting(s) {', '.join(unknown)}")
    # The tokenizer is a path: another path to the same tokenizer is fine (its fingerprint
    # is checked against the pack's when the run starts).
    changed = {
        key: (getattr(saved, key), value)
        for key, value in given.items()
        if key != "tokenizer" and _differs(getattr(saved, key), value)
    }
    refused = [key for key in changed if key not in RESUME_SETTINGS]
    if refused:
        shown = ", ".join(f"{k} ({changed[k][0]!r} -> {changed[k][1]!r})" for k in refused)
        raise UserError(
            f"--resume continues with the checkpoint's settings, and {shown} cannot change: "
            f"only {', '.join(RESUME_SETTINGS)} can. Drop the setting, or start a new run in "
            "another output folder"
        )
    values = {key: value for key, value in given.items() if key in RESUME_SETTINGS}
    values.setdefault("max_minutes", None)  # an earlier invocation's limit is not this one's
    if "tokenizer" in given:
        values["tokenizer"] = given["tokenizer"]
    return dataclasses.replace(saved, **values), changed


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, tuple) and isinstance(new, list):  # TOML gives lists
        new = tuple(new)
    if isinstance(old, float) and isinstance(new, int) and not isinstance(new, bool):
        new = float(new)
    return old != new


@dataclass
class TrainResult:
    out_dir: Path
    steps: int  # optimizer steps done in all, resumed runs included
    tokens: int  # training tokens seen in all (every rank)
    final_loss: float  # the mean training loss of the last logged interval
    val_loss: float | None  # the last evaluation's, None without a valid split
    model_dir: Path | None  # the exported Hugging Face folder (a LoRA run's: when merged)
    skipped: bool = False  # a finished run with the same settings was already there
    adapter_dir: Path | None = None  # a LoRA run's peft adapter folder
    resumed_changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
