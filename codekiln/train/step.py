"""One optimizer step, and the precision it computes in.

The loop (loop.py) and the benchmarks call `optimizer_step` the same way: forward and backward
over a step's micro-batches with gradients synchronised on the last, clipping, AdamW.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from torch import nn

from codekiln.errors import UserError
from codekiln.train.config import TrainConfig
from codekiln.train.parallel import gradient_sync, total_norm


def optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: list[tuple[torch.Tensor, torch.Tensor]],
    lr: float,
    grad_clip: float,
    autocast=None,
    fsdp_grad_sync: str = "every_microstep",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over `micro_batches` ((input_ids, labels), or the model's keyword
    arguments with segment and position ids of packed pairs): forward and backward
    each (gradients reduced across ranks as `gradient_sync` says), clip, AdamW. Returns the mean
    loss and the gradient norm before clipping, as tensors (reading them syncs a GPU).
    A model in pipeline stages runs them through its schedule (`pipeline.Pipeline.step`)."""
    pipeline = getattr(model, "pipeline", None)
    if pipeline is not None:
        return pipeline.step(optimizer, micro_batches, lr, grad_clip)
    for group in optimizer.param_groups:
        group["lr"] = lr
    total = None
    count = len(micro_batches)
    for index, batch in enumerate(micro_batches):
        if not isinstance(batch, dict):
            batch = {"input_ids": batch[0], "labels": batch[1]}
        with gradient_sync(model, index == count - 1, fsdp_grad_sync):
            with autocast or nullcontext():
                _, loss = model(**batch)
            (loss / count).backward()
        total = loss.detach() if total is None else total + loss.detach()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / count, total_norm(norm)


def compute_dtype(config: TrainConfig, device: torch.device) -> torch.dtype:
    """bfloat16 autocast when asked, or under "auto" where bfloat16 matmuls are fast: CUDA,
    and CPUs with AMX tiles (Sapphire Rapids on), whose bf16 GEMMs run about 6x faster than
    float32 ones. float32 elsewhere. Weights and optimizer state stay float32 either way,
    but for a LoRA run's frozen bfloat16 base, which computes in bfloat16."""
    if config.base_dtype == "bfloat16":
        if config.dtype == "float32":
            raise UserError(
                "a bfloat16 base (base_dtype=bfloat16) computes in bfloat16: set dtype=auto or "
                "bfloat16, or keep the base in float32"
            )
        return torch.bfloat16
    if config.dtype == "bfloat16":
        return torch.bfloat16
    if config.dtype == "auto" and (device.type == "cuda" or cpu_has_amx(device)):
        return torch.bfloat16
    return torch.float32


def cpu_has_amx(device: torch.device) -> bool:
    """Whether `device` is a CPU with AMX bf16 tiles (a private torch probe; False if gone)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return device.type == "cpu" and probe is not None and bool(probe())


def autocast_context(device: torch.device, dtype: torch.dtype):
    """torch.autocast for a bfloat16 run; None (no context) in float32."""
    if dtype == torch.float32:
        return None
    return torch.autocast(device.type, dtype=dtype)
