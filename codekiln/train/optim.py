"""AdamW and its learning-rate schedule.

- Weight decay applies to every parameter with two or more dimensions: the linear layers'
  weights and the (tied) token and position embeddings, as Megatron-LM, which trained
  StarCoder, and nanoGPT do. Biases and LayerNorm parameters are not decayed.
- The learning rate warms up linearly to `lr` at step `warmup_steps`, then follows a cosine
  down to `min_lr` at step `max_steps` (`lr_at`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from codekiln.train.config import TrainConfig


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """The learning rate of optimizer step `step` (1-based): linear warmup to `lr` at
    `warmup_steps`, then a cosine from `lr` down to `min_lr` at `max_steps`.

    >>> [round(lr_at(s, 1.0, 0.1, warmup_steps=2, max_steps=6), 4) for s in range(1, 7)]
    [0.5, 1.0, 0.8682, 0.55, 0.2318, 0.1]
    """
    if step <= warmup_steps:
        return lr * step / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / (max_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's two groups: parameters with ndim >= 2 (weights, embeddings) decay; biases and
    norms do not. Each parameter appears once, tied ones included."""
    decay, plain = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else plain).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: TrainConfig, device: torch.device):
    """AdamW over `parameter_groups`, with fused kernels (on CUDA and on CPU)."""
    return torch.optim.AdamW(
        parameter_groups(model, config.weight_decay),
        lr=config.lr,
        betas=config.betas,
        eps=1e-8,
        fused=True,  # one kernel per step
    )
