"""Pack's worker side: a batch of records (or, for starcoder2, of whole repositories) ->
per split, its documents' token ids back to back.

The text pieces are encoded with special-token matching off: a file that contains the text
"<|endoftext|>" gets the ids of that text, never the end-of-text id, so no file can fake a
document boundary or a FIM sentinel. The special ids are put in here, between the pieces.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from codekiln.errors import UserError
from codekiln.pack.documents import (
    Layout,
    metadata_prefix,
    repository_documents,
    repository_fields,
)
from codekiln.pack.repositories import RepoBatch, read_rows
from codekiln.tokenizer.family import DocumentFormat, load_any_tokenizer, special_token_ids

_PARALLELISM = "TOKENIZERS_PARALLELISM"


@dataclass(frozen=True)
class EncodeSettings:
    """What a worker needs besides its records (small: sent with every batch)."""

    tokenizer_file: str  # the pack's copy
    tokenizer_sha256: str
    source: str  # the tokenizer as the user named it, for messages
    seed: int
    metadata_probability: float
    dtype: str
    layout: Layout
    shards: tuple[tuple[str, str], ...] = ()  # (path, sha256) of every shard (starcoder2)


@dataclass
class RecordBatch:
    index: int
    columns: dict[str, list[Any]]  # COLUMNS -> one value per record
    valid: list[bool]


@dataclass
class Encoded:
    index: int
    records: int
    tokens: int
    # split -> ids, document lengths, document languages, tokens per language (None: the
    # documents' own lengths)
    parts: dict[str, tuple[np.ndarray, np.ndarray, list[str], dict[str, int] | None]]
    skipped: int = 0


class Encoder:
    """A tokenizer that encodes plain text, with the special ids pack puts in itself."""

    def __init__(self, tokenizer_file: str, document_format: DocumentFormat) -> None:
        tokenizer = load_any_tokenizer(tokenizer_file)
        # Special-token text inside a file is text: match no special token while encoding.
        tokenizer.encode_special_tokens = True
        self.tokenizer = tokenizer
        self.ids = {t: tokenizer.token_to_id(t) for t in document_format.tokens()}
        self.special = {**special_token_ids(tokenizer)}
        self.special.update((t, i) for t, i in self.ids.items() if t not in self.special)
        self.vocab_size = vocab_size_of(tokenizer)
        self.is_special = np.zeros(self.vocab_size, dtype=bool)
        self.is_special[list(self.special.values())] = True


@lru_cache(maxsize=2)
def encoder_for(tokenizer_file: str, sha256: str, document_format: DocumentFormat) -> Encoder:
    """One encoder per process and tokenizer; the hash in the key makes a changed file a miss.
    The main process loads it before forking, so forked workers start with it loaded."""
    return Encoder(tokenizer_file, document_format)


@contextmanager
def _serial_tokenizers() -> Iterator[None]:
    """Keep `tokenizers` on one thread. By default it spreads a batch over a Rayon pool of one
    thread per core in every process, so W workers would run W x cores threads on the same
    cores; with one each, `workers` is the number of cores used (bench/pack.py --variants)."""
    previous = os.environ.get(_PARALLELISM)
    os.environ[_PARALLELISM] = "false"  # read by tokenizers on every call
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_PARALLELISM, None)
        else:
            os.environ[_PARALLELISM] = previous


def _on_own_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) on a thread that ends with the call: none is left for a fork.

    glibc gives the main thread its brk-based main arena and every other thread an arena of
    its own; `tokenizers` allocates a string per word, and encodes 10-12% faster off the main
    thread (bench/pack.py --variants; MALLOC_ARENA_MAX=1 takes the gain away)."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(fn, *args, **kwargs).result()


def encode_batch(job: tuple[EncodeSettings, RecordBatch | RepoBatch]) -> Encoded:
    """Worker side: one batch -> per split, its documents' ids back to back."""
    settings, batch = job
    if isinstance(batch, RepoBatch):
        return _encode_repositories(settings, batch)
    encoder = encoder_for(
        settings.tokenizer_file, settings.tokenizer_sha256, settings.layout.format
    )
    special = encoder.ids
    eos = special[settings.layout.format.eos]
    with_metadata = settings.layout.format.family == "starcoder"
    texts: list[str] = []  # every plain piece of every record, encoded in one call
    plans: list[list[int]] = []  # per record: special ids, and -1 where the next piece goes
    columns = batch.columns
    for i, content in enumerate(columns["content"]):
        record = {name: columns[name][i] for name in ("id", "repo", "path", "stars")}
        plan: list[int] = []
        fields = (
            metadata_prefix(record, settings.seed, settings.metadata_probability)
            if with_metadata
            else []
        )
        for token, text in fields:
            plan += [special[token], -1]
            texts.append(text)
        if fields:
            plan.append(-1)
            texts.append("\n")
        plan += [-1, eos]
        texts.append(content)
        plans.append(plan)
    encoded = _encode_texts(encoder, texts)
    encodings = iter(encoded)
    # One small array per piece, joined once per split: ~20 ns a token less than growing a
    # list of Python ints and converting it.
    dtype = np.dtype(settings.dtype)
    constant = {i: np.array([i], dtype=dtype) for i in special.values()}
    pieces: dict[bool, list[np.ndarray]] = {False: [], True: []}
    lengths: dict[bool, list[int]] = {False: [], True: []}
    langs: dict[bool, list[str]] = {False: [], True: []}
    inserted = 0
    for plan, valid, lang in zip(plans, batch.valid, columns["lang"], strict=True):
        length = 0
        for item in plan:
            if item < 0:
                piece = np.array(next(encodings).ids, dtype=dtype)
            else:
                piece = constant[item]
                inserted += 1
            pieces[valid].append(piece)
            length += len(piece)
        lengths[valid].append(length)
        langs[valid].append(lang or "unknown")
    parts = {}
    found = 0
    for valid, split in ((False, "train"), (True, "valid")):
        if lengths[valid]:
            array = np.concatenate(pieces[valid])
            found += int(np.count_nonzero(encoder.is_special[array]))
            parts[split] = (array, np.array(lengths[valid], dtype=np.int64), langs[valid], None)
    if found != inserted:
        _special_from_text(settings)
    total = sum(len(part[0]) for part in parts.values())
    return Encoded(batch.index, len(plans), total, parts)


