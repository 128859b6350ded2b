"""Whether a run fits, checked before the model is allocated.

The memory a run needs (16 bytes a parameter for fp32 weights, gradients and AdamW's moments,
divided over ranks under FSDP, plus an estimate of the activations) is compared with free GPU
memory or MemAvailable; too much is a UserError.
"""

from __future__ import annotations

import os

import torch

from codekiln.errors import UserError
from codekiln.train.config import TrainConfig
from codekiln.train.parallel import Distributed


def estimate_memory(
    model_config,
    config: TrainConfig,
    dtype: torch.dtype,
    shards: int = 1,
    trainable: int | None = None,
) -> dict[str, int]:
    """Bytes one rank needs: fp32 weights, gradients and AdamW's two moments (16 per
    parameter, divided over `shards` under FSDP), plus activations of one micro-batch.
    Under LoRA (`trainable` adapter parameters) the frozen base needs its weights only (4
    bytes a parameter, 2 in bfloat16) and the adapters the 16.

    Activations per block and token are taken as ~18 x n_embd values (LayerNorm inputs,
    q/k/v, attention output, the 4x MLP's input and GELU output) in the compute dtype, plus
    the float32 logits and their gradient; with activation checkpointing only each block's
    input is kept, and one block's worth is live during recomputation.
    """
    from codekiln.model.config import num_parameters

    params = num_parameters(model_config)
    if trainable is None:
        states = params * 16 // shards
    else:
        base = 2 if config.base_dtype == "bfloat16" else 4
        states = params * base // shards + trainable * 16
    tokens = config.batch_size * config.seq_len
    width = 2 if dtype == torch.bfloat16 else 4
    per_block = tokens * model_config.n_embd * 18 * width
    if config.activation_checkpointing:
        blocks = model_config.n_layer * tokens * model_config.n_embd * width + per_block
    else:
        blocks = model_config.n_layer * per_block
    logits = 3 * tokens * model_config.vocab_size * 4
    return {
        "params": params,
        "trainable": params if trainable is None else trainable,
        "states": states,
        "activations": blocks + logits,
    }


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for the next allocation instead of handing it
    back to the kernel. Why: by default every allocation over ~32 MB is its own mmap, freed
    with munmap, so the 100-200 MB activations and logits chunks a training step allocates
    and frees again page-fault on every first touch, and on a CPU those faults took about
    as long as the arithmetic (bench/finetune.py: a LoRA step ~1.3x faster without them).
    tcmalloc and jemalloc, which PyTorch's CPU guides recommend preloading, behave alike.
    The cost is that freed memory stays resident until the process ends; the environment
    variable CODEKILN_KEEP_FREED_MEMORY=0 turns this off. True where set (glibc on Linux),
    False elsewhere."""
    import ctypes
    import ctypes.util

    if os.environ.get("CODEKILN_KEEP_FREED_MEMORY", "1") == "0":
        return False

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        return False
    if mallopt is None:
        return False
    # No allocation is an mmap of its own, and the heap's free top is never trimmed.
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def available_memory(device: torch.device) -> int | None:
    """Free bytes on the GPU, or the RAM the kernel says is available; None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(
    model_config,
    config: TrainConfig,
    distributed: Distributed,
    dtype: torch.dtype,
    trainable: int | None = None,
) -> dict[str, int]:
    """The estimate (with `total`, this machine's need, and `available`); a UserError,
    before anything large is allocated, when the run cannot fit."""
    # Weights, gradients and AdamW state split over every rank under FSDP (and FSDP x TP),
    # over the tensor-parallel group under TP alone (activations are not split: a bound).
    shards = {
        "fsdp": distributed.world_size,
        "fsdp+tp": distributed.world_size,
        "tp": distributed.world_size,
    }.get(config.parallel, 1)
    need = estimate_memory(model_config, config, dtype, shards, trainable)
    per_rank = need["states"] + need["activations"]
    total = per_rank
    if distributed.device.type == "cpu":
        # CPU ranks on one machine share its RAM.
        total *= int(os.environ.get("LOCAL_WORLD_SIZE", distributed.world_size))
    have = available_memory(distributed.device)
    need = {**need, "total": total, "available": have or 0}
    if have is None or total <= have:
        return need
    gib = 1 << 30
    states = (
        "weights, gradients and AdamW state"
        if trainable is None
        else f"frozen {config.base_dtype} weights and the adapters' training state"
    )
    advice = (
        "lower lora_rank, set base_dtype=bfloat16 or activation_checkpointing, or lower "
        "batch_size or seq_len"
        if trainable is not None
        else "choose a smaller preset (or --lora for an init_from model), lower batch_size "
        "or seq_len, set activation_checkpointing, or shard it over more GPUs with "
        "parallel=fsdp (or fsdp+tp)"
    )
    what = f"model '{config.model}'" if config.init_from is None else f"{config.init_from}"
    raise UserError(
        f"{what} ({need['params'] / 1e6:,.0f}M parameters) needs about "
        f"{total / gib:,.1f} GiB to train here ({need['states'] / gib:,.1f} GiB of {states} "
        f"+ {need['activations'] / gib:,.1f} GiB of activations at batch_size "
        f"{config.batch_size} x seq_len {config.seq_len}) but {distributed.device.type} has "
        f"{have / gib:,.1f} GiB available: {advice}"
    )
