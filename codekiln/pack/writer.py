"""Pack's writing side: a split's token shards (`format.py`), filled in batch order."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from codekiln.manifest import atomic_path
from codekiln.pack.format import shard_names


class SplitWriter:
    """A split's .bin/.idx shards; a new shard starts before the first document after the
    current one reaches `shard_tokens` (documents never straddle shards)."""

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int) -> None:
        self.directory = directory
        self.split = split
        self.dtype = dtype.newbyteorder("<")  # the format is little-endian on every machine
        self.shard_tokens = shard_tokens
        self.shards: list[str] = []
        self.tokens = 0
        self.documents = 0
        self.languages: dict[str, dict[str, int]] = {}
        self._shard: ExitStack | None = None  # the open shard's file and its atomic_path
        self._handle = None
        self._lengths: list[np.ndarray] = []
        self._used = 0

    def write(
        self,
        ids: np.ndarray,
        lengths: np.ndarray,
        langs: list[str],
        lang_tokens: dict[str, int] | None = None,
    ) -> None:
        """Append documents; `langs` gives each one's language, `lang_tokens` the tokens per
        language where a document holds several (None: each document's own length)."""
        for lang, length in zip(langs, lengths.tolist(), strict=True):
            entry = self.languages.setdefault(lang, {"tokens": 0, "documents": 0})
            entry["tokens"] += length if lang_tokens is None else 0
            entry["documents"] += 1
        for lang, tokens in (lang_tokens or {}).items():
            self.languages.setdefault(lang, {"tokens": 0, "documents": 0})["tokens"] += tokens
        self.tokens += len(ids)
        self.documents += len(lengths)
        ids = ids.astype(self.dtype, copy=False)
        first, offset = 0, 0
        while first < len(lengths):
            if self._handle is None or self._used >= self.shard_tokens:
                self._roll()
            # Through the first document that makes the shard reach the limit.
            ends = self._used + np.cumsum(lengths[first:])
            stop = min(first + int(np.searchsorted(ends, self.shard_tokens)) + 1, len(lengths))
            size = int(lengths[first:stop].sum())
            self._handle.write(memoryview(ids[offset : offset + size]))
            self._lengths.append(lengths[first:stop])
            self._used += size
            first, offset = stop, offset + size

    def _roll(self) -> None:
        self._close_shard()
        bin_name, _ = shard_names(self.split, len(self.shards))
        self.shards.append(bin_name)
        self._shard = ExitStack()
        tmp = self._shard.enter_context(atomic_path(self.directory / bin_name))
        self._handle = self._shard.enter_context(open(tmp, "wb"))
        self._lengths = []
        self._used = 0

    def _close_shard(self) -> None:
        if self._shard is None:
            return
        _, idx_name = shard_names(self.split, len(self.shards) - 1)
        offsets = np.zeros(sum(len(x) for x in self._lengths) + 1, dtype=np.int64)
        if self._lengths:
            np.cumsum(np.concatenate(self._lengths), out=offsets[1:])
        # np.save(path) would append ".npy" to the name.
        with atomic_path(self.directory / idx_name) as tmp, open(tmp, "wb") as handle:
            np.save(handle, offsets, allow_pickle=False)
        self._shard.close()  # closes the .bin, then gives it its name
        self._shard = self._handle = None

    def finish(self) -> dict[str, Any]:
        self._close_shard()
        return {
            "shards": self.shards,
            "tokens": self.tokens,
            "documents": self.documents,
            "languages": {k: self.languages[k] for k in sorted(self.languages)},
        }
