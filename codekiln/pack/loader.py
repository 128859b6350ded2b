"""Batches of fixed-length token sequences from a pack directory, for training (numpy only).

How the batches are made:

- The split's shards are one token stream (name order). Sequence i is the L + 1 tokens that
  start at token i * L, so consecutive sequences share one token and every token after the
  first is a target exactly once per epoch (Megatron's samples; nanoGPT's x/y shifted by one).
  The last partial sequence is never used: num_sequences = (tokens - 1) // L.
- Epoch e visits the sequences in the order of np.random.default_rng((seed, e)).permutation.
  Step s of the epoch takes the global batch perm[s * W * B : (s + 1) * W * B] (W ranks of
  B rows), and rank r the r-th block of B rows. Ranks therefore see disjoint sequences, the
  global batch depends only on W * B, and the last num_sequences % (W * B) sequences of each
  permutation are dropped so every rank has steps_per_epoch steps. Another epoch's
  permutation drops different ones.
- FIM runs on the fly with rng np.random.default_rng((seed, epoch, i, 1)): a sequence's
  result depends on nothing but the seed, the epoch and its index, so not on batch size,
  rank, world size or resumption. Its sentinels and eos are the ones the pack's meta.json
  records (`format`), so StarCoder's, SantaCoder's <fim-prefix>... and any eos work. A pack
  whose format says fim "file" (StarCoder2: FIM done while packing) or "none" (no FIM
  tokens) takes fim_rate 0 only.
- Iteration never ends: epochs follow one another, and `state_dict` says where it is. One
  epoch is `itertools.islice(loader, loader.steps_per_epoch)` from a fresh loader.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codekiln.errors import UserError
from codekiln.pack.fim import FimIds, apply_fim
from codekiln.pack.format import open_split, read_meta
from codekiln.tokenizer.family import FimTokens, special_token_ids, tokenizer_fingerprint
from codekiln.tokenizer.special import EOS

STATE_VERSION = 1
IGNORE_INDEX = -100  # the label PyTorch's cross_entropy skips by default

# Numbers a saved position is only valid under: resuming with any of them changed would
# continue a different sequence of batches.
_STATE_KEYS = (
    "seed",
    "seq_len",
    "global_batch_size",
    "fim_rate",
    "fim_spm_rate",
    "split",
    "num_sequences",
)


@dataclass
class LoaderConfig:
    seq_len: int
    batch_size: int
    seed: int = 0
    fim_rate: float = 0.5
    fim_spm_rate: float = 0.5
    split: str = "train"

    def __post_init__(self):
        for name in ("seq_len", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"loader {name} must be a whole number >= 1, not {value!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            # SeedSequence spreads larger ints over several words, where two different
            # (seed, epoch) keys could meet.
            raise UserError(f"loader seed must be a whole number in [0, 2**32), not {self.seed!r}")
        for name in ("fim_rate", "fim_spm_rate"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise UserError(
                    f"loader {name} must be a probability in [0, 1], not {value!r} "
                    "(StarCoder used 0.5; 0 turns it off)"
                )
        if not self.split:
            raise UserError("loader split must name a split of the pack, e.g. 'train'")


@dataclass
class Batch:
    input_ids: np.ndarray  # (B, T) int64
    labels: np.ndarray  # (B, T) int64: input_ids shifted by one; -100 where that is padding
    indices: np.ndarray  # (B,) int64: the sequences of the split the rows were cut from


class TokenLoader:
    """Endless, resumable batches of one split of a pack directory for one rank.

    `tokenizer` is a `tokenizers.Tokenizer` or a tokenizer folder; it is needed only for
    FIM. None is fine with fim_rate 0, and with FIM it means the pack's own copy
    (PACK/tokenizer). The loader works on its own copy of it.
    """

    def __init__(
        self,
        pack_dir: str | Path,
        tokenizer,
        config: LoaderConfig,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not isinstance(world_size, int) or world_size < 1:
            raise UserError(f"world_size must be a whole number >= 1, not {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise UserError(f"rank must be in [0, {world_size}), not {rank!r}")
        self.pack_dir = Path(pack_dir)
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self._fim_ids = None
        if config.fim_rate > 0:
            meta = read_meta(self.pack_dir)
            tokens, eos = _fim_tokens(self.pack_dir, meta, config.fim_rate)
            tokenizer = _pack_tokenizer(self.pack_dir, meta) if tokenizer is None else tokenizer
            self._tokenizer = _own_tokenizer(tokenizer, config.fim_rate)
            self._fim_ids = FimIds.from_tokenizer(self._tokenizer, tokens, eos)
            _check_same_tokenizer(self.pack_dir, meta, self._tokenizer)
        else:
            self._tokenizer = _own_tokenizer(tokenizer, config.fim_rate)
        self._open()
        total = int(self._ends[-1]) if len(self._ends) else 0
        if total < config.seq_len + 1:
            raise UserError(
                f"the {config.split} split of {self.pack_dir} has {total:,} tokens; "
                f"seq_len {config.seq_len} needs at least {config.seq_len + 1:,}: pack more "
                "data or lower seq_len"
            )
        self.num_tokens = total
        self.num_sequences = (total - 1) // config.seq_len
        self.global_batch_size = config.batch_size * world_size
        self.steps_per_epoch = self.num_sequences // self.global_batch_size
        if self.steps_per_epoch == 0:
            raise UserError(
                f"the {config.split} split of {self.pack_dir} makes {self.num_sequences:,} "
                f"sequences of {config.seq_len + 1} tokens; one step needs "
                f"{self.global_batch_size:,} (batch_size {config.batch_size} x "
                f"{world_size} ranks): pack more data or lower batch_size or seq_len"
            )
        self.epoch = 0
        self.step = 0  # batches of the current epoch already handed out
        self._perm_epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def _open(self) -> None:
        split = open_split(self.pack_dir, self.config.split)
        self._shards = split.tokens
        self._ends = np.cumsum([len(t) for t in self._shards], dtype=np.int64)

    def __iter__(self) -> Iterator[Batch]:
        """Batches from the current position on, across epochs, without end.

        The position moves as each batch is handed out, so `state_dict()` taken after
        receiving k batches resumes at batch k + 1. Use one iterator at a time.
        """
        while True:
            batch = self.batch(self.epoch, self.step)
            self.step += 1
            if self.step == self.steps_per_epoch:
                self.epoch, self.step = self.epoch + 1, 0
            yield batch

    def batch(self, epoch: int, step: int) -> Batch:
        """This rank's batch at (epoch, step); the same every time it is asked for."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} is not in [0, {self.steps_per_epoch})")
        size = self.config.batch_size
        start = (step * self.world_size + self.rank) * size
        return self.rows(epoch, self._permutation(epoch)[start : start + size])

    def rows(self, epoch: int, indices: np.ndarray) -> Batch:
        """The sequences `indices` of the split as epoch `epoch` trains on them, one row each
        (any number of rows; what `batch` hands out, and the fixed validation set)."""
        length = self.config.seq_len
        input_ids = np.empty((len(indices), length), dtype=np.int64)
        labels = np.empty((len(indices), length), dtype=np.int64)
        for row, index in enumerate(np.asarray(indices).tolist()):
            tokens, mask = self.sequence(epoch, index)
            input_ids[row] = tokens[:-1]
            labels[row] = np.where(mask[1:], tokens[1:], IGNORE_INDEX)
        return Batch(input_ids, labels, np.array(indices, dtype=np.int64))

    def order(self, epoch: int) -> np.ndarray:
        """Every sequence index of the split in the order epoch `epoch` visits them with one
        rank (global batches are consecutive blocks of it)."""
        return self._permutation(epoch).copy()

    def sequence(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sequence `index` as epoch `epoch` trains on it: (tokens, loss mask), L + 1 each."""
        length = self.config.seq_len
        tokens = self._read(index * length, index * length + length + 1)
        if self._fim_ids is None:
            return tokens, np.ones(len(tokens), dtype=bool)
        # The trailing 1 keeps this stream apart from the permutation's (seed, epoch):
        # SeedSequence pads short keys with zeros, so (seed, epoch, 0) would be the same.
        rng = np.random.default_rng((self.config.seed, epoch, index, 1))
        return apply_fim(
            tokens,
            self._tokenizer,
            self._fim_ids,
            rng,
            self.config.fim_rate,
            self.config.fim_spm_rate,
        )

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            rng = np.random.default_rng((self.config.seed, epoch))
            self._perm = rng.permutation(self.num_sequences)
            self._perm_epoch = epoch
        return self._perm

    def _read(self, start: int, stop: int) -> np.ndarray:
        """Tokens start..stop of the split's stream as int64, across shard boundaries."""
        out = np.empty(stop - start, dtype=np.int64)
        shard = int(np.searchsorted(self._ends, start, side="right"))
        position = start
        while position < stop:
            shard_start = int(self._ends[shard]) - len(self._shards[shard])
            local = position - shard_start
            take = min(stop - position, len(self._shards[shard]) - local)
            out[position - start : position - start + take] = self._shards[shard][
                local : local + take
            ]
            position += take
            shard += 1
        return out

    def state_dict(self) -> dict:
        """Where iteration stands, and the settings the position is only valid under."""
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "step": self.step,
            **{key: self._setting(key) for key in _STATE_KEYS},
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue where `state` was taken: the next batches are the ones that came next.

        The world size may change as long as the global batch (batch_size x world_size)
        does not: the global batches are the same, just split over other ranks.
        """
        self.epoch, self.step = restore_position(
            state,
            STATE_VERSION,
            {key: self._setting(key) for key in _STATE_KEYS},
            lambda epoch: self.steps_per_epoch,
            "the data loader",
            "the settings and pack it was saved with",
        )

    def _setting(self, key: str):
        if key in ("global_batch_size", "num_sequences"):
            return getattr(self, key)
        return getattr(self.config, key)

    def __getstate__(self) -> dict:
        # Memmaps pickle as full copies of their data; worker processes reopen the files.
        state = self.__dict__.copy()
        del state["_shards"], state["_ends"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()


def _fim_tokens(pack_dir: Path, meta: dict, fim_rate: float) -> tuple[FimTokens, str]:
    """The FIM sentinels and eos the pack records; a UserError where its layout leaves no
    FIM for training to do."""
    layout = meta.get("format")
    if not isinstance(layout, dict):
        raise UserError(
            f"{pack_dir}/meta.json does not say how its documents are laid out (no 'format'): "
            "pack the data again with this codekiln"
        )
    if layout.get("fim") == "file":
        raise UserError(
            f"{pack_dir} was packed in the StarCoder2 layout, with FIM applied when packing "
            f"(its fim_rate {layout.get('fim_rate')}): set fim_rate=0 for training, or pack "
            "again with the fim_rate you want"
        )
    if layout.get("fim") != "context" or not layout.get("fim_tokens"):
        raise UserError(
            f"the tokenizer {pack_dir} was packed with has no FIM tokens: set fim_rate=0 "
            f"(not {fim_rate}), or pack with a tokenizer that has <fim_prefix>, <fim_middle>, "
            "<fim_suffix>"
        )
    return FimTokens.from_dict(layout["fim_tokens"]), layout.get("eos") or EOS


def _pack_tokenizer(pack_dir: Path, meta: dict) -> Path:
    """The pack's own copy of its tokenizer, for FIM when none is passed."""
    copy = pack_dir / ((meta.get("tokenizer") or {}).get("dir") or "tokenizer")
    if not (copy / "tokenizer.json").is_file():
        raise UserError(
            "Fill-in-the-Middle needs the tokenizer the pack was made with: pass it, "
            "or set fim_rate = 0"
        )
    return copy


def restore_position(
    state: dict,
    version: int,
    settings: dict[str, Any],
    steps_in_epoch: Callable[[int], int],
    what: str,
    advice: str,
) -> tuple[int, int]:
    """(epoch, step) of a loader's saved state, once it is checked: its version, the
    settings the position is only valid under (a UserError naming each that changed, and
    `advice`), and a position the loader has (`steps_in_epoch(epoch)` steps in an epoch).

    >>> restore_position({"version": 1, "epoch": 2, "step": 3, "seed": 7}, 1, {"seed": 7},
    ...                  lambda epoch: 10, "the loader", "")
    (2, 3)
    """
    if state.get("version") != version:
        raise UserError(
            f"{what}'s saved state has version {state.get('version')!r}, not {version}: it "
            "was saved by another codekiln"
        )
    changed = [
        f"{key} {_short(state.get(key))} -> {_short(value)}"
        for key, value in settings.items()
        if state.get(key) != value
    ]
    if changed:
        raise UserError(
            f"cannot resume {what}: the saved position belongs to other settings "
            f"({', '.join(changed)}); resume with {advice}"
        )
    epoch, step = state.get("epoch"), state.get("step")
    whole = isinstance(epoch, int) and isinstance(step, int) and epoch >= 0
    if not whole or not 0 <= step < steps_in_epoch(epoch):
        raise UserError(
            f"{what}'s saved state has an impossible position: epoch {epoch!r}, step {step!r}"
        )
    return epoch, step


def _short(value: Any) -> str:
    """A value for one line: long reprs (a hash) cut to 20 characters."""
    text = repr(value)
    return text if len(text) <= 20 else text[:17] + "..."


def _own_tokenizer(tokenizer, fim_rate: float):
    """A private copy (FIM flips a switch on it), loaded from a folder if given a path."""
    if tokenizer is None:
        if fim_rate > 0:
            raise UserError(
                "Fill-in-the-Middle needs the tokenizer the pack was made with: pass it, "
                "or set fim_rate = 0"
            )
        return None
    if isinstance(tokenizer, str | Path):
        from codekiln.tokenizer.family import load_any_tokenizer

        return load_any_tokenizer(tokenizer)
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tokenizer.to_str())


