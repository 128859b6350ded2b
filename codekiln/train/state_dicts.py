"""State dicts of a parallelised model under the model's own names, whatever its layout.

Checkpoints hold *sharded* state dicts (`sharded_state`): each rank's own shards, as
`torch.distributed.checkpoint.state_dict` gives them, written by every rank with DCP
(checkpoint.py). Their keys and global shapes are the model's own in every layout, so DCP
reshards them into any other: under tensor parallelism each layer's q/k/v (and their
optimizer moments) become the fused `c_attn.weight` / `c_attn.bias` ([Q | K | V] rows),
sharded by rows over the same ranks, and are cut back on load. `full_model_state` and
`full_optimizer_state` still gather a whole state dict, for tests and the benchmark of the
old way against the new.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from codekiln.train.tensor_parallel import ShardedQKV, qkv_modules


def _full_options(**extra):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **extra)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on CPU under the model's own names (rank 0's; other
    ranks may get an empty dict); a collective under FSDP2 and TP (every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_full_options(cpu_offload=True))
    return _fused(state, qkv_modules(model))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state keyed by parameter name (not position), on CPU; a collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(model, optimizer, options=_full_options(cpu_offload=True))
    return _map_optimizer_state(state, _fused, qkv_modules(model))


def load_full_state(
    model: nn.Module,
    model_state: dict,
    optimizer: torch.optim.Optimizer | None = None,
    optimizer_state: dict | None = None,
    strict: bool = True,
) -> None:
    """Load full state dicts (as `full_model_state` makes them) into a plain, DDP, FSDP2 or
    tensor-parallel model and its optimizer; every rank passes the same dicts. `strict`
    False loads a part of the model (a LoRA run's adapters) and leaves the rest."""
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    qkv = qkv_modules(model)
    set_model_state_dict(model, _split(model_state, qkv), options=_full_options(strict=strict))
    if optimizer is not None and optimizer_state is not None:
        optimizer_state = _map_optimizer_state(optimizer_state, _split, qkv)
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=_full_options())


def _fused(state: dict, qkv: dict[str, ShardedQKV]) -> dict:
    """`state` with each ShardedQKV's q_/k_/v_ entries concatenated into its weight and bias
    (a full state dict's tensors, or an optimizer state's per-parameter dicts), in place of
    the q_ entry so the order is the model's own.

    >>> parts = {f"c.{p}_{k}": torch.zeros(1) for k in ("weight", "bias") for p in "qkv"}
    >>> {name: t.shape[0] for name, t in _fused(parts, {"c": None}).items()}
    {'c.weight': 3, 'c.bias': 3}
    """
    fused: dict = {}
    skip = {f"{name}.{p}_{kind}" for name in qkv for kind in ("weight", "bias") for p in "kv"}
    for key, value in state.items():
        name, _, leaf = key.rpartition(".")
        if name in qkv and leaf in ("q_weight", "q_bias"):
            kind = leaf[2:]
            fused[f"{name}.{kind}"] = _concat([state[f"{name}.{p}_{kind}"] for p in "qkv"])
        elif key not in skip:
            fused[key] = value
    return fused


def _split(state: dict, qkv: dict[str, ShardedQKV]) -> dict:
    """The inverse of `_fused`: each c_attn weight and bias cut into its q_/k_/v_ entries."""
    split: dict = {}
    for key, value in state.items():
        name, _, kind = key.rpartition(".")
        if name in qkv and kind in ("weight", "bias"):
            for part, piece in zip("qkv", _cut(value, qkv[name].sizes), strict=True):
                split[f"{name}.{part}_{kind}"] = piece
        else:
            split[key] = value
    return split


def _concat(values: list):
    """Rows of tensors joined; per-parameter optimizer states joined key by key (a scalar,
    such as AdamW's step count, is the same for all three and kept once)."""
    if isinstance(values[0], dict):
        return {key: _concat([v[key] for v in values]) for key in values[0]}
    if isinstance(values[0], torch.Tensor) and values[0].ndim > 0:
        return torch.cat(values)
    return values[0]


def _cut(value, sizes: tuple[int, int, int]) -> list:
    if isinstance(value, dict):
        pieces = {key: _cut(v, sizes) for key, v in value.items()}
        return [{key: pieces[key][i] for key in value} for i in range(3)]
    if isinstance(value, torch.Tensor) and value.ndim > 0:
        return [piece.clone() for piece in value.split(sizes)]
    return [value] * 3


