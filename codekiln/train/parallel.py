"""Everything that turns the single-device model into a training one, applied from here.

`parallelize` applies, in this fixed order (torchtitan's):

1. tensor parallelism (`parallel="tp"` over every rank, or the `tp` dimension of a 2-D
   (dp, tp) mesh under `"fsdp+tp"`), Megatron-style, with DTensor (tensor_parallel.py).
2. activation checkpointing: each block of `model.layer_modules()` recomputes its forward
   in the backward pass (`torch.utils.checkpoint`, non-reentrant). The block's `forward` is
   wrapped in place, so no wrapper module enters the parameter names and checkpoints and
   exports keep the model's own names.
3. compile: each block is compiled in place (`nn.Module.compile`), the unit FSDP2 shards
   and DDP buckets, again without renaming anything.
4. FSDP2 (`fully_shard` on every block, then on the root; over the `dp` mesh dimension under
   `"fsdp+tp"`) or DDP, under torchrun only.

The sharded state dicts that checkpoints hold, under the model's own names in every layout,
are state_dicts.py's.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from codekiln.errors import UserError
from codekiln.train.tensor_parallel import apply_tensor_parallel, check_tensor_parallel


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
        # Every rank past its last collective first: a rank that tears gloo down while its
        # peer still talks to it can make the peer's process abort at exit.
        dist.barrier()
        dist.destroy_process_group()


def mesh_shape(
    parallel: str, world_size: int, tp_size: int | None = None, pp_size: int = 1
) -> tuple[int, int, int]:
    """(pipeline, data-parallel, tensor-parallel) sizes of `world_size` ranks under
    `parallel` with `pp_size` pipeline stages; the ranks of each stage split by `parallel`.

    >>> mesh_shape("fsdp+tp", 8, tp_size=4), mesh_shape("tp", 2), mesh_shape("ddp", 8, pp_size=2)
    ((1, 2, 4), (1, 1, 2), (2, 4, 1))
    """
    if world_size % pp_size:
        raise UserError(
            f"pp_size={pp_size} pipeline stages need a number of processes divisible by "
            f"{pp_size}, got {world_size}: change pp_size or --nproc_per_node"
        )
    ranks = world_size // pp_size  # the ranks of one pipeline stage
    where = f"all {ranks} processes" + (" of a pipeline stage" if pp_size > 1 else "")
    if parallel == "tp":
        if tp_size not in (None, ranks):
            raise UserError(
                f"parallel=tp shards over {where}, so tp_size must be unset or {ranks}, got "
                f"{tp_size}; use parallel=fsdp+tp for fewer"
            )
        return pp_size, 1, ranks
    if parallel == "fsdp+tp":
        if tp_size is None or ranks % tp_size:
            raise UserError(
                f"parallel=fsdp+tp needs a tp_size that divides the {ranks} processes"
                + (" of a pipeline stage" if pp_size > 1 else "")
                + f" (e.g. the GPUs of one node), got {tp_size}"
            )
        return pp_size, ranks // tp_size, tp_size
    return pp_size, ranks, 1


def data_parallel(
    distributed: Distributed, parallel: str, tp_size: int | None = None, pp_size: int = 1
) -> tuple[int, int]:
    """(rank, size) of this process among the data-parallel replicas, which read disjoint
    batches; the ranks of one replica (its tensor-parallel group, consecutive ranks, and its
    pipeline stages) read the same. One process is rank 0 of 1 whatever the mode, as
    `parallelize` ignores it there."""
    if not distributed.active:
        return 0, 1
    _, dp, tp = mesh_shape(parallel, distributed.world_size, tp_size, pp_size)
    return distributed.rank // tp % dp, dp


def check_layout(model_config, config, world_size: int) -> None:
    """A UserError, before anything is allocated, unless the run's mesh divides `world_size`
    and the model splits over it (pipeline stages, tensor-parallel heads). One process
    ignores the layout, as `parallelize` does (a checkpoint of any layout resumes there)."""
    if world_size <= 1:
        return
    pp, _, tp = mesh_shape(config.parallel, world_size, config.tp_size, config.pp_size)
    if pp > 1:
        from codekiln.train.config import PP_STAGES_PER_RANK
        from codekiln.train.pipeline import stage_layers

        stage_layers(model_config.n_layer, pp * PP_STAGES_PER_RANK[config.pp_schedule])
    if tp > 1:
        check_tensor_parallel(model_config, tp)


def parallelize(
    model: nn.Module,
    distributed: Distributed,
    *,
    activation_checkpointing: bool = False,
    compile: bool = False,
    parallel: str = "ddp",
    tp_size: int | None = None,
    pp_size: int = 1,
    pp_schedule: str = "1f1b",
    autocast=None,
    materialise: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """The module to train: `model` with pipeline stages, tensor parallelism,
    checkpointing, compile and DDP/FSDP2 applied, in that order. All but DDP change `model`
    in place and return it; DDP returns a wrapper. With pipeline stages (pp_size > 1) it
    returns this rank's part of the model (a `pipeline.StageModule`, the model's own names
    for exactly its parameters), whose `pipeline` attribute runs the schedule (`autocast`
    is entered inside each stage there). A model built on the meta device is given (this
    rank's part of it) to `materialise` after FSDP2 (its shards are allocated and filled
    there, train/materialise.py) and before DDP, which needs real weights to wrap."""
    mesh = None
    if distributed.active and (pp_size > 1 or parallel in ("fsdp", "tp", "fsdp+tp")):
        mesh = _mesh(distributed, parallel, tp_size, pp_size)
    part, stages, indices = model, [model], [0]
    pp_size = pp_size if distributed.active else 1
    if pp_size > 1:
        from codekiln.train.pipeline import split

        part, stages, indices = split(model, mesh.get_local_rank("pp"), pp_size, pp_schedule)
    if mesh is not None and mesh["tp"].size() > 1:
        check_tensor_parallel(part.config, mesh["tp"].size())
        apply_tensor_parallel(part, mesh["tp"])
    blocks = list(part.layer_modules())
    if activation_checkpointing:
        for block in blocks:
            block.forward = _recomputed(block.forward)
    if compile:
        for block in blocks:
            block.compile()
    if distributed.active and parallel in ("fsdp", "fsdp+tp"):
        from torch.distributed.fsdp import fully_shard

        for stage in stages:
            for block in stage.layer_modules():
                fully_shard(block, mesh=mesh["dp"])
            # The root holds what no block does: the (tied) embeddings, the final norm.
            fully_shard(stage, mesh=mesh["dp"])
    if materialise is not None:
        materialise(part)
    if distributed.active and parallel == "ddp" and (mesh is None or mesh["dp"].size() > 1):
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [distributed.local_rank] if distributed.device.type == "cuda" else None
        group = None if mesh is None else mesh["dp"].get_group()
        stages = [
            DistributedDataParallel(stage, device_ids=device_ids, process_group=group)
            for stage in stages
        ]
    if pp_size == 1:
        return stages[0]
    from codekiln.train.pipeline import Pipeline

    part.pipeline = Pipeline(part, stages, indices, mesh, pp_schedule, distributed.device, autocast)
    return part


def _mesh(distributed: Distributed, parallel: str, tp_size: int | None, pp_size: int):
    """The (pp, dp, tp) DeviceMesh, in torchtitan's order: pipeline stages outermost, so
    the ranks of one tp group are consecutive and, with tp_size = GPUs per node, its
    all-reduces stay on the node's NVLink; a stage's dp x tp ranks come next."""
    from torch.distributed.device_mesh import init_device_mesh

    shape = mesh_shape(parallel, distributed.world_size, tp_size, pp_size)
    return init_device_mesh(distributed.device.type, shape, mesh_dim_names=("pp", "dp", "tp"))


def _recomputed(forward):
    """`forward` that keeps only its inputs for backward and runs again there."""
    from torch.utils.checkpoint import checkpoint

    @functools.wraps(forward)
    def run(*args, **kwargs):
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def gradient_sync(
    model: nn.Module, sync: bool, fsdp_grad_sync: str = "every_microstep"
) -> AbstractContextManager:
    """A context for one micro-step; `sync` is True on the last micro-step of an optimizer
    step, when every rank must end with the reduced gradients.

    DDP reduces on the last micro-step only (`no_sync` before): its gradients are whole on
    every rank anyway, so accumulating them locally costs no memory and saves an all-reduce
    a micro-step.

    FSDP2, by `fsdp_grad_sync` (d data-parallel ranks, N parameters, G = grad_accum):
    - "every_microstep" (the default): each micro-step's backward reduce-scatters its
      gradients and each rank adds its 1/d shard to the ones before, so gradients stay
      sharded (4N/d bytes a rank). The cost is G reduce-scatters an optimizer step, each
      sending and receiving ~4N(d-1)/d bytes a rank (float32 gradients).
    - "last_microstep": only the last micro-step reduce-scatters (one per optimizer step, G
      times less traffic), but until then every rank accumulates the whole unsharded float32
      gradient of the model: 4N bytes a rank, not divided by d (~62 GB at 15b).
    """
    if hasattr(model, "no_sync"):  # DDP
        return nullcontext() if sync else model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(sync or fsdp_grad_sync == "every_microstep")
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
