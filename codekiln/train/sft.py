"""Instruction tuning data (the StarChat / OctoCoder step): pairs (sft_pairs.py), laid out as
tokens (sft_layout.py), packed into batches here.

How batches are made (`SftLoader`), as `codekiln.pack.loader.TokenLoader` makes them:

- A seeded hash of each pair's tokens puts it in the train or the valid split, so identical
  pairs always land in the same split.
- Epoch e takes the split's pairs in the order of np.random.default_rng((seed, e)).permutation
  and packs them greedily, in that order, into rows of seq_len + 1 tokens: a pair that does
  not fit in what is left of a row starts the next one, and a pair longer than a row is cut
  at the end. The rows are cut into global batches of batch_size x world_size rows; rank r
  takes the r-th block of each and the last incomplete global batch is dropped.
- The number of rows depends on the order, so epochs differ slightly in length:
  `steps_in_epoch(e)`; `steps_per_epoch` is epoch 0's.
- Attention must not cross pairs: each row comes with segment ids (0, 1, 2, ... per pair,
  -1 on padding) and position ids that restart at 0 with every pair.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codekiln.errors import UserError
from codekiln.pack.loader import IGNORE_INDEX, restore_position
from codekiln.train.sft_layout import encode_pairs, load_chat_format
from codekiln.train.sft_pairs import read_pairs

STATE_VERSION = 1
SPLITS = ("train", "valid")


def split_of(prompt_ids, completion_ids, seed: int) -> float:
    """A pair's place in [0, 1) under `seed`: pairs below valid_fraction are held out. Only
    the tokens decide, so duplicates share a split.

    >>> round(split_of([1, 2], [3], seed=0), 4), round(split_of([1], [2, 3], seed=0), 4)
    (0.7048, 0.1255)
    """
    prompt = np.asarray(prompt_ids, dtype="<i8")
    completion = np.asarray(completion_ids, dtype="<i8")
    digest = hashlib.blake2b(digest_size=8)
    # The prompt length is hashed too, or ([1, 2], [3]) and ([1], [2, 3]) would be one pair.
    digest.update(struct.pack("<QQ", seed, len(prompt)))
    digest.update(prompt.tobytes())
    digest.update(completion.tobytes())
    return int.from_bytes(digest.digest(), "little") / 2**64


def valid_mask(encoded: Sequence[tuple], seed: int, valid_fraction: float) -> np.ndarray:
    """Which pairs are held out: those `split_of` puts below valid_fraction, and at least the
    lowest (with its duplicates) when there are 10 pairs or more; none when fewer.

    >>> pairs = [([i], [i + 1]) for i in range(10)]
    >>> int(valid_mask(pairs, seed=0, valid_fraction=0.02).sum())
    1
    >>> int(valid_mask(pairs[:9], seed=0, valid_fraction=0.5).sum())
    0
    """
    held = np.zeros(len(encoded), dtype=bool)
    if len(encoded) < 10 or valid_fraction == 0:
        return held
    place = np.array([split_of(p, c, seed) for p, c in encoded])
    held = place < valid_fraction
    if not held.any():
        held = place == place.min()
    return held


def pack_rows(lengths: Sequence[int], row_len: int) -> np.ndarray:
    """Where each row starts in a list of pair lengths packed greedily in order: a pair that
    does not fit in the rest of a row starts the next one; one longer than a row has a row
    to itself (and is cut to it).

    >>> pack_rows([3, 4, 2, 9, 1], row_len=6).tolist()
    [0, 1, 3, 4]
    """
    starts = []
    used = row_len  # as if a full row came before the first: the first pair starts a row
    for index, length in enumerate(lengths):
        length = min(int(length), row_len)
        if used + length > row_len:
            starts.append(index)
            used = 0
        used += length
    return np.array(starts, dtype=np.int64)


@dataclass
class SftLoaderConfig:
    seq_len: int
    batch_size: int
    seed: int = 0
    split: str = "train"
    valid_fraction: float = 0.02  # share of pairs held out, by a seeded hash of their tokens

    def __post_init__(self):
        for name in ("seq_len", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"sft {name} must be a whole number >= 1, not {value!r}")
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            # SeedSequence spreads larger ints over several words, where two (seed, epoch)
            # keys could meet.
            raise UserError(f"sft seed must be a whole number in [0, 2**32), not {self.seed!r}")
        if self.split not in SPLITS:
            raise UserError(f"sft split must be 'train' or 'valid', not {self.split!r}")
        value = self.valid_fraction
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise UserError(
                f"sft valid_fraction is a share of pairs in [0, 1) (e.g. 0.02; 0 for no "
                f"validation split), not {value!r}"
            )
        self.valid_fraction = float(value)  # 0 and 0.0 are one setting in a saved state


@dataclass
class SftBatch:
    input_ids: np.ndarray  # (B, T) int64; eos ids on padding
    # (B, T) int64: the next token where it is a completion token of the same pair, else -100
    labels: np.ndarray
    segment_ids: np.ndarray  # (B, T) int64: 0, 1, 2, ... per pair of the row; -1 on padding
    position_ids: np.ndarray  # (B, T) int64: from 0 at the start of each pair; 0 on padding
    rows: np.ndarray  # (B,) int64: the epoch's packed rows these are


@dataclass(frozen=True)
class SftCounts:
    """What one split holds, for a report; tokens count after truncation, per epoch."""

    train_pairs: int
    valid_pairs: int
    pairs: int  # of this loader's split
    truncated_pairs: int  # longer than seq_len + 1 tokens: cut at the end
    tokens: int
    completion_tokens: int  # tokens the loss is taken on (each completion token but a first)


# Settings a saved position is only valid under.
_STATE_KEYS = (
    "seed",
    "seq_len",
    "global_batch_size",
    "split",
    "valid_fraction",
    "num_pairs",
    "pairs_sha256",
)


class SftLoader:
    """Endless, resumable batches of packed pairs of one split, for one rank.

    `encoded` is `encode_pairs`' output for all pairs (both splits); `pad_id` fills the
    rest of a row (the eos id). Interface as `TokenLoader`'s: `batch(epoch, step)`,
    iteration, `state_dict()` / `load_state_dict()`.
    """

    def __init__(
        self,
        encoded: Sequence[tuple[np.ndarray, np.ndarray]],
        pad_id: int,
        config: SftLoaderConfig,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not isinstance(world_size, int) or world_size < 1:
            raise UserError(f"world_size must be a whole number >= 1, not {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise UserError(f"rank must be in [0, {world_size}), not {rank!r}")
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.pad_id = int(pad_id)
        self.global_batch_size = config.batch_size * world_size
        row_len = config.seq_len + 1

        held = valid_mask(encoded, config.seed, config.valid_fraction)
        wanted = held if config.split == "valid" else ~held
        # A pair a template renders as nothing has nothing to train on or to attend to.
        mine = [
            encoded[i] for i in np.flatnonzero(wanted) if len(encoded[i][0]) + len(encoded[i][1])
        ]
        full = np.array([len(p) + len(c) for p, c in mine], dtype=np.int64)
        self._lengths = np.minimum(full, row_len)
        self._prompt_lengths = np.minimum([len(p) for p, _ in mine], self._lengths).astype(np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self._lengths)[:-1]]).astype(np.int64)
        self._tokens = np.concatenate(
            [np.concatenate([p, c])[:row_len] for p, c in mine] or [np.empty(0)]
        ).astype(np.int32)  # half the memory of int64; token ids fit
        self.num_pairs = len(mine)

        targets = self._lengths - np.maximum(self._prompt_lengths, 1)
        self.counts = SftCounts(
            train_pairs=int((~held).sum()),
            valid_pairs=int(held.sum()),
            pairs=self.num_pairs,
            truncated_pairs=int((full > row_len).sum()),
            tokens=int(self._lengths.sum()),
            completion_tokens=int(np.maximum(targets, 0).sum()),
        )
        digest = hashlib.sha256()
        for array in (self._lengths, self._prompt_lengths, self._tokens):
            digest.update(array.astype("<i8").tobytes())
        self.pairs_sha256 = digest.hexdigest()

        # However they are ordered, the pairs fill at least this many rows: a check that
        # holds for every epoch, so none is left without a step.
        least_rows = -(-self.counts.tokens // row_len)
        if least_rows < self.global_batch_size:
            raise UserError(
                f"the {config.split} split has {self.num_pairs:,} pairs ({self.counts.tokens:,} "
                f"tokens), which may fill only {least_rows:,} rows of {row_len:,} tokens; one step "
                f"needs {self.global_batch_size:,} (batch_size {config.batch_size} x "
                f"{world_size} ranks): lower batch_size or seq_len, or add pairs"
            )
        self._packed: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.steps_per_epoch = self.steps_in_epoch(0)
        self.epoch = 0
        self.step = 0  # batches of the current epoch already handed out

    def _packing(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(pair order, row starts in it) of `epoch`; the two latest epochs are kept."""
        if epoch not in self._packed:
            order = np.random.default_rng((self.config.seed, epoch)).permutation(self.num_pairs)
            starts = pack_rows(self._lengths[order].tolist(), self.config.seq_len + 1)
            self._packed[epoch] = (order, starts)
            for old in list(self._packed)[:-2]:  # oldest first: dicts keep insertion order
                del self._packed[old]
        return self._packed[epoch]

    def num_rows(self, epoch: int) -> int:
        """The rows the pairs pack into in `epoch`, before the last incomplete global batch
        is dropped."""
        return len(self._packing(epoch)[1])

    def steps_in_epoch(self, epoch: int) -> int:
        return self.num_rows(epoch) // self.global_batch_size

    def __iter__(self) -> Iterator[SftBatch]:
        """Batches from the current position on, across epochs, without end; the position
        moves as each batch is handed out (as `TokenLoader`'s)."""
        while True:
            batch = self.batch(self.epoch, self.step)
            self.step += 1
            if self.step == self.steps_in_epoch(self.epoch):
                self.epoch, self.step = self.epoch + 1, 0
            yield batch

    def batch(self, epoch: int, step: int) -> SftBatch:
        """This rank's batch at (epoch, step); the same every time it is asked for."""
        steps = self.steps_in_epoch(epoch)
        if not 0 <= step < steps:
            raise IndexError(f"step {step} is not in [0, {steps}) of epoch {epoch}")
        size = self.config.batch_size
        first = (step * self.world_size + self.rank) * size
        return self.rows(epoch, np.arange(first, first + size, dtype=np.int64))

    def rows(self, epoch: int, rows: np.ndarray) -> SftBatch:
        """The packed rows `rows` of epoch `epoch` (any number; of `num_rows(epoch)`): what
        `batch` hands out, and the fixed validation set."""
        order, starts = self._packing(epoch)
        ends = np.append(starts[1:], len(order))
        size, row_len = len(rows), self.config.seq_len + 1
        rows = np.asarray(rows, dtype=np.int64)

        tokens = np.full((size, row_len), self.pad_id, dtype=np.int64)
        segments = np.full((size, row_len), -1, dtype=np.int64)
        positions = np.zeros((size, row_len), dtype=np.int64)
        completion = np.zeros((size, row_len), dtype=bool)
        for b, row in enumerate(rows.tolist()):
            at = 0
            for segment, pair in enumerate(order[starts[row] : ends[row]].tolist()):
                length, start = int(self._lengths[pair]), int(self._starts[pair])
                tokens[b, at : at + length] = self._tokens[start : start + length]
                segments[b, at : at + length] = segment
                positions[b, at : at + length] = np.arange(length)
                completion[b, at + int(self._prompt_lengths[pair]) : at + length] = True
                at += length
        # A label is the next token when that token is a completion token of the same pair:
        # never a prompt token, padding, or the first token of the next pair.
        target = completion[:, 1:] & (segments[:, 1:] == segments[:, :-1])
        labels = np.where(target, tokens[:, 1:], IGNORE_INDEX)
        return SftBatch(
            input_ids=tokens[:, :-1].copy(),
            labels=labels,
            segment_ids=segments[:, :-1].copy(),
            position_ids=positions[:, :-1].copy(),
            rows=rows,
        )

    def state_dict(self) -> dict:
        """Where iteration stands, and the settings the position is only valid under."""
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "step": self.step,
            **{key: self._setting(key) for key in _STATE_KEYS},
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue where `state` was taken. The world size may change as long as the
        global batch (batch_size x world_size) does not."""
        self.epoch, self.step = restore_position(
            state,
            STATE_VERSION,
            {key: self._setting(key) for key in _STATE_KEYS},
            self.steps_in_epoch,
            "the instruction data",
            "the pairs, tokenizer and settings it was saved with",
        )

    def _setting(self, key: str):
        if key in ("global_batch_size", "num_pairs", "pairs_sha256"):
            return getattr(self, key)
        return getattr(self.config, key)


class SftData:
    """A training run's instruction-tuning data: the pairs read, laid out and tokenized once,
    and the loaders over them. `meta` stands in for a pack's meta.json: what the run's identity,
    vocabulary check and card read."""

    def __init__(self, source: Path, tokenizer, folder: Path, fingerprint: str, config) -> None:
        from codekiln.manifest import file_sha256

        self.config = config  # a TrainConfig: seq_len and seed
        pairs = read_pairs(source)
        chat = load_chat_format(folder)
        self.pad_id = chat.eos_id(tokenizer)
        self.encoded = encode_pairs(pairs, tokenizer, chat)
        train = self.loader("train", 1, 0, 1)
        largest = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=0)
        counts = train.counts
        self.meta = {
            "sft": {
                "source": str(source),
                "sha256": file_sha256(source) if source.is_file() else None,
                "pairs_sha256": train.pairs_sha256,
                "pairs": len(pairs),
                "train_pairs": counts.train_pairs,
                "valid_pairs": counts.valid_pairs,
                "truncated_pairs": counts.truncated_pairs,
                "chat_template": chat.template is not None,
            },
            "tokenizer": {"fingerprint": fingerprint},
            "vocab_size": max(tokenizer.get_vocab_size(with_added_tokens=True), largest + 1),
            "splits": {"train": {"tokens": counts.tokens, "documents": counts.pairs}},
        }

    def loader(self, split: str, batch_size: int, rank: int, world_size: int) -> SftLoader:
        config = self.config
        settings = SftLoaderConfig(config.seq_len, batch_size, seed=config.seed, split=split)
        return SftLoader(self.encoded, self.pad_id, settings, rank, world_size)

    def valid_loader(self) -> SftLoader | None:
        """The valid split's loader for one process (its packed rows are the validation
        set, whatever the world size); None when no pair is held out."""
        try:
            return self.loader("valid", 1, 0, 1)
        except UserError:
            return None