def _map_optimizer_state(state: dict, mapping, qkv: dict[str, ShardedQKV]) -> dict:
    """An optimizer state dict (parameter names as keys) with `mapping` (`_fused` or
    `_split`) applied to its per-parameter states and to each group's parameter list."""
    if not qkv or "state" not in state:
        return state
    groups = []
    for group in state["param_groups"]:
        names = mapping(dict.fromkeys(group["params"]), qkv)
        groups.append({**group, "params": list(names)})
    return {"state": mapping(state["state"], qkv), "param_groups": groups}


_QKV_LEAVES = {f"{p}_{kind}": (p, kind) for p in "qkv" for kind in ("weight", "bias")}


def _state_options(**extra):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # Flat optimizer keys ("state.<name>.exp_avg", "param_groups.<name>.lr"): one entry per
    # parameter, so pipeline stages that hold different parameters never write the same key
    # with different values (a nested param_groups list would be one key per group).
    return StateDictOptions(flatten_optimizer_state_dict=True, **extra)


def sharded_state(model: nn.Module, optimizer: torch.optim.Optimizer, keep=None) -> dict[str, dict]:
    """{"model": ..., "optimizer": ...}: this rank's shards of the model's and optimizer's
    state (DTensors under FSDP2/TP, whole tensors in one process), keyed by the model's own
    names with their global shapes, for `torch.distributed.checkpoint` to save: nothing is
    gathered, but one layer's c_attn at a time under tensor parallelism (see `_fuse_rows`).
    `keep(name)` picks the model entries to include (a LoRA run's adapters); a collective."""
    model_state, optimizer_state = _own_state(model, optimizer, keep)
    qkv = set(qkv_modules(model))
    return {
        "model": _fuse_rows(model_state, qkv)[0],
        "optimizer": _fuse_rows(optimizer_state, qkv)[0],
    }


