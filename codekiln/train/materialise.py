"""A model built on the meta device made real, each rank filling only the part it holds.

Every rank builds the model on `meta` (no memory), applies tensor parallelism, activation
checkpointing, compile and FSDP2 there (parallel.py), and only then `materialise` allocates
its own shards on its device (`to_empty`) and fills them from one of:

- the run's seed: each parameter's value is CodeGPT's `initial_value` (model/gpt.py), drawn
  from a generator seeded by (seed, parameter name), made whole one parameter at a time and
  cut to the rank's part, so the sharded model starts from exactly the weights one process
  draws with `init_weights(seed)`;
- init_from's Hugging Face weights, read one parameter at a time (`hf_parameters`, with
  import_hf's names and layouts) and cut alike;
- nothing, when resuming: the checkpoint's weights are loaded over the empty tensors next.

So a rank holds its shards plus, for a moment, the largest single parameter (the token
embedding), never the whole model: at `15b` that is ~1.2 GB instead of ~62 GB of float32 on
every rank. The price is time: every rank draws (or reads) every whole parameter, whatever
part of it it keeps.

Cutting is `distribute_tensor(value, mesh, placements, src_data_rank=None)`: with the whole
value on every rank it keeps this rank's chunk without communicating, for any placements,
including FSDP2's padded Shard(0) and the _StridedShard of FSDP2 over a tensor-parallel shard.
Tensor parallelism's ShardedQKV holds row blocks of the fused c_attn (q, k, v), cut from the
fused value first.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# What fills a meta-built model: the run's seed, init_from's weights, or a checkpoint's
# (loaded after materialising, so nothing is drawn).
SEED, INIT_FROM, CHECKPOINT = "seed", "init_from", "checkpoint"


@torch.no_grad()
def materialise(
    model: nn.Module,
    model_config,
    device: torch.device,
    weights: str,
    seed: int = 0,
    init_from: str | Path | None = None,
) -> None:
    """Allocate `model`'s (meta, possibly sharded) parameters on `device` and fill the part
    this rank holds from `weights` (SEED, INIT_FROM or CHECKPOINT; see the module docstring).
    `model_config` is the unsharded model's ModelConfig. Every parameter the model holds is
    filled: a pipeline stage's subset of the blocks as well as the whole model."""
    from codekiln.model.gpt import CodeGPT, initial_value

    model.to_empty(device=device)
    if weights == CHECKPOINT:
        return
    targets = parameter_parts(model)
    if weights == SEED:
        with torch.device("meta"):
            shapes = {n: tuple(p.shape) for n, p in CodeGPT(model_config).named_parameters()}
        values = (
            (name, initial_value(model_config, name, shape, seed))
            for name, shape in shapes.items()
            if name in targets
        )
    elif weights == INIT_FROM:
        from codekiln.model.hf import hf_parameters

        values = hf_parameters(init_from, model_config)
    else:
        raise ValueError(f"unknown weights source {weights!r}")
    for name, value in values:
        for param, rows in targets.pop(name, ()):
            _fill(param, value if rows is None else value[rows])
        del value
    assert not targets, f"parameters left unfilled: {sorted(targets)[:3]}"


def parameter_parts(model: nn.Module) -> dict[str, list[tuple[nn.Parameter, slice | None]]]:
    """The model's own parameter names (as an unsharded CodeGPT has them) -> the parameters
    of `model` that hold them, with the rows each holds (None: all). Only tensor
    parallelism's ShardedQKV splits one of them in several (q/k/v row blocks of c_attn).

    >>> parts = parameter_parts(nn.Linear(2, 3))
    >>> {name: [rows for _, rows in held] for name, held in parts.items()}
    {'weight': [None], 'bias': [None]}
    """
    from codekiln.train.tensor_parallel import qkv_modules

    qkv = qkv_modules(model)
    parts: dict[str, list[tuple[nn.Parameter, slice | None]]] = {}
    for name, param in model.named_parameters():
        module, _, leaf = name.rpartition(".")
        rows = None
        if module in qkv and leaf[:2] in ("q_", "k_", "v_"):
            sizes = qkv[module].sizes
            index = "qkv".index(leaf[0])
            start = sum(sizes[:index])
            rows = slice(start, start + sizes[index])
            name = f"{module}.{leaf[2:]}"
        parts.setdefault(name, []).append((param, rows))
    return parts


def _fill(param: torch.Tensor, value: torch.Tensor) -> None:
    """Copy this rank's part of the whole `value` into `param` (a DTensor's local chunk)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    value = value.to(param.dtype)
    if isinstance(param, DTensor):
        value = distribute_tensor(value, param.device_mesh, param.placements, src_data_rank=None)
    param.copy_(value)