def _encode_texts(encoder: Encoder, texts: list[str]) -> list:
    with _serial_tokenizers():
        # encode_batch_fast: the same ids as encode(), without the offsets pack never reads.
        encode = encoder.tokenizer.encode_batch_fast
        return _on_own_thread(encode, texts, add_special_tokens=False)


def _special_from_text(settings: EncodeSettings) -> None:
    raise UserError(
        f"tokenizer {settings.source} turns plain text into special-token ids (a pre-tokenizer "
        "that keeps text such as '<|endoftext|>' whole, or a special token for unknown text); "
        "use a byte-level BPE, as `codekiln tokenizer train` makes"
    )


def _encode_repositories(settings: EncodeSettings, batch: RepoBatch) -> Encoded:
    """Worker side, starcoder2: whole repositories -> their documents' ids, per split."""
    layout = settings.layout
    encoder = encoder_for(settings.tokenizer_file, settings.tokenizer_sha256, layout.format)
    columns = read_rows(settings.shards, batch.where)
    starts = np.flatnonzero(np.r_[True, batch.keys[1:] != batch.keys[:-1]]).tolist()
    texts: list[str] = []  # every plain piece of the batch, encoded in one call
    repositories = []  # (valid, header pairs, [(language, file pairs)]) in batch order
    skipped = 0
    for start, stop in zip(starts, [*starts[1:], len(batch.keys)], strict=True):
        rows = [i for i in range(start, stop) if columns["content"][i] is not None]
        skipped += stop - start - len(rows)
        if not rows:
            continue
        records = [{name: columns[name][i] for name in ("id", "path", "content")} for i in rows]
        repo = columns["repo"][start] or ""
        header, files = repository_fields(repo, records, settings.seed, layout)
        texts += [text for _, text in header]
        for _, pairs in files:
            texts += [text for _, text in pairs]
        languages = [columns["lang"][rows[k]] or "unknown" for k, _ in files]
        file_pairs = [pairs for _, pairs in files]
        valid = bool(batch.valid[start])
        repositories.append((valid, header, list(zip(languages, file_pairs, strict=True))))
    encodings = iter(_encode_texts(encoder, texts))
    dtype = np.dtype(settings.dtype)
    constant = {i: np.array([i], dtype=dtype) for i in encoder.ids.values()}
    found = 0  # special ids that came from text (there must be none)

    def run(pairs: list[tuple[str, str]]) -> np.ndarray:
        """The ids of (special token, text) pairs, the texts taken from `encodings`."""
        nonlocal found
        out = []
        for token, _ in pairs:
            piece = np.array(next(encodings).ids, dtype=dtype)
            found += int(np.count_nonzero(encoder.is_special[piece]))
            out += [constant[encoder.ids[token]], piece]
        return np.concatenate(out) if out else np.zeros(0, dtype)

    eos = constant[encoder.ids[layout.format.eos]]
    pieces: dict[bool, list[np.ndarray]] = {False: [], True: []}
    lengths: dict[bool, list[int]] = {False: [], True: []}
    langs: dict[bool, list[str]] = {False: [], True: []}
    by_language: dict[bool, dict[str, int]] = {False: {}, True: {}}
    for valid, header_pairs, files in repositories:
        header = run(header_pairs)
        units = [(language, run(pairs)) for language, pairs in files]
        sizes = [len(unit) for _, unit in units]
        for group in repository_documents(sizes, len(header), layout.context_length or 0):
            shares: dict[str, int] = {}
            for k in group:
                shares[units[k][0]] = shares.get(units[k][0], 0) + sizes[k]
            # The document counts for the language most of its files' tokens are in; its
            # header and eos go with that language's tokens.
            language = max(shares, key=lambda name: shares[name])
            shares[language] += len(header) + 1
            pieces[valid] += [header, *(units[k][1] for k in group), eos]
            lengths[valid].append(sum(shares.values()))
            langs[valid].append(language)
            for name, count in shares.items():
                by_language[valid][name] = by_language[valid].get(name, 0) + count
    if found:
        _special_from_text(settings)
    parts = {}
    for valid, split in ((False, "train"), (True, "valid")):
        if lengths[valid]:
            array = np.concatenate(pieces[valid])
            lengths_array = np.array(lengths[valid], dtype=np.int64)
            parts[split] = (array, lengths_array, langs[valid], by_language[valid])
    total = sum(len(part[0]) for part in parts.values())
    return Encoded(batch.index, len(batch.keys), total, parts, skipped)


def vocab_size_of(tokenizer) -> int:
    """One more than the largest id, added tokens included: every id must fit the dtype."""
    largest = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)
    return max(tokenizer.get_vocab_size(with_added_tokens=True), largest + 1)
