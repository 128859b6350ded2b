"""What the loop feeds the model: a run's training loader, and its batches as tensors.

The loader is the pack's `TokenLoader` (Fill-in-the-Middle as the config says) or, for
instruction tuning, the pairs' `SftLoader`; each data-parallel rank reads its own batches.
A batch becomes CPU tensors (pinned when they go to a GPU) in the prefetch thread
(prefetch.py) and moves to the device in the loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from codekiln.pack.loader import LoaderConfig, TokenLoader
from codekiln.train.config import TrainConfig


def train_loader(
    config: TrainConfig, data: Path, tokenizer: Any, pairs: Any, rank: int, world_size: int
):
    """Data-parallel rank `rank`'s training loader: `pairs.loader` (an `sft.SftData`) for
    instruction tuning, else a `TokenLoader` over the pack in `data`."""
    if pairs is not None:
        return pairs.loader("train", config.batch_size, rank, world_size)
    return TokenLoader(
        data,
        tokenizer,
        LoaderConfig(
            seq_len=config.seq_len,
            batch_size=config.batch_size,
            seed=config.seed,
            fim_rate=config.fim_rate,
            fim_spm_rate=config.fim_spm_rate,
        ),
        rank=rank,
        world_size=world_size,
    )


def host_tensors(batch, pin: bool = False) -> dict[str, torch.Tensor]:
    """A loader's batch as CPU tensors, the model's keyword arguments (with the segment and
    position ids of packed pairs); pinned with `pin`, for a copy to a GPU."""
    fields = {"input_ids": batch.input_ids, "labels": batch.labels}
    if getattr(batch, "segment_ids", None) is not None:
        fields["segment_ids"] = batch.segment_ids
        fields["position_ids"] = batch.position_ids
    tensors = {}
    for name, array in fields.items():
        tensor = torch.from_numpy(array)
        tensors[name] = tensor.pin_memory() if pin else tensor
    return tensors


def on_device(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """`tensors` on `device` (asynchronously from pinned memory to a GPU)."""
    pin = device.type == "cuda"
    return {name: t.to(device, non_blocking=pin) for name, t in tensors.items()}
