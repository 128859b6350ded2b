"""The fixed validation set, and each data-parallel rank's share of it.

The set is the first `eval_sequences` rows of the valid split in the order one process
visits its first epoch (a pack's sequences in the loader's epoch-0 permutation, without FIM;
instruction tuning's packed rows of held-out pairs), so it depends on the config alone,
never on the world size. Rank r of W data-parallel ranks takes the contiguous block of rows
`share(N, r, W)`, in batches of at most `batch_size` rows; `evaluate` sums nats, targets
and bytes over every rank's rows and all-reduces the sums, so the same weights give the same
validation loss (to float rounding) in any layout.

Shares may be uneven, or empty when there are more ranks than rows. Every rank still runs
the same number of forward passes, padding with a row whose labels are all ignored (it adds
nothing to the sums): under FSDP a forward pass all-gathers each block's weights, and a rank
that skipped one would leave the others waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from codekiln.pack.loader import IGNORE_INDEX


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
