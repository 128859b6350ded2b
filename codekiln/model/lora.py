"""LoRA (Hu et al. 2021) on CodeGPT's linear layers, in peft's adapter format.

A targeted linear layer keeps its frozen weight W and learns a low-rank update: for input x,

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T        A: (r, in), B: (out, r)

with A drawn as peft draws it (Kaiming-uniform, a = sqrt(5)) and B zero, so training starts
from the base model exactly. Targets are named as transformers names the modules, because
that is what peft's `target_modules` and adapter files use:

- starcoder2: `q_proj`, `k_proj`, `v_proj`, `o_proj`, `c_fc`, `c_proj` (the MLP's);
- gpt_bigcode: `c_attn`, `c_proj` (attention's and the MLP's), `c_fc`.

CodeGPT fuses q/k/v into one `c_attn` whose output rows are [Q | K | V]; StarCoder2's q_proj,
k_proj and v_proj are three modules with an adapter each, so a LoraLinear holds one (A, B)
pair per part and adds each part's update to its own block of rows. The result is the same
function peft computes on transformers' model, parameter for parameter.

The adapter files: `adapter_config.json` (peft's LoraConfig fields) and
`adapter_model.safetensors` with `base_model.model.<module>.lora_A.weight` (r, in) and
`.lora_B.weight` (out, r), as `peft.PeftModel.from_pretrained` reads them. Multi-head
gpt_bigcode interleaves c_attn's rows per head, so B's rows are reordered the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codekiln.errors import UserError
from codekiln.manifest import atomic_path, write_json
from codekiln.model.config import ModelConfig

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
# The attention and MLP projections of each architecture: the default targets.
TARGETS = {
    "starcoder2": ("q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"),
    "gpt_bigcode": ("c_attn", "c_proj", "c_fc"),
}


@dataclass
class LoraSpec:
    """The adapter's shape: rank, scaling numerator and dropout, and the target modules
    (transformers' names; None: every attention and MLP projection).

    >>> LoraSpec(rank=8, alpha=16).scale
    2.0
    """

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise UserError(f"lora_rank must be a whole number >= 1 (e.g. 8), got {self.rank!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float):
            raise UserError(f"lora_alpha must be a number (e.g. 16), got {self.alpha!r}")
        if not self.alpha > 0:
            raise UserError(f"lora_alpha must be positive (e.g. 16), got {self.alpha}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float):
            raise UserError(f"lora_dropout must be a number in [0, 1), got {self.dropout!r}")
        if not 0 <= self.dropout < 1:
            raise UserError(f"lora_dropout must be in [0, 1), got {self.dropout}")
        if self.targets is not None:
            if isinstance(self.targets, str):
                self.targets = [t.strip() for t in self.targets.split(",") if t.strip()]
            if not self.targets or not all(isinstance(t, str) for t in self.targets):
                raise UserError(
                    "lora_targets must name modules, e.g. q_proj,v_proj (or be unset for all "
                    f"attention and MLP projections), got {self.targets!r}"
                )

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@dataclass(frozen=True)
class _Target:
    """One adapter: its module in CodeGPT, the rows of that module's output it updates,
    and its module name in transformers' model."""

    ours: str  # e.g. blocks.0.attn.c_attn
    part: str  # the key of its (A, B) pair in the LoraLinear: q, k, v or all
    rows: tuple[int, int]
    hf: str  # e.g. model.layers.0.self_attn.k_proj
    per_head: int = 0  # n_head for multi-head gpt_bigcode's interleaved c_attn


def lora_targets(config: ModelConfig, kind: str, names: list[str] | None) -> list[_Target]:
    """The adapters that `names` (transformers' module names) ask for, in module order.

    >>> config = ModelConfig(n_embd=8, n_head=2, n_layer=1, position="rotary")
    >>> [(t.ours, t.part, t.rows) for t in lora_targets(config, "starcoder2", ["v_proj"])]
    [('blocks.0.attn.c_attn', 'v', (12, 16))]
    """
    known = TARGETS[kind]
    names = list(known) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(
            f"LoRA target(s) {', '.join(unknown)} are not modules of a {kind} model; "
            f"its targets are {', '.join(known)}"
        )
    C, kv, inner = config.n_embd, config.kv_dim, config.inner_dim
    targets = []
    for i in range(config.n_layer):
        block = f"blocks.{i}."
        if kind == "starcoder2":
            hf = f"model.layers.{i}."
            table = [
                ("q_proj", "attn.c_attn", "q", (0, C), "self_attn.q_proj"),
                ("k_proj", "attn.c_attn", "k", (C, C + kv), "self_attn.k_proj"),
                ("v_proj", "attn.c_attn", "v", (C + kv, C + 2 * kv), "self_attn.v_proj"),
                ("o_proj", "attn.c_proj", "all", (0, C), "self_attn.o_proj"),
                ("c_fc", "mlp.c_fc", "all", (0, inner), "mlp.c_fc"),
                ("c_proj", "mlp.c_proj", "all", (0, C), "mlp.c_proj"),
            ]
        else:
            hf = f"transformer.h.{i}."
            table = [
                ("c_attn", "attn.c_attn", "all", (0, C + 2 * kv), "attn.c_attn"),
                ("c_proj", "attn.c_proj", "all", (0, C), "attn.c_proj"),
                ("c_fc", "mlp.c_fc", "all", (0, inner), "mlp.c_fc"),
                ("c_proj", "mlp.c_proj", "all", (0, C), "mlp.c_proj"),
            ]
        for name, module, part, rows, theirs in table:
            if name in names:
                interleaved = kind == "gpt_bigcode" and module == "attn.c_attn"
                per_head = config.n_head if interleaved and config.n_kv_heads > 1 else 0
                targets.append(_Target(block + module, part, rows, hf + theirs, per_head))
    return targets


class LoraLinear(nn.Linear):
    """A linear layer with frozen `weight`/`bias` (the base's own parameters, under their
    own names) and one trainable (A, B) pair per block of output rows it updates."""

    def __init__(self, base: nn.Linear, parts: dict[str, tuple[int, int]], spec: LoraSpec):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.scale = spec.scale
        self.lora_dropout = spec.dropout
        self.parts = dict(sorted(parts.items(), key=lambda item: item[1]))
        device = base.weight.device
        self.lora_A = nn.ParameterDict(
            {
                name: nn.Parameter(torch.empty(spec.rank, self.in_features, device=device))
                for name in self.parts
            }
        )
        self.lora_B = nn.ParameterDict(
            {
                name: nn.Parameter(torch.zeros(hi - lo, spec.rank, device=device))
                for name, (lo, hi) in self.parts.items()
            }
        )
        self.reset_lora()

    @torch.no_grad()
    def reset_lora(self) -> None:
        """A as peft draws it (nn.Linear's default: Kaiming-uniform with a = sqrt(5)), B zero."""
        for name in self.parts:
            nn.init.kaiming_uniform_(self.lora_A[name], a=math.sqrt(5))
            nn.init.zeros_(self.lora_B[name])

    def forward(self, x: Tensor) -> Tensor:
        device = x.device.type
        if torch.is_autocast_enabled(device) and x.dtype == torch.float32:
            # Cast once: autocast would cast x for the base's matmul and again for the
            # adapter's, and each copy would be kept for the backward pass.
            x = x.to(torch.get_autocast_dtype(device))
        y = F.linear(x, self.weight, self.bias)
        h = F.dropout(x, self.lora_dropout, self.training) if self.lora_dropout else x
        names = list(self.parts)
        # One matmul for every part's A (they all read the same input), then each B.
        a = F.linear(h, torch.cat([self.lora_A[n] for n in names]))  # (..., parts x r)
        r = self.lora_A[names[0]].shape[0]
        pieces, position = [], 0
        for index, name in enumerate(names):
            lo, hi = self.parts[name]
            if lo > position:
                pieces.append(a.new_zeros(*a.shape[:-1], lo - position))
            pieces.append(F.linear(a[..., index * r : (index + 1) * r], self.lora_B[name]))
            position = hi
        if position < self.out_features:
            pieces.append(a.new_zeros(*a.shape[:-1], self.out_features - position))
        delta = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)
        return torch.add(y, delta.to(y.dtype), alpha=self.scale)

    @torch.no_grad()
    def delta_weight(self) -> Tensor:
        """scale * B A for every part, as one (out, in) float32 matrix."""
        delta = torch.zeros(self.out_features, self.in_features, dtype=torch.float32)
        for name, (lo, hi) in self.parts.items():
            delta[lo:hi] = self.scale * (
                self.lora_B[name].detach().float().cpu() @ self.lora_A[name].detach().float().cpu()
            )
        return delta


