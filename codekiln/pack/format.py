"""The token-shard format: the only contract between `codekiln pack` and the loader.

A pack directory holds, per split (`train`, `valid`):

    {split}-{NNNNN}.bin   token ids, little-endian uint16 (vocabulary <= 65,536) or uint32,
                          documents back to back, each ending with the tokenizer's eos
    {split}-{NNNNN}.idx   a .npy int64 array of len(documents) + 1 offsets into the .bin
                          (in tokens): document i is tokens[idx[i]:idx[i + 1]]
    tokenizer/            a copy of the tokenizer packed with: tokenizer.json, and
                          tokenizer_config.json / special_tokens_map.json where it had them
    meta.json             format_version, dtype, vocab_size, tokenizer_sha256 (of
                          tokenizer/tokenizer.json), special_ids (every special token -> id),
                          tokenizer {dir, fingerprint, source}, format {family, eos, fim,
                          fim_tokens, fim_rate, repo_metadata_probability, context_length},
                          splits {split: shards, tokens, documents, languages {lang: tokens,
                          documents}}, skipped_records, config (the settings that made them);
                          a split with no documents is left out
    manifest.json         written last

meta.json's `format` says how documents are laid out (codekiln.tokenizer.family):

    family      "starcoder" (a file per document, metadata prefix), "starcoder2" (a
                repository per document) or "plain" (content + eos)
    eos         the end-of-text token string
    fim         "context": the loader does Fill-in-the-Middle while training (starcoder and
                plain, with FIM tokens); "file": pack did it, per file (starcoder2); "none":
                the tokenizer has no FIM tokens
    fim_tokens  {prefix, middle, suffix, pad (or null)} token strings, or null
    fim_rate    the share of files pack put in FIM form (0 unless fim is "file")
    repo_metadata_probability, context_length
                starcoder2's settings (null for the other families)

A split may have several shards; the loader concatenates them in name order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codekiln.errors import UserError

FORMAT_VERSION = 2  # 2: format, tokenizer and the tokenizer/ copy
SPLITS = ("train", "valid")


def dtype_for(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32.

    >>> dtype_for(49152), dtype_for(70000)
    (dtype('uint16'), dtype('uint32'))
    """
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def shard_names(split: str, index: int) -> tuple[str, str]:
    return f"{split}-{index:05d}.bin", f"{split}-{index:05d}.idx"


def read_meta(directory: str | Path) -> dict:
    path = Path(directory) / "meta.json"
    if not path.exists():
        raise UserError(f"{directory} is not a pack directory (no meta.json); run `codekiln pack`")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{directory}: token shard format {meta.get('format_version')} is not "
            f"{FORMAT_VERSION}; pack the data again with this codekiln"
        )
    return meta


@dataclass
class Split:
    """A split's tokens as one memory-mapped stream per shard, with document offsets."""

    tokens: list[np.ndarray]  # memmaps, one per shard
    offsets: list[np.ndarray]  # document offsets, one array per shard

    @property
    def num_tokens(self) -> int:
        return sum(len(t) for t in self.tokens)

    @property
    def num_documents(self) -> int:
        return sum(len(o) - 1 for o in self.offsets)


def open_split(directory: str | Path, split: str) -> Split:
    """Memory-map every shard of a split (no copy into memory)."""
    directory = Path(directory)
    meta = read_meta(directory)
    if split not in meta["splits"]:
        raise UserError(f"{directory} has no '{split}' split (has: {', '.join(meta['splits'])})")
    dtype = np.dtype(meta["dtype"]).newbyteorder("<")  # written little-endian on every host
    tokens, offsets = [], []
    for name in meta["splits"][split]["shards"]:
        bin_path = directory / name
        idx_path = bin_path.with_suffix(".idx")
        size = bin_path.stat().st_size // dtype.itemsize
        tokens.append(
            np.memmap(bin_path, dtype=dtype, mode="r", shape=(size,))
            if size
            else np.zeros(0, dtype)
        )
        offsets.append(np.load(idx_path, allow_pickle=False))
    return Split(tokens, offsets)