def _check_same_tokenizer(pack_dir: Path, meta: dict, tokenizer) -> None:
    """FIM with another tokenizer than the pack's would cut documents at the wrong ids and
    rearrange garbage. The special ids meta.json records say which token differs; its
    fingerprint catches the rest (a different vocabulary or merges)."""
    packed = meta.get("special_ids") or {}
    ours = special_token_ids(tokenizer)
    for token in packed.keys() - ours.keys():  # a token in the vocabulary, not flagged special
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            ours[token] = token_id
    differ = sorted(
        f"{t} is {ours[t]} here, {packed[t]} in the pack"
        for t in ours.keys() & packed.keys()
        if ours[t] != packed[t]
    )
    if differ:
        raise UserError(
            f"the tokenizer is not the one {pack_dir} was packed with ({'; '.join(differ)}): "
            "pass the pack's tokenizer"
        )
    expected = (meta.get("tokenizer") or {}).get("fingerprint")
    if expected and tokenizer_fingerprint(tokenizer) != expected:
        raise UserError(
            f"the tokenizer is not the one {pack_dir} was packed with (its vocabulary or "
            f"merges differ: fingerprint {tokenizer_fingerprint(tokenizer)}, the pack's "
            f"{expected}): pass the pack's tokenizer ({pack_dir}/tokenizer)"
        )
