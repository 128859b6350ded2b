"""Tensor parallelism (Megatron-style, with DTensor), applied by `parallel.parallelize`.

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
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from codekiln.errors import UserError


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


def apply_tensor_parallel(model: nn.Module, mesh) -> None:
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


def qkv_modules(model: nn.Module) -> dict[str, ShardedQKV]:
    """The ShardedQKV modules of `model` by name (none unless tensor parallel)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, ShardedQKV)}
