"""The fixed validation set, and each data-parallel rank's share of it.

The set is the first `eval_sequences` rows of the valid split in the order one process
visits its first epoch (a pack's sequences in the loader's epoch-0 permutation, without FIM;
instruction tuning's packed rows of held-out pairs), so it depends on the config alone,
never on the world size. Rank r of W data-parallel ranks takes the contiguous block of rows
`share(N, r, W)`, in batches of at most `batch_size` rows; `validation_loss` sums nats, targets
and bytes over every rank's rows and all-reduces the sums, so the same weights give the same
validation loss (to float rounding) in any layout.

Shares may be uneven, or empty when there are more ranks than rows. Every rank still runs
the same number of forward passes, padding with a row whose labels are all ignored (it adds
nothing to the sums): under FSDP a forward pass all-gathers each block's weights, and a rank
that skipped one would leave the others waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from codekiln.pack.loader import IGNORE_INDEX, LoaderConfig, TokenLoader
from codekiln.train.parallel import all_reduce


def share(count: int, rank: int, size: int) -> range:
    """The rows of `count` that rank `rank` of `size` evaluates: contiguous blocks whose
    lengths differ by at most one.

    >>> [list(share(5, r, 3)) for r in range(3)]
    [[0], [1, 2], [3, 4]]
    >>> [len(share(1, r, 4)) for r in range(4)]
    [0, 0, 0, 1]
    """
    return range(rank * count // size, (rank + 1) * count // size)


def forward_passes(count: int, size: int, batch_size: int) -> int:
    """Forward passes every rank runs: enough for the largest share.

    >>> forward_passes(10, 4, 2), forward_passes(1, 4, 8), forward_passes(0, 2, 8)
    (2, 1, 0)
    """
    largest = -(-count // size)
    return -(-largest // batch_size)


def rank_batches(
    rows: Callable[[np.ndarray], Any],
    order: np.ndarray,
    count: int,
    batch_size: int,
    rank: int,
    size: int,
) -> list[Any]:
    """This rank's validation batches: `rows(ids)` (a loader's batch of those rows) over its
    share of `order[:count]`, `batch_size` rows at a time, then padding batches of one row
    with every label ignored, up to `forward_passes(count, size, batch_size)` batches."""
    count = min(count, len(order))
    block = share(count, rank, size)
    mine = order[block.start : block.stop]
    batches = [rows(mine[i : i + batch_size]) for i in range(0, len(mine), batch_size)]
    while len(batches) < forward_passes(count, size, batch_size):
        pad = rows(order[:1])
        pad.labels[:] = IGNORE_INDEX
        batches.append(pad)
    return batches


def validation_batches(
    config, data: Path, meta: dict, pairs: Any, rank: int, size: int
) -> list[Any]:
    """Data-parallel rank `rank`'s share of the fixed validation set, as loader batches
    padded to the forward passes every rank runs (`rank_batches`): the valid split of the
    pack in `data` (`meta` its meta.json), or for instruction tuning the packed rows of
    `pairs`' held-out pairs (an `sft.SftData`); [] without a valid split. `config` is the
    run's TrainConfig."""
    if pairs is not None:
        loader = pairs.valid_loader()
        if loader is None:
            return []
        order = np.arange(loader.num_rows(0), dtype=np.int64)
    else:
        split = meta["splits"].get("valid")
        if not split or (int(split["tokens"]) - 1) // config.seq_len < 1:
            return []
        loader = TokenLoader(
            data,
            None,
            LoaderConfig(config.seq_len, 1, seed=config.seed, fim_rate=0.0, split="valid"),
        )
        order = loader.order(0)
    return rank_batches(
        lambda rows: loader.rows(0, rows),
        order,
        config.validation_sequences,
        config.batch_size,
        rank,
        size,
    )


def add_batch_sums(sums, logits, labels, sizes) -> None:
    """Add one batch to `sums` (float64: nats, targets, nats of the targets that have bytes,
    bytes): `logits` (B, T, V) against `labels` (B, T), `sizes` the bytes of each token id
    (None: no bits per byte)."""
    import torch.nn.functional as F

    flat = labels.flatten()
    nats = F.cross_entropy(
        logits.float().flatten(0, 1), flat, ignore_index=IGNORE_INDEX, reduction="none"
    )
    mask = flat != IGNORE_INDEX
    sums[0] += nats.sum()
    sums[1] += mask.sum()
    if sizes is not None:
        size = sizes[flat.clamp(min=0)] * mask
        sums[2] += (nats * (size > 0)).sum()
        sums[3] += size.sum()


def loss_and_bpb(sums, sizes) -> tuple[float, float | None]:
    """(mean nats per target, bits per byte or None) from every rank's reduced `sums`."""
    import math

    nats, targets, byte_nats, total_bytes = sums.tolist()
    loss = nats / max(targets, 1)
    bpb = byte_nats / (math.log(2) * total_bytes) if sizes is not None and total_bytes else None
    return loss, bpb


def token_bytes(tokenizer, vocab_size: int) -> np.ndarray:
    """UTF-8 bytes each token id stands for; 0 for special tokens and unused ids.

    Byte-level BPE tokens are strings of one character per byte, so their length is exact
    even for tokens that end inside a multi-byte character; other tokenizers decode each id.
    """
    from tokenizers import decoders

    from codekiln.tokenizer.special import special_ids

    special = set(special_ids(tokenizer).values())
    special |= {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    byte_level = isinstance(tokenizer.decoder, decoders.ByteLevel)
    sizes = np.zeros(vocab_size, dtype=np.int64)
    for token, token_id in tokenizer.get_vocab(with_added_tokens=True).items():
        if token_id >= vocab_size or token_id in special:
            continue
        if byte_level:
            sizes[token_id] = len(token)
        else:
            sizes[token_id] = len(tokenizer.decode([token_id]).encode("utf-8"))
    return sizes


@torch.no_grad()
def validation_loss(
    model: nn.Module,
    batches: list[dict[str, torch.Tensor]],
    sizes: torch.Tensor | None,
    autocast=None,
) -> tuple[float, float | None]:
    """(mean loss in nats over the targets, bits per byte or None) on `batches` (the
    model's keyword arguments with labels), summed over every rank's batches."""
    was_training = model.training
    model.eval()
    device = batches[0]["input_ids"].device
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # nats, targets, nats, bytes
    for batch in batches:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        labels = batch["labels"]
        with autocast or nullcontext():
            logits, _ = model(**inputs)
        add_batch_sums(sums, logits, labels, sizes)
    all_reduce(sums)
    model.train(was_training)
    return loss_and_bpb(sums, sizes)
