"""Everything that turns the single-device model into a training one, applied from here.

`parallelize` applies, in this fixed order (torchtitan's):

1. tensor parallelism (`parallel="tp"` over every rank, or the `tp` dimension of a 2-D
   (dp, tp) mesh under `"fsdp+tp"`), Megatron-style, with DTensor (see below).
2. activation checkpointing: each block of `model.layer_modules()` recomputes its forward
   in the backward pass (`torch.utils.checkpoint`, non-reentrant). The block's `forward` is
   wrapped in place, so no wrapper module enters the parameter names and checkpoints and
   exports keep the model's own names.
3. compile: each block is compiled in place (`nn.Module.compile`), the unit FSDP2 shards
   and DDP buckets, again without renaming anything.
4. FSDP2 (`fully_shard` on every block, then on the root; over the `dp` mesh dimension under
   `"fsdp+tp"`) or DDP, under torchrun only.

Tensor parallelism keeps activations replicated between blocks (no sequence parallelism) and
splits each block as Megatron-LM did for StarCoder: the MLP's c_fc by output columns and its
c_proj by input rows (`ColwiseParallel` / `RowwiseParallel`: one all-reduce forward, one
backward), and attention by heads. The fused c_attn ([Q | K | V] rows) cannot be sharded as
one tensor, because a rank needs a block of Q rows *and* its heads' K/V rows, so `ShardedQKV`
replaces it, holding q/k/v as separate DTensors: Q rows `Shard(0)` (n_head / tp heads each);
K/V rows `Shard(0)` too when tp divides n_kv_heads, or, under multi-query attention (one K/V
head), replicated: every rank computes the one K/V head from the replicated input, its local
heads give only a partial sum of that head's gradient, and `_sum_gradient` all-reduces it over
the tp group before it reaches the K/V weights. Other head counts are refused
(`check_tensor_parallel`). `ShardedQKV` returns the rank's [Q | K | V] as one tensor, and
the model's own attention splits it by its head counts, set to the local ones here.

Everything else (embeddings, LayerNorms, the tied output projection, RowwiseParallel's
biases) stays replicated, as `Replicate()` DTensors, so that every parameter is a DTensor on
one mesh: clip_grad_norm_, the fused AdamW and the state-dict helpers cannot mix plain
tensors with DTensors. Replicated modules compute on DTensors and hand plain tensors on;
their gradients are whole and equal on every rank because every replicated activation's
gradient is (the all-reduces above make it so).

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

import functools
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
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


def check_tensor_parallel(config, tp: int) -> None:
    """A UserError unless `config` (a ModelConfig) splits over `tp` ranks: whole heads per
    rank, and K/V heads either sharded evenly or one head replicated (multi-query)."""
    if config.n_head % tp:
        raise UserError(
            f"tensor parallelism over {tp} ranks needs n_head divisible by {tp}, got "
            f"{config.n_head}: change tp_size or the number of processes"
        )
    if config.n_kv_heads != 1 and config.n_kv_heads % tp:
        raise UserError(
            f"tensor parallelism over {tp} ranks needs n_kv_heads of 1 (multi-query, "
            f"replicated) or a multiple of {tp} (sharded), got {config.n_kv_heads}: change "
            "tp_size or the number of processes"
        )
    if not config.bias:
        raise UserError(
            "tensor parallelism shards the linear layers' biases too: a bias-free model "
            "trains under parallel=ddp or fsdp"
        )
    if config.inner_dim % tp:
        raise UserError(
            f"tensor parallelism over {tp} ranks needs the MLP width divisible by {tp}, got "
            f"{config.inner_dim}"
        )


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
        _tensor_parallel(part, mesh["tp"])
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


def _tensor_parallel(model: nn.Module, mesh) -> None:
    """Split every block over `mesh` and replicate the rest (see the module docstring)."""
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    tp = mesh.size()
    for block in model.layer_modules():
        attn = block.attn
        attn.c_attn = ShardedQKV(attn.c_attn, attn.n_kv_heads, mesh)
        attn.n_head //= tp
        attn.n_kv_heads = attn.c_attn.local_kv_heads
        parallelize_module(attn, mesh, {"c_proj": RowwiseParallel()})
        parallelize_module(
            block.mlp, mesh, {"c_fc": ColwiseParallel(), "c_proj": RowwiseParallel()}
        )
        _replicate(block.ln_1, mesh)
        _replicate(block.ln_2, mesh)
    for module in (model.wte, model.wpe, model.ln_f, getattr(model, "lm_head", None)):
        if module is not None:
            _replicate(module, mesh)


def _replicate(module: nn.Module, mesh) -> None:
    """`module`'s own parameters become Replicate() DTensors that read as their local (whole)
    tensors, so it, and code that reads them directly (the tied output projection reads
    `wte.weight`), computes on plain tensors; gradients flow back into the DTensors."""
    from torch.distributed.tensor import Replicate, distribute_tensor

    for name, param in list(module.named_parameters(recurse=False)):
        replicated = distribute_tensor(param.detach(), mesh, [Replicate()])
        module.register_parameter(name, nn.Parameter(replicated, param.requires_grad))
    module.__class__ = _local_view_class(type(module))


@functools.cache
def _local_view_class(cls: type) -> type:
    return type(f"LocalView{cls.__name__}", (_LocalView, cls), {})


class _LocalView:
    """A mixin for modules: reading a replicated DTensor parameter gives its local (whole)
    tensor, through `to_local` so autograd reaches the parameter. Names, `named_parameters`
    and state dicts (which read `_parameters`) still see the DTensors. Under FSDP2 a sharded
    parameter (Shard(0) over dp) reads as itself, as FSDP2's own bookkeeping expects; in the
    forward FSDP2 puts the unsharded, replicated one in `_parameters`, which reads local."""

    def __getattr__(self, name: str):
        from torch.distributed.tensor import DTensor, Replicate

        value = self.__dict__["_parameters"].get(name)
        if isinstance(value, DTensor) and all(p == Replicate() for p in value.placements):
            return value.to_local()
        return super().__getattr__(name)


def _as_replicated(tensor: torch.Tensor, mesh):
    from torch.distributed.tensor import DTensor, Replicate

    return DTensor.from_local(tensor, mesh, [Replicate()], run_check=False)


def _sum_gradient(tensor: torch.Tensor, mesh) -> torch.Tensor:
    """`tensor` unchanged, but its gradient is summed over `mesh` on the way back: for an
    activation every rank computes whole but whose gradient each rank has only a part of."""
    from torch.distributed.tensor import DTensor, Partial, Replicate

    replicated = DTensor.from_local(tensor, mesh, [Replicate()], run_check=False)
    return replicated.to_local(grad_placements=[Partial()])


class ShardedQKV(nn.Module):
    """c_attn split by heads over a tensor-parallel mesh; returns this rank's (q, k, v).

    q_weight/q_bias hold the Q rows as Shard(0) DTensors (n_head / tp heads a rank); k_* and
    v_* hold the K and V rows, Shard(0) when tp divides n_kv_heads and replicated when there
    is one K/V head. `_fused` / `_split` map these names to the model's own c_attn.weight /
    c_attn.bias in state dicts and back.
    """

    def __init__(self, c_attn: nn.Linear, n_kv_heads: int, mesh):
        from torch.distributed.tensor import Replicate, Shard, distribute_tensor

        super().__init__()
        tp = mesh.size()
        width = c_attn.in_features
        kv_width = (c_attn.out_features - width) // 2
        self.sizes = (width, kv_width, kv_width)
        self.mesh = mesh
        self.kv_sharded = n_kv_heads % tp == 0
        self.local_kv_heads = n_kv_heads // tp if self.kv_sharded else n_kv_heads
        kv_placement = Shard(0) if self.kv_sharded else Replicate()
        with torch.no_grad():
            for kind in ("weight", "bias"):
                q, k, v = getattr(c_attn, kind).split(self.sizes)
                for part, tensor, placement in (
                    ("q", q, Shard(0)),
                    ("k", k, kv_placement),
                    ("v", v, kv_placement),
                ):
                    # A copy: a view would keep the whole fused weight alive.
                    local = distribute_tensor(tensor.clone(), mesh, [placement])
                    setattr(self, f"{part}_{kind}", nn.Parameter(local))

    def forward(self, x_BTC: torch.Tensor) -> torch.Tensor:
        """This rank's [Q | K | V] (B, T, (local heads + 2 x local kv heads) x hd): the
        model's own Attention.forward splits it by its (local) head counts."""
        x = _as_replicated(x_BTC, self.mesh)  # the backward all-reduces x's partial gradients
        q = F.linear(x, self.q_weight, self.q_bias).to_local()  # (B, T, local heads x hd)
        if self.kv_sharded:
            k = F.linear(x, self.k_weight, self.k_bias).to_local()
            v = F.linear(x, self.v_weight, self.v_bias).to_local()
            return torch.cat((q, k, v), dim=-1)
        # A replicated head: computed whole from a copy of x whose gradient needs no
        # reduction, because the K/V gradient is summed over the ranks' heads first.
        weight = torch.cat((self.k_weight, self.v_weight))
        bias = torch.cat((self.k_bias, self.v_bias))
        kv = F.linear(_as_replicated(x_BTC, self.mesh), weight, bias).to_local()
        return torch.cat((q, _sum_gradient(kv, self.mesh)), dim=-1)


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


def _full_options(**extra):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **extra)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on CPU under the model's own names (rank 0's; other
    ranks may get an empty dict); a collective under FSDP2 and TP (every rank must call it)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_full_options(cpu_offload=True))
    return _fused(state, _sharded_qkv(model))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state keyed by parameter name (not position), on CPU; a collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(model, optimizer, options=_full_options(cpu_offload=True))
    return _map_optimizer_state(state, _fused, _sharded_qkv(model))


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

    qkv = _sharded_qkv(model)
    set_model_state_dict(model, _split(model_state, qkv), options=_full_options(strict=strict))
    if optimizer is not None and optimizer_state is not None:
        optimizer_state = _map_optimizer_state(optimizer_state, _split, qkv)
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=_full_options())


def _sharded_qkv(model: nn.Module) -> dict[str, ShardedQKV]:
    """The ShardedQKV modules of `model` by name (none unless tensor parallel)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, ShardedQKV)}


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
    qkv = set(_sharded_qkv(model))
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
    qkv = set(_sharded_qkv(model))
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
