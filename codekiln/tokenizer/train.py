"""Train a StarCoder-style tokenizer on curated shards.

The tokenizer is a byte-level BPE (GPT-2's byte alphabet and pre-tokenizer regex) with every
digit split into its own token, no normalizer, and StarCoder's 19 special tokens at ids 0-18.
It is trained on a deterministic sample of the curated records: each record's place in the
sampling order is a seeded hash of its id, so the sample depends neither on how the records are
spread over shard files nor on the order the files are read in.

The output folder loads with `tokenizers.Tokenizer.from_file(DIR / "tokenizer.json")` and with
`transformers.AutoTokenizer.from_pretrained(DIR)`, and both give the same ids:

- `tokenizer_class` is `PreTrainedTokenizerFast`, the class that takes tokenizer.json as it is.
  `GPT2TokenizerFast` would be the natural name, but transformers 5 rebuilds GPT-2 tokenizers
  from their vocabulary and merges with GPT-2's own pre-tokenizer, which drops the digit split:
  "a  1" becomes three tokens there and two here.
- There is no pad token, as in StarCoder: packing puts documents back to back and never pads.
  To batch with transformers, set one yourself (`tokenizer.pad_token = tokenizer.eos_token`,
  with the attention mask hiding it).
- The text of a special token inside a document ("<fim_prefix>", "<|endoftext|>") is encoded as
  that special token by both libraries (transformers' `split_special_tokens=False` default), as
  StarCoder's tokenizer does. Decoding gives the text back exactly when special tokens are kept:
  `tokenizers`' `decode` drops them unless `skip_special_tokens=False`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codekiln.errors import UserError
from codekiln.manifest import (
    begin_stage,
    fingerprint,
    package_versions,
    write_atomic,
    write_json,
    write_manifest,
)
from codekiln.shards import curated_shards
from codekiln.tokenizer.special import EOS, SPECIAL_TOKENS

BYTE_SYMBOLS = 256
MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + BYTE_SYMBOLS + 1  # room for at least one merge

# The fertility report never takes more than this share of a language's text away from
# training, so a small corpus (or a rare language) still trains on most of its records.
HELD_OUT_FRACTION = 0.1

_COLUMNS = ("id", "content", "lang")


@dataclass
class TokenizerConfig:
    """What decides the tokenizer. Defaults are StarCoder's where StarCoder has one.

    >>> TokenizerConfig(vocab_size=1000).vocab_size
    1000
    """

    vocab_size: int = 49152
    sample_bytes: int = 100_000_000  # UTF-8 bytes of text to train on
    min_frequency: int = 2  # a pair seen fewer times is never merged
    seed: int = 42  # picks the sample
    model_max_length: int = 8192  # what transformers warns above; the model's context
    fertility_bytes: int = 2_000_000  # held-out text per language for the fertility report

    def __post_init__(self) -> None:
        if self.vocab_size < MIN_VOCAB_SIZE:
            raise UserError(
                f"tokenizer config: vocab_size {self.vocab_size} is too small: it must hold the "
                f"{len(SPECIAL_TOKENS)} special tokens and {BYTE_SYMBOLS} byte symbols; "
                f"use at least {MIN_VOCAB_SIZE}"
            )
        for name in ("sample_bytes", "min_frequency", "model_max_length"):
            if getattr(self, name) <= 0:
                raise UserError(
                    f"tokenizer config: {name} must be positive, got {getattr(self, name)}"
                )
        if self.fertility_bytes < 0:
            raise UserError(
                f"tokenizer config: fertility_bytes must be 0 (no report) or more, "
                f"got {self.fertility_bytes}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TokenizerResult:
    out_dir: Path
    vocab_size: int  # as trained: less than asked for when the sample has too few pairs
    sample_bytes: int
    sample_documents: int
    fertility: dict[str, Any]
    skipped: bool = False


def sample_key(record_id: str, seed: int) -> int:
    """A record's place in the sampling order: a seeded 64-bit hash of its id. Unlike Python's
    `hash()` it is the same in every process and on every machine.

    >>> sample_key("abc", 42)
    14410225862666498267
    """
    digest = hashlib.blake2b(f"{seed}:{record_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def fertility_report(records: list[dict], token_counts: list[int]) -> dict[str, Any]:
    """Documents, characters, bytes and tokens, per language and overall, and the characters
    per token they give (higher: the tokenizer compresses that language better).

    >>> report = fertility_report(
    ...     [{"lang": "Python", "content": "x = 1\\n"}, {"lang": "C", "content": "int x;"}], [4, 3]
    ... )
    >>> report["languages"]["Python"]["chars_per_token"], report["overall"]["tokens"]
    (1.5, 7)
    """
    totals: dict[str, list[int]] = {}
    for record, tokens in zip(records, token_counts, strict=True):
        row = totals.setdefault(record["lang"], [0, 0, 0, 0])
        content = record["content"]
        row[0] += 1
        row[1] += len(content)
        row[2] += len(content.encode("utf-8"))
        row[3] += tokens
    overall = [sum(row[i] for row in totals.values()) for i in range(4)]
    return {
        "languages": {lang: _fertility_entry(*totals[lang]) for lang in sorted(totals)},
        "overall": _fertility_entry(*overall),
    }


def _fertility_entry(documents: int, characters: int, size: int, tokens: int) -> dict[str, Any]:
    return {
        "documents": documents,
        "characters": characters,
        "bytes": size,
        "tokens": tokens,
        "chars_per_token": round(characters / tokens, 4) if tokens else None,
        "bytes_per_token": round(size / tokens, 4) if tokens else None,
    }


def sample_records(
    data: str | Path, sample_bytes: int, seed: int, held_out_bytes: int = 2_000_000
) -> tuple[list[dict], list[dict]]:
    """Split the curated records in `data` into a training sample and a held-out set, both as
    `{"id", "content", "lang"}` dicts in sampling order.

    Records are ordered by `sample_key(id, seed)`. The held-out set comes from the end of that
    order: per language, up to `held_out_bytes` (and at most HELD_OUT_FRACTION of the
    language's text). The training sample comes from the start: records until `sample_bytes`
    UTF-8 bytes are reached, the record that crosses the limit included. Empty records are left
    out. Ids are unique in curated data, so the result does not depend on the shard files.
    """
    files = curated_shards(data)
    index = _index_records(files, seed)
    if len(index["key"]) == 0:
        raise UserError(f"no curated records in {data}; run `codekiln curate` first")
    order = np.argsort(index["key"], kind="stable")
    sizes = index["size"][order]

    held = np.zeros(len(order), dtype=bool)  # by position in `order`
    for code in range(len(index["langs"])):
        positions = np.flatnonzero(index["lang"][order] == code)[::-1]  # end of the order first
        cap = min(held_out_bytes, int(HELD_OUT_FRACTION * sizes[positions].sum()))
        # A prefix that fits, stopping at the first record that does not: skipping past a large
        # record to take smaller ones would bias the report towards small files.
        fits = np.cumsum(sizes[positions]) <= cap
        held[positions[: len(fits) if fits.all() else int(np.argmin(fits))]] = True

    candidates = np.flatnonzero(~held)
    before = np.cumsum(sizes[candidates]) - sizes[candidates]  # bytes taken before each one
    train_positions = candidates[before < sample_bytes]
    held_positions = np.flatnonzero(held)
    records = _read_records(files, index, order[np.concatenate([train_positions, held_positions])])
    train = [records[i] for i in order[train_positions]]
    held_out = [records[i] for i in order[held_positions]]
    return train, held_out


def _open_shard(path: Path) -> pq.ParquetFile:
    try:
        shard = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(
            f"{path} is not a readable Parquet file ({exc}); run `codekiln curate` again"
        ) from None
    missing = [c for c in _COLUMNS if c not in shard.schema_arrow.names]
    if missing:
        raise UserError(
            f"{path} is not a curated shard: it lacks column(s) {', '.join(missing)}; "
            "run `codekiln curate` on the data first"
        )
    return shard


def _read_row_group(shard: pq.ParquetFile, path: Path, group: int) -> pa.Table:
    try:
        return shard.read_row_group(group, columns=list(_COLUMNS))
    except (pa.ArrowException, OSError) as exc:
        raise UserError(
            f"{path}: row group {group} cannot be read ({exc}); run `codekiln curate` again"
        ) from None


def _index_records(files: list[Path], seed: int) -> dict[str, Any]:
    """One pass over the shards, a row group at a time: per non-empty record its sampling key,
    UTF-8 size, language and location. Only this index is kept, not the text."""
    keys, sizes, langs, where = [], [], [], []
    lang_codes: dict[str, int] = {}
    for file_index, path in enumerate(files):
        shard = _open_shard(path)
        for group in range(shard.num_row_groups):
            table = _read_row_group(shard, path, group)
            size = pc.fill_null(pc.binary_length(table.column("content")), 0).to_numpy()
            rows = np.flatnonzero(size > 0)
            ids = table.column("id").take(rows).to_pylist()
            if None in ids:
                raise UserError(f"{path} has records without an id; run `codekiln curate` again")
            keys.append(np.array([sample_key(i, seed) for i in ids], dtype=np.uint64))
            sizes.append(size[rows].astype(np.int64))
            names = table.column("lang").take(rows).to_pylist()
            langs.append(
                np.array(
                    [lang_codes.setdefault(n or "unknown", len(lang_codes)) for n in names],
                    dtype=np.int32,
                )
            )
            where.append(
                np.stack([np.full(len(rows), file_index), np.full(len(rows), group), rows])
            )
    return {
        "key": np.concatenate(keys) if keys else np.zeros(0, np.uint64),
        "size": np.concatenate(sizes) if sizes else np.zeros(0, np.int64),
        "lang": np.concatenate(langs) if langs else np.zeros(0, np.int32),
        "where": np.concatenate(where, axis=1) if where else np.zeros((3, 0), np.int64),
        "langs": list(lang_codes),
    }


def _read_records(files: list[Path], index: dict[str, Any], wanted: np.ndarray) -> dict:
    """Index position -> record, for the wanted positions, reading only the row groups
    that hold them."""
    records: dict[int, dict] = {}
    where = index["where"]
    by_group: dict[tuple[int, int], list[int]] = {}
    for position in sorted(wanted.tolist()):
        by_group.setdefault((int(where[0, position]), int(where[1, position])), []).append(position)
    shards: dict[int, pq.ParquetFile] = {}
    for (file_index, group), positions in sorted(by_group.items()):
        path = files[file_index]
        shard = shards.setdefault(file_index, _open_shard(path))
        table = _read_row_group(shard, path, group).take(where[2, positions])
        for position, row in zip(positions, table.to_pylist(), strict=True):
            records[position] = {
                "id": row["id"],
                "content": row["content"],
                "lang": row["lang"] or "unknown",
            }
    return records


def build_tokenizer():
    """An untrained tokenizer with StarCoder's pipeline: no normalizer, digits split one by
    one, then GPT-2's byte-level regex; a byte-level decoder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    # No unk token in the model: every byte has a symbol, so nothing is ever unknown.
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2, length=None):
    """StarCoder's byte-level BPE (`build_tokenizer`) trained on `texts`, the special tokens
    taking ids 0-18 in SPECIAL_TOKENS' order."""
    from tokenizers import pre_tokenizers, trainers

    tokenizer = build_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),  # first, so they take ids 0-18 in this order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer, length=length)
    ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
    assert ids == list(range(len(SPECIAL_TOKENS))), f"special token ids are {ids}"
    return tokenizer


