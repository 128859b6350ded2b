"""Everything that turns the single-device model into a training one, applied from here.

`parallelize` applies, in this fixed order (torchtitan's, less tensor parallelism):

1. activation checkpointing: each block of `model.layer_modules()` recomputes its forward
   in the backward pass (`torch.utils.checkpoint`, non-reentrant). The block's `forward` is
   wrapped in place, so no wrapper module enters the parameter names and checkpoints and
   exports keep the model's own names.
2. compile: each block is compiled in place (`nn.Module.compile`), the unit FSDP2 shards
   and DDP buckets, again without renaming anything.
3. FSDP2 (`fully_shard` on every block, then on the root) or DDP, under torchrun only.

Checkpoints hold full (unsharded) state dicts on CPU, gathered with
`torch.distributed.checkpoint.state_dict` (`full_state_dict=True, cpu_offload=True`): every
rank takes part, rank 0 writes them. They load into any world size and into a plain model.
"""

from __future__ import annotations

import functools
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from codekiln.errors import UserError


@dataclass
class Distributed:
    """Where this process stands: rank `rank` of `world_size`, on `device`."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    started_group: bool = False  # this process created the process group (and ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"environment variable {name}={raw!r} is not a whole number") from None


def init_distributed() -> Distributed:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK and join the process group (NCCL on
    CUDA, gloo on CPU). Without torchrun (or with one process): rank 0 of 1, no group."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size <= 1:
        return Distributed(0, 1, 0, device)
    started = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        started = True
    return Distributed(rank, world_size, local_rank, device, started)


def shutdown(distributed: Distributed) -> None:
    if distributed.started_group and dist.is_initialized():
        dist.destroy_process_group()


def parallelize(
    model: nn.Module,
    distributed: Distributed,
    *,
    activation_checkpointing: bool = False,
    compile: bool = False,
    parallel: str = "ddp",
) -> nn.Module:
    """The module to train: `model` with checkpointing, compile and DDP/FSDP2 applied, in
    that order. FSDP2 shards `model` in place and returns it; DDP returns a wrapper."""
    blocks = list(model.layer_modules())
    if activation_checkpointing:
        for block in blocks:
            block.forward = _recomputed(block.forward)
    if compile:
        for block in blocks:
            block.compile()
    if not distributed.active:
        return model
    if parallel == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(distributed.device.type, (distributed.world_size,))
        for block in blocks:
            fully_shard(block, mesh=mesh)
        # The root holds what no block does: the (tied) embeddings, the final norm.
        fully_shard(model, mesh=mesh)
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [distributed.local_rank] if distributed.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def _recomputed(forward):
    """`forward` that keeps only its inputs for backward and runs again there."""
    from torch.utils.checkpoint import checkpoint

    @functools.wraps(forward)
    def run(*args, **kwargs):
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def gradient_sync(model: nn.Module, sync: bool) -> AbstractContextManager:
    """A context for one micro-step: gradients are reduced across ranks only when `sync`
    (the last micro-step of an optimizer step), so accumulation costs one reduction."""
    if hasattr(model, "no_sync"):  # DDP
        return nullcontext() if sync else model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(sync)
    return nullcontext()


def total_norm(norm: torch.Tensor) -> torch.Tensor:
    """clip_grad_norm_'s result as a plain tensor (a DTensor under FSDP2)."""
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """`tensor` reduced over all ranks in place (sum or max); unchanged without a group."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor


def all_gather_objects(value):
    """Every rank's `value`, in rank order ([value] without a group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _full_options(**extra):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **extra)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on CPU under the model's own names; a collective under
    FSDP2 (every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full_options(cpu_offload=True))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state keyed by parameter name (not position), on CPU; a collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_full_options(cpu_offload=True))


def load_full_state(
    model: nn.Module,
    model_state: dict,
    optimizer: torch.optim.Optimizer | None = None,
    optimizer_state: dict | None = None,
) -> None:
    """Load full state dicts (as `full_model_state` makes them) into a plain, DDP or FSDP2
    model and its optimizer; every rank passes the same dicts."""
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    set_model_state_dict(model, model_state, options=_full_options())
    if optimizer is not None and optimizer_state is not None:
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=_full_options())
