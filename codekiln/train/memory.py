"""Whether a run fits, checked before the model is allocated.

`estimate_memory` counts what one rank holds at its peak under the run's layout (`layout`:
pipeline stages, tensor-parallel and data-parallel ranks), term by term:

- weights: the float32 parameters the rank keeps: its pipeline stage's blocks (n_layer / pp;
  the first stage also the embeddings, the last the final norm and the head, a copy of a tied
  embedding), with each block's matrices split over tp (LayerNorms, RowwiseParallel's biases
  and a single multi-query K/V head are replicated), divided over the data-parallel ranks
  under FSDP. FSDP2 also holds, while computing, one block unsharded (and the next one,
  prefetched) and the root's embeddings and final norm whole (it does not reshard the root).
- gradients: as many as the weights, in float32. Under FSDP2 they are sharded too, unless
  fsdp_grad_sync=last_microstep with grad_accum > 1 keeps the whole unsharded gradient of
  the stage between micro-steps, and so does a pipeline schedule (torch's stages keep
  their FSDP2 modules unsharded, gradients included, until the last micro-batch). DDP
  adds its buckets (a second copy of the gradients).
- optimizer: AdamW's two float32 moments, sharded as the weights.
- activations of one micro-batch (see `activation_bytes`); under a pipeline schedule a stage
  keeps the activations of up to pp micro-batches in flight (GPipe: all of grad_accum).
- start-up: the model is built on the meta device and each rank fills only its shards, one
  whole parameter at a time (train/materialise.py), so start-up needs the rank's weights
  plus the largest parameter, never the whole model; a LoRA run's base is still read whole.

Under LoRA (`trainable` adapter parameters) the frozen base needs its weights only (4 bytes a
parameter, 2 in bfloat16) and the adapters the 16. The per-rank need times the ranks on
this machine (CPU ranks share its RAM) is compared with free GPU memory or MemAvailable; too
much is a UserError.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from codekiln.errors import UserError
from codekiln.train.config import TrainConfig
from codekiln.train.parallel import Distributed


@dataclass(frozen=True)
class Layout:
    """How a rank's share of the model is cut: pipeline stages, tensor-parallel ranks,
    data-parallel ranks, and whether the data-parallel ranks shard (FSDP) or replicate (DDP)."""

    pp: int = 1
    tp: int = 1
    dp: int = 1
    fsdp: bool = False


def layout(config: TrainConfig, world_size: int) -> Layout:
    """The layout of `world_size` ranks under the run's settings (one process: all 1).

    >>> cfg = TrainConfig(parallel="fsdp+tp", tp_size=2)
    >>> layout(cfg, 8)
    Layout(pp=1, tp=2, dp=4, fsdp=True)
    """
    if world_size <= 1:
        return Layout()
    pp = max(1, int(getattr(config, "pp_size", 1) or 1))
    per_stage = max(1, world_size // pp)
    tp = {"tp": per_stage, "fsdp+tp": config.tp_size or 1}.get(config.parallel, 1)
    dp = max(1, per_stage // tp)
    return Layout(pp, tp, dp, config.parallel in ("fsdp", "fsdp+tp") and dp > 1)


def _rank_parameters(model_config, tp: int, pp: int) -> tuple[int, int, int]:
    """(parameters a rank holds before data-parallel sharding, those of one of its blocks,
    those of the FSDP root: embeddings, final norm, head) for `tp` ranks and `pp` stages."""
    c, i, kv = model_config.n_embd, model_config.inner_dim, model_config.kv_dim
    b = 1 if model_config.bias else 0
    kv_tp = tp if model_config.n_kv_heads % tp == 0 else 1  # one MQA head: replicated
    block = (
        4 * c  # the two LayerNorms, replicated
        + (c * c + b * c) // tp  # Q rows
        + 2 * (c * kv + b * kv) // kv_tp  # K and V rows
        + c * c // tp
        + b * c  # attention output (its bias replicated)
        + (c * i + b * i) // tp  # c_fc by columns
        + i * c // tp
        + b * c  # c_proj by rows (its bias replicated)
    )
    embedding = model_config.vocab_size * c
    first = embedding + (model_config.n_positions * c if model_config.position == "learned" else 0)
    last = 2 * c + (0 if model_config.tie_embeddings and pp == 1 else embedding)
    blocks = math.ceil(model_config.n_layer / pp) * block
    root = first + last if pp == 1 else max(first, last)
    return blocks + root, block, root


def activation_bytes(model_config, config: TrainConfig, dtype: torch.dtype, tp: int = 1) -> int:
    """Bytes of activations one rank holds at the peak of one micro-batch's backward pass.

    Per block and token the backward keeps: the residual stream at both LayerNorms' inputs
    (2C, float32), both LayerNorms' outputs as the next matmul's input (2C), the fused
    q/k/v output (C + 2 kv; rotary makes new q and k, C + kv more), attention's output and
    its reshaped copy for c_proj (2C), and the MLP's input and GELU output (2 x 4C wide):
    matmul inputs in the compute dtype, the sharded ones divided over tp. With activation
    checkpointing a block keeps only its input (C, float32), and one block's set is live
    again while it is recomputed. The backward adds a few (T, C) and one (T, 4C) gradient,
    and the loss a chunk of float32 logits, their log-softmax and gradient (3 x rows x V), the
    hidden states' gradient and the head's float32 weight gradient, made in the forward.
    """
    from codekiln.model.loss import chunk_rows

    c, i, kv = model_config.n_embd, model_config.inner_dim, model_config.kv_dim
    tokens = config.batch_size * config.seq_len
    width = 2 if dtype == torch.bfloat16 else 4
    qkv = c + 2 * kv + (c + kv if model_config.position == "rotary" else 0)
    sharded = (qkv + 2 * c + 2 * i) * width // tp
    per_block = tokens * (2 * c * 4 + 2 * c * width + sharded)
    backward = tokens * (3 * c + i) * 4
    stage_layers = math.ceil(model_config.n_layer / max(1, int(getattr(config, "pp_size", 1))))
    if config.activation_checkpointing:
        blocks = stage_layers * tokens * c * 4 + per_block
    else:
        blocks = stage_layers * per_block
    vocab = model_config.vocab_size
    loss = 3 * chunk_rows(vocab) * vocab * 4 + tokens * c * 4 + vocab * c * 4
    return blocks + backward + loss


def estimate_memory(
    model_config,
    config: TrainConfig,
    dtype: torch.dtype,
    world_size: int = 1,
    trainable: int | None = None,
    device_type: str = "cuda",
) -> dict[str, int]:
    """Bytes one rank holds at its peak (see the module docstring): `weights`, `gradients`
    and `optimizer` (their sum is `states`), `activations` and `startup`, with `params`
    (the whole model's) and `trainable`, for `world_size` ranks under the run's layout."""
    from codekiln.model.config import num_parameters

    params = num_parameters(model_config)
    cut = layout(config, world_size)
    held, block, root = _rank_parameters(model_config, cut.tp, cut.pp)
    shards = cut.dp if cut.fsdp else 1
    largest = model_config.vocab_size * model_config.n_embd * 4
    if trainable is None:
        weights = held * 4 // shards
        gradients = weights
        if cut.fsdp and cut.pp > 1:
            # torch.distributed.pipelining runs every micro-batch but the last without
            # resharding or reducing (PipelineStage.backward_maybe_with_nosync): the stage
            # stays unsharded, with its whole float32 gradient, until the step's end.
            weights += held * 4
            gradients += held * 4
        elif cut.fsdp:
            # Gathered while computing: one block and the prefetched next, and the root
            # (embeddings, final norm, head), with their unsharded gradients.
            weights += (2 * block + root) * 4
            gradients += (block + root) * 4
            # The collectives' flat buffers of the largest group (the root): the all-gather
            # output beside the parameters made from it, and the reduce-scatter input beside
            # the gradients; gloo (CPU) has no reduce-scatter and all-reduces a whole-size
            # copy instead (measured: tests/test_memory.py).
            group = max(block, root) * 4
            weights += group
            gradients += group * (2 if device_type == "cpu" else 1)
            if config.fsdp_grad_sync == "last_microstep" and config.grad_accum > 1:
                gradients += held * 4
        elif cut.dp > 1:
            gradients += held * 4  # DDP's buckets
        optimizer = held * 8 // shards
        startup = held * 4 // shards + largest  # the shards and one whole parameter
    else:
        base = 2 if config.base_dtype == "bfloat16" else 4
        weights = held * base // shards + trainable * 4
        gradients = trainable * 4 * (2 if cut.dp > 1 and not cut.fsdp else 1)
        optimizer = trainable * 8
        startup = params * base  # a LoRA base is read whole on every rank
    activations = activation_bytes(model_config, config, dtype, cut.tp)
    if cut.pp > 1:
        schedule = getattr(config, "pp_schedule", "1f1b")
        in_flight = config.grad_accum if schedule == "gpipe" else min(cut.pp, config.grad_accum)
        activations *= max(1, in_flight)
    return {
        "params": params,
        "trainable": params if trainable is None else trainable,
        "weights": weights,
        "gradients": gradients,
        "optimizer": optimizer,
        "states": weights + gradients + optimizer,
        "activations": activations,
        "startup": startup,
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
    need = estimate_memory(
        model_config, config, dtype, distributed.world_size, trainable, distributed.device.type
    )
    per_rank = max(need["states"] + need["activations"], need["startup"])
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


def plan_memory(config: TrainConfig, world_size: int, init_from_config: dict | None = None) -> dict:
    """What `codekiln memory` prints: the layout of `world_size` ranks under `config` and
    one rank's bytes, term by term, as a run would estimate them before allocating. The
    compute dtype is bfloat16 unless the config says float32 (a GPU run under "auto").
    A layout that does not split the model is a UserError, as it is for a run."""
    import dataclasses

    from codekiln.model.config import preset
    from codekiln.model.convert import config_from_hf
    from codekiln.train.inputs import _check_context  # inputs imports this module
    from codekiln.train.parallel import check_layout

    if init_from_config is not None:
        model_config = dataclasses.replace(
            config_from_hf(init_from_config), **config.model_overrides
        )
    else:
        model_config = preset(config.model, **config.model_overrides)
    _check_context(model_config, config)
    check_layout(model_config, config, world_size)
    dtype = torch.float32 if config.dtype == "float32" else torch.bfloat16
    need = estimate_memory(model_config, config, dtype, world_size)
    cut = layout(config, world_size)
    peak = max(need["states"] + need["activations"], need["startup"])
    name = "bfloat16" if dtype == torch.bfloat16 else "float32"
    return {"model_config": model_config, "layout": cut, "dtype": name, **need, "peak": peak}