def _train(records: list[dict], config: TokenizerConfig):
    return train_bpe(
        (record["content"] for record in records),
        config.vocab_size,
        config.min_frequency,
        length=len(records),
    )


def _hf_files(config: TokenizerConfig) -> dict[str, dict[str, Any]]:
    """tokenizer_config.json and special_tokens_map.json for transformers (see the module
    docstring for the class and the pad token)."""
    special = {
        "bos_token": EOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "additional_special_tokens": list(SPECIAL_TOKENS[1:]),
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "pad_token": None,
        "model_max_length": config.model_max_length,
        "clean_up_tokenization_spaces": False,  # decoding must give the code back unchanged
        "add_prefix_space": False,
    }
    return {"tokenizer_config.json": tokenizer_config, "special_tokens_map.json": special}


def _describe_input(data: Path, files: list[Path]) -> dict[str, Any]:
    manifest = data / "manifest.json"
    return {
        "path": str(data.resolve()),
        "manifest_sha256": (
            hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.exists() else None
        ),
        "shards": [{"name": f.name, "bytes": f.stat().st_size} for f in files],
    }


def train_tokenizer(
    data: str | Path,
    out_dir: str | Path,
    config: TokenizerConfig | None = None,
    force: bool = False,
) -> TokenizerResult:
    """Train on a sample of the curated shards in `data`; write a Hugging Face tokenizer
    folder, fertility.json and, last, manifest.json to `out_dir`.

    A finished run with the same data and config is not redone (`skipped=True`); one with other
    data or settings is replaced only with `force`.
    """
    config = config or TokenizerConfig()
    data, out_dir = Path(data), Path(out_dir)
    files = curated_shards(data)
    described = _describe_input(data, files)
    # The data's path is left out: a moved data directory is the same input.
    request = fingerprint(
        {
            "config": config.to_dict(),
            "input": [described["manifest_sha256"], described["shards"]],
        }
    )
    holds = "a tokenizer trained on other data or settings"
    previous = begin_stage(out_dir, "tokenizer", request, force, holds, inputs=(data,))
    if previous is not None:
        fertility = json.loads((out_dir / "fertility.json").read_text(encoding="utf-8"))
        return TokenizerResult(
            out_dir,
            previous["vocab_size"],
            previous["sample"]["bytes"],
            previous["sample"]["documents"],
            fertility,
            skipped=True,
        )

    timings = {}
    clock = time.time()
    train, held_out = sample_records(data, config.sample_bytes, config.seed, config.fertility_bytes)
    timings["sample_s"] = time.time() - clock
    clock = time.time()
    tokenizer = _train(train, config)
    timings["train_s"] = time.time() - clock
    clock = time.time()
    encodings = tokenizer.encode_batch([r["content"] for r in held_out], add_special_tokens=False)
    fertility = {
        "measured_on": "held-out records, not in the training sample",
        **fertility_report(held_out, [len(e.ids) for e in encodings]),
    }
    timings["fertility_s"] = time.time() - clock

    tokenizer_json = tokenizer.to_str(pretty=True)
    write_atomic(out_dir / "tokenizer.json", tokenizer_json)
    for name, value in _hf_files(config).items():
        write_json(out_dir / name, value)
    write_json(out_dir / "fertility.json", fertility)
    sample = {
        "documents": len(train),
        "bytes": sum(len(r["content"].encode("utf-8")) for r in train),
        "held_out_documents": len(held_out),
    }
    write_manifest(
        out_dir,
        "tokenizer",
        request=request,
        config=config.to_dict(),
        input=described,
        sample=sample,
        vocab_size=tokenizer.get_vocab_size(),
        tokenizer_sha256=hashlib.sha256(tokenizer_json.encode("utf-8")).hexdigest(),
        outputs=[
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "fertility.json",
        ],
        versions=package_versions("tokenizers", "pyarrow", "numpy"),
        timings={k: round(v, 3) for k, v in timings.items()},
    )
    return TokenizerResult(
        out_dir, tokenizer.get_vocab_size(), sample["bytes"], sample["documents"], fertility
    )