def add_lora(model: nn.Module, kind: str, spec: LoraSpec) -> list[_Target]:
    """Freeze every parameter of `model` (a CodeGPT) and put LoRA adapters on the targets.
    The adapters' parameters are float32 whatever the base's dtype; they are drawn from
    torch's current RNG (seed it first)."""
    targets = lora_targets(model.config, kind, spec.targets)
    for param in model.parameters():
        param.requires_grad_(False)
    by_module: dict[str, dict[str, tuple[int, int]]] = {}
    for target in targets:
        by_module.setdefault(target.ours, {})[target.part] = target.rows
    for name, parts in by_module.items():
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, leaf, LoraLinear(getattr(parent, leaf), parts, spec))
    return targets


def lora_modules(model: nn.Module) -> dict[str, LoraLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLinear)}


@torch.no_grad()
def merge_lora(model: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """`model` with every adapter folded into its weight (W + scale B A, computed in float32)
    and the LoraLinear layers replaced by plain ones; every parameter cast to `dtype` (a
    small update would vanish in a bfloat16 weight's rounding, so float32 by default)."""
    for name, module in list(lora_modules(model).items()):
        parent_name, _, leaf = name.rpartition(".")
        merged = nn.Linear(module.in_features, module.out_features, module.bias is not None)
        merged.weight = nn.Parameter(module.weight.detach().float().cpu() + module.delta_weight())
        if module.bias is not None:
            merged.bias = nn.Parameter(module.bias.detach().float().cpu())
        setattr(model.get_submodule(parent_name), leaf, merged)
    return model.to(dtype)


def lora_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The adapters' parameters under CodeGPT's names (what a LoRA checkpoint holds)."""
    return {
        name: param.detach()
        for name, param in model.named_parameters()
        if ".lora_A." in name or ".lora_B." in name
    }


def to_peft_state_dict(model: nn.Module, targets: list[_Target]) -> dict[str, Tensor]:
    """The adapters under peft's names and shapes (see the module docstring)."""
    from codekiln.model.convert import qkv_to_per_head

    state = {name: t.float().cpu() for name, t in lora_state_dict(_unwrap(model)).items()}
    out = {}
    for target in targets:
        a = state[f"{target.ours}.lora_A.{target.part}"]
        b = state[f"{target.ours}.lora_B.{target.part}"]
        if target.per_head:
            b = qkv_to_per_head(b, target.per_head)
        out[f"{PEFT_PREFIX}{target.hf}.lora_A.weight"] = a.contiguous()
        out[f"{PEFT_PREFIX}{target.hf}.lora_B.weight"] = b.contiguous()
    return out


def save_adapter(
    model: nn.Module,
    kind: str,
    spec: LoraSpec,
    out_dir: str | Path,
    base_model: str | None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """adapter_config.json + adapter_model.safetensors in `out_dir`, in peft's format."""
    from safetensors.torch import save_file

    targets = lora_targets(_unwrap(model).config, kind, spec.targets)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = to_peft_state_dict(model, targets)
    with atomic_path(out / ADAPTER_WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", **(metadata or {})})
    write_json(out / ADAPTER_CONFIG, peft_config(kind, spec, base_model))
    return out


def peft_config(kind: str, spec: LoraSpec, base_model: str | None) -> dict[str, Any]:
    """peft's LoraConfig fields for this adapter (the ones every peft version reads)."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": spec.rank,
        "lora_alpha": spec.alpha,
        "lora_dropout": spec.dropout,
        "target_modules": list(spec.targets or TARGETS[kind]),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "use_rslora": False,
        "use_dora": False,
        "revision": None,
    }


def load_adapter(model: nn.Module, kind: str, adapter_dir: str | Path) -> LoraSpec:
    """Put the adapter of a peft folder on `model` (a CodeGPT of the adapter's base); a
    UserError, naming the folder, for a folder that is not a LoRA adapter or an adapter made
    for another base (other module names or shapes)."""
    from safetensors import safe_open

    from codekiln.model.convert import qkv_from_per_head

    folder = Path(adapter_dir)
    settings = read_adapter_config(folder)
    spec = LoraSpec(
        rank=int(settings.get("r", 8)),
        alpha=float(settings.get("lora_alpha", 8)),
        dropout=float(settings.get("lora_dropout") or 0.0),
        targets=_target_names(settings, kind, folder),
    )
    if settings.get("rank_pattern") or settings.get("alpha_pattern") or settings.get("use_dora"):
        raise UserError(f"{folder}: per-module ranks or DoRA adapters are not supported")
    if settings.get("use_rslora"):
        raise UserError(f"{folder}: rank-stabilised LoRA (use_rslora) is not supported")
    targets = add_lora(model, kind, spec)
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise UserError(f"{folder} has no {ADAPTER_WEIGHTS}: not a peft LoRA adapter folder")
    modules = lora_modules(model)
    expected = {}
    for target in targets:
        expected[f"{PEFT_PREFIX}{target.hf}.lora_A.weight"] = (target, "A")
        expected[f"{PEFT_PREFIX}{target.hf}.lora_B.weight"] = (target, "B")
    seen = set()
    try:
        with safe_open(str(weights), framework="pt") as handle:
            names = list(handle.keys())
            for name in names:
                # peft writes its keys without the adapter's name; some tools keep ".default".
                key = name.replace(".lora_A.default.", ".lora_A.").replace(
                    ".lora_B.default.", ".lora_B."
                )
                if key not in expected:
                    raise UserError(
                        f"{folder} holds {name}, which is no LoRA module of this {kind} "
                        "model: the adapter was made for another base model"
                    )
                target, which = expected[key]
                tensor = handle.get_tensor(name).float()
                module = modules[target.ours]
                param = (module.lora_A if which == "A" else module.lora_B)[target.part]
                if which == "B" and target.per_head:
                    tensor = qkv_from_per_head(tensor, target.per_head)
                if tuple(tensor.shape) != tuple(param.shape):
                    raise UserError(
                        f"{folder}: {name} has shape {tuple(tensor.shape)} where this base "
                        f"model needs {tuple(param.shape)}: the adapter was made for another "
                        "base model"
                    )
                with torch.no_grad():
                    param.copy_(tensor)
                seen.add(key)
    except UserError:
        raise
    except Exception as exc:  # safetensors' own error type
        raise UserError(f"{weights} is truncated or corrupt ({str(exc)[:200]})") from None
    missing = sorted(set(expected) - seen)
    if missing:
        raise UserError(f"{folder} lacks {missing[0]}: the adapter is incomplete")
    return spec


def is_adapter(folder: str | Path) -> bool:
    """Whether a folder holds a peft adapter rather than a whole model."""
    folder = Path(folder)
    return (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file()


def adapter_base(adapter_dir: str | Path) -> Path:
    """The base model folder an adapter names (base_model_name_or_path), as given or
    relative to the adapter; a UserError when it is not a model folder on this machine."""
    folder = Path(adapter_dir)
    named = read_adapter_config(folder).get("base_model_name_or_path")
    for candidate in (Path(str(named)), folder / str(named)) if named else ():
        if (candidate / "config.json").is_file():
            return candidate
    raise UserError(
        f"{folder} adapts {named!r}, which is no model folder here: put the base model's "
        "folder there, or load the adapter with peft onto the base"
    )


def import_adapter(adapter_dir: str | Path):
    """(a CodeGPT of the adapter's base with the adapter merged in, in float32 and eval
    mode; the base folder)."""
    from codekiln.model.convert import model_type
    from codekiln.model.hf import import_hf

    base = adapter_base(adapter_dir)
    model = import_hf(base).float()
    load_adapter(model, model_type(model.config), adapter_dir)
    return merge_lora(model).eval(), base


def read_adapter_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / ADAPTER_CONFIG
    if not path.is_file():
        raise UserError(f"no {ADAPTER_CONFIG} in {folder}: give a peft LoRA adapter folder")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(settings, dict) or settings.get("peft_type") != "LORA":
        raise UserError(f"{path} is not a LoRA adapter (peft_type must be LORA)")
    return settings


def _target_names(settings: dict[str, Any], kind: str, folder: Path) -> list[str]:
    names = settings.get("target_modules")
    if isinstance(names, str):  # peft allows a regex; we take the names it mentions
        names = [n for n in TARGETS[kind] if n in names]
    if not isinstance(names, list) or not names:
        raise UserError(f"{folder}: adapter_config.json has no target_modules")
    short = [str(n).rpartition(".")[2] for n in names]
    unknown = sorted(set(short) - set(TARGETS[kind]))
    if unknown:
        raise UserError(
            f"{folder} targets {', '.join(unknown)}, which a {kind} model does not have: the "
            "adapter was made for another base model"
        )
    return list(dict.fromkeys(short))


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def lora_parameter_count(config: ModelConfig, kind: str, spec: LoraSpec) -> int:
    """Trainable parameters of the adapters: r x (in + out) per target.

    >>> config = ModelConfig(n_embd=8, n_head=2, n_layer=1, position="rotary")
    >>> lora_parameter_count(config, "starcoder2", LoraSpec(rank=2, targets=["q_proj"]))
    32
    """
    total = 0
    for target in lora_targets(config, kind, spec.targets):
        fan_in = config.inner_dim if target.ours.endswith("mlp.c_proj") else config.n_embd
        total += spec.rank * (fan_in + target.rows[1] - target.rows[0])
    return total