def load_sharded_state(
    model: nn.Module, optimizer: torch.optim.Optimizer | None, read, keep=None
) -> None:
    """Fill `model` (and `optimizer`) from a checkpoint: `read(target)` loads in place into
    a state shaped as `sharded_state`'s (torch.distributed.checkpoint.load does), from
    whatever layout wrote it. With `keep`, only those model entries are read, the rest is
    left (a LoRA run's frozen base). A collective."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    if optimizer is not None:
        # torch makes the optimizer's state (the target to load into) with a zero-gradient
        # step, but only when no parameter has a gradient; a pending one is void anyway.
        optimizer.zero_grad(set_to_none=True)
    model_state, optimizer_state = _own_state(model, optimizer, keep)
    qkv = set(qkv_modules(model))
    fused_model, parts_model = _fuse_rows(model_state, qkv, empty=True)
    target = {"model": fused_model}
    if optimizer is not None:
        fused_optimizer, parts_optimizer = _fuse_rows(optimizer_state, qkv, empty=True)
        target["optimizer"] = fused_optimizer
    read(target)
    model_state = _cut_rows(target["model"], parts_model)
    set_model_state_dict(model, model_state, options=_state_options(strict=keep is None))
    if optimizer is not None:
        flat = _cut_rows(target["optimizer"], parts_optimizer)
        # torch's own unflattening fails on an empty parameter group (a LoRA run's group of
        # decayed matrices can be one), so the flat keys go back into the nested layout here.
        nested = _nest_optimizer_state(flat, get_optimizer_state_dict(model, optimizer))
        set_optimizer_state_dict(model, optimizer, nested, options=StateDictOptions())


def _nest_optimizer_state(flat: dict, template: dict) -> dict:
    """A flat optimizer state ("state.<name>.<key>", "param_groups.<name>.<option>") in the
    nested layout of `template` (the optimizer's own, by parameter name).

    >>> template = {"state": {"w": {"step": 0}}, "param_groups": [{"lr": 1, "params": ["w"]},
    ...     {"lr": 1, "params": []}]}
    >>> nested = _nest_optimizer_state({"state.w.step": 5, "param_groups.w.lr": 2}, template)
    >>> nested["state"], [group["lr"] for group in nested["param_groups"]]
    ({'w': {'step': 5}}, [2, 1])
    """
    state = {
        name: {key: flat[f"state.{name}.{key}"] for key in entry}
        for name, entry in template["state"].items()
    }
    groups = []
    for group in template["param_groups"]:
        group = dict(group)
        if group["params"]:
            first = group["params"][0]
            for option in group:
                key = f"param_groups.{first}.{option}"
                if option != "params" and key in flat:
                    group[option] = flat[key]
        groups.append(group)
    return {"state": state, "param_groups": groups}


def _own_state(model: nn.Module, optimizer, keep) -> tuple[dict, dict]:
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    model_state = get_model_state_dict(model, options=_state_options())
    if keep is not None:
        model_state = {k: v for k, v in model_state.items() if keep(k)}
    if optimizer is None:
        return model_state, {}
    return model_state, get_optimizer_state_dict(model, optimizer, options=_state_options())


def _qkv_key(key: str, qkv: set[str]) -> tuple[str, str] | None:
    """(the fused key, "q" | "k" | "v") when `key` (a parameter name, or a flat optimizer key
    "state.<name>.exp_avg") names a ShardedQKV part, else None.

    >>> _qkv_key("state.blocks.0.attn.c_attn.k_bias.exp_avg", {"blocks.0.attn.c_attn"})
    ('state.blocks.0.attn.c_attn.bias.exp_avg', 'k')
    """
    parts = key.split(".")
    for i, leaf in enumerate(parts):
        if leaf in _QKV_LEAVES:
            name = ".".join(parts[:i])
            if name in qkv or name.partition(".")[2] in qkv:
                part, kind = _QKV_LEAVES[leaf]
                return ".".join([*parts[:i], kind, *parts[i + 1 :]]), part
    return None


def _fuse_rows(state: dict, qkv: set[str], empty: bool = False) -> tuple[dict, dict]:
    """`state` with each ShardedQKV's q/k/v entries replaced by one fused entry under the
    model's own name (in q's place), and {fused key: [(key, value) of q, k, v]} to undo it.

    Why not write q/k/v as chunks of the fused tensor directly: DCP takes a tensor's chunk
    layout from its DTensor placements, and a rank's q, k and v rows are three separate row
    ranges of [Q | K | V] (with multi-query's K/V on every rank), which no placement
    describes. So each layer's fused tensor is made whole on every rank (one layer at a
    time: the transient cost) and re-sharded by rows, Shard(0) on every mesh dimension,
    by local slicing (no communication): every rank still writes its own 1/world part.
    `empty` makes the same layout unfilled, as a target to load into."""
    if not qkv:
        return state, {}
    groups: dict[str, dict[str, Any]] = {}
    fused: dict = {}
    for key, value in state.items():
        found = _qkv_key(key, qkv)
        if found is None:
            fused[key] = value
            continue
        fused_key, part = found
        groups.setdefault(fused_key, {})[part] = (key, value)
        fused.setdefault(fused_key, None)  # the position of the first part
    for fused_key, parts in groups.items():
        fused[fused_key] = _join_rows([parts[p][1] for p in "qkv"], empty)
    return fused, {k: [parts[p] for p in "qkv"] for k, parts in groups.items()}


def _join_rows(values: list, empty: bool):
    """q, k, v joined by rows into a row-sharded DTensor (a scalar or option: q's)."""
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    first = values[0]
    if not isinstance(first, torch.Tensor) or first.ndim == 0:
        return first  # AdamW's step count, a group's lr: the same for all three
    if not isinstance(first, DTensor):
        return torch.cat(values)
    mesh = first.device_mesh
    placements = [Shard(0)] * mesh.ndim
    shape = torch.Size((sum(v.shape[0] for v in values), *first.shape[1:]))
    if empty:
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

        local_shape, _ = compute_local_shape_and_global_offset(shape, mesh, placements)
        local = torch.empty(local_shape, dtype=first.dtype, device=first.to_local().device)
        return DTensor.from_local(
            local, mesh, placements, run_check=False, shape=shape, stride=_contiguous(shape)
        )
    whole = torch.cat([v.full_tensor() for v in values])
    return distribute_tensor(whole, mesh, placements, src_data_rank=None)


def _contiguous(shape: torch.Size) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _cut_rows(state: dict, originals: dict) -> dict:
    """The inverse of `_fuse_rows`: each fused entry made whole (one layer at a time), cut
    into q/k/v and laid out as the entries in `originals` were (by local slicing)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not originals:
        return state
    cut: dict = {}
    for key, value in state.items():
        if key not in originals:
            cut[key] = value
            continue
        names = [name for name, _ in originals[key]]
        parts = [like for _, like in originals[key]]
        if not isinstance(value, torch.Tensor):
            cut.update(dict.fromkeys(names, value))
            continue
        if value.ndim == 0:
            # One tensor each: AdamW adds 1 to each parameter's step in place, so a shared
            # one would count three steps per step.
            cut.update({name: value.clone() for name in names})
            continue
        whole = value.full_tensor() if isinstance(value, DTensor) else value
        pieces = whole.split([p.shape[0] for p in parts])
        for name, piece, like in zip(names, pieces, parts, strict=True):
            if isinstance(like, DTensor):
                piece = distribute_tensor(
                    piece.contiguous(), like.device_mesh, like.placements, src_data_rank=None
                )
            else:
                piece = piece.clone()
            cut[name] = piece
    return cut
