"""The pack stage: curated shards + a tokenizer -> train/valid token shards (`format.py`).

The tokenizer's special tokens decide the layout (codekiln.tokenizer.family), or the `format`
setting does (`PackConfig`, `resolve_layout`). What a document is in each layout, and which
split a repository goes to, is `documents.py`; this module encodes those documents and
writes them.

The text pieces are encoded with special-token matching off: a file that contains the text
"<|endoftext|>" gets the ids of that text, never the end-of-text id, so no file can fake a
document boundary or a FIM sentinel. The special ids are put in by pack.

Workers encode fixed batches in input order (shard files by name, rows in order; for
starcoder2, whole repositories in order of their first record, located by a first pass over
the `repo` column: `repositories.py`); the main process appends each batch's tokens in batch
order (`_SplitWriter`), so the bytes written do not depend on the number of workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codekiln.errors import UserError
from codekiln.executor import LocalExecutor
from codekiln.manifest import (
    file_sha256,
    fingerprint,
    package_versions,
    read_manifest,
    write_atomic,
    write_json,
    write_manifest,
)
from codekiln.pack.documents import (
    Layout,
    metadata_prefix,
    repository_documents,
    repository_fields,
    valid_repositories,
)
from codekiln.pack.format import FORMAT_VERSION, SPLITS, dtype_for, read_meta, shard_names
from codekiln.pack.repositories import (
    COLUMNS,
    ROW_GROUPS,
    RepoBatch,
    index_repositories,
    read_rows,
    repository_names,
)
from codekiln.progress import StageProgress
from codekiln.shards import curated_shards
from codekiln.tokenizer.family import (
    FAMILIES,
    TOKENIZER_FILES,
    DocumentFormat,
    detect_format,
    load_any_tokenizer,
    model_context_length,
    special_token_ids,
    tokenizer_files,
    tokenizer_fingerprint,
)

_PARALLELISM = "TOKENIZERS_PARALLELISM"
TOKENIZER_DIR = "tokenizer"  # the pack's copy of its tokenizer
DEFAULT_CONTEXT_LENGTH = 4096  # StarCoder2's pretraining context, where no model folder says


@dataclass
class PackConfig:
    """How curated records become token shards.

    `format` picks the document layout: "auto" (the tokenizer's special tokens decide, see
    codekiln.tokenizer.family), "starcoder", "starcoder2" or "plain". The last three settings
    are StarCoder2's: `fim_rate` the share of files put in Fill-in-the-Middle form while
    packing (None: 0.5 where the tokenizer has FIM tokens; the other layouts leave FIM to
    training), `repo_metadata_probability` the share of repositories with <repo_name> and
    paths, `context_length` the most tokens one repository document holds (None: the
    tokenizer folder's config.json says, else 4096).

    >>> PackConfig(valid_fraction=0).valid_fraction
    0.0
    >>> PackConfig(format="starcoder2", fim_rate=0).fim_rate
    0.0
    """

    valid_fraction: float = 0.01  # share of repositories in the validation split
    metadata_probability: float = 0.2  # each of <reponame>, <filename>, <gh_stars> on its own
    seed: int = 42
    shard_tokens: int = 500_000_000  # tokens per .bin shard before a new one starts
    batch_records: int = 256  # records per encode batch: the unit of parallel work
    format: str = "auto"  # auto | starcoder | starcoder2 | plain
    fim_rate: float | None = None  # starcoder2: files in FIM form (None: 0.5 with FIM tokens)
    repo_metadata_probability: float = 0.5  # starcoder2: repositories with <repo_name>, paths
    context_length: int | None = None  # starcoder2: tokens per repository document at most

    def __post_init__(self) -> None:
        for name in ("valid_fraction", "metadata_probability", "repo_metadata_probability"):
            self._number(name)
        if self.fim_rate is not None:
            self._number("fim_rate")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise UserError(
                f"pack config: valid_fraction is a share of repositories in [0, 1) "
                f"(e.g. 0.01; 0 for no validation split), got {self.valid_fraction}"
            )
        for name, usual in (
            ("metadata_probability", "StarCoder: 0.2"),
            ("repo_metadata_probability", "StarCoder2: 0.5"),
            ("fim_rate", "StarCoder2: 0.5; none to choose by the tokenizer"),
        ):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise UserError(f"pack config: {name} must be in [0, 1] ({usual}), got {value}")
        for name in ("seed", "shard_tokens", "batch_records", "context_length"):
            value = getattr(self, name)
            if name == "context_length" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise UserError(f"pack config: {name} must be a whole number, got {value!r}")
        if self.seed < 0:
            raise UserError(f"pack config: seed must be 0 or more, got {self.seed}")
        for name in ("shard_tokens", "batch_records", "context_length"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"pack config: {name} must be positive, got {value}")
        if self.format not in ("auto", *FAMILIES):
            raise UserError(
                f"pack config: format must be auto, {', '.join(FAMILIES)}; got {self.format!r}"
            )

    def _number(self, name: str) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"pack config: {name} must be a number, got {value!r}")
        # 0 and 0.0 are one setting: a float keeps the saved config (and its hash) the same.
        setattr(self, name, float(value))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_layout(config: PackConfig, tokenizer, folder: str | Path | None = None) -> Layout:
    """The layout `config` asks of this tokenizer (and its folder: eos, context length); a
    UserError (one line) where the tokenizer cannot do it or a setting does not apply."""
    document_format = detect_format(tokenizer, folder, config.format)
    family = document_format.family
    asked = config.fim_rate
    if document_format.fim is None:
        if asked:
            raise UserError(
                f"pack config: fim_rate {asked} needs FIM tokens (<fim_prefix>, <fim_middle>, "
                "<fim_suffix>, or SantaCoder's <fim-prefix>...), which the tokenizer lacks: "
                "set fim_rate=0 or leave it unset"
            )
        fim = "none"
    elif family == "starcoder2":
        fim = "file"
    else:
        if asked:
            raise UserError(
                f"pack config: fim_rate {asked} is for the starcoder2 layout; the {family} "
                "layout does FIM while training (context level): leave pack's fim_rate unset "
                "and set the training fim_rate"
            )
        fim = "context"
    if family != "starcoder2":
        if config.context_length is not None:
            raise UserError(
                f"pack config: context_length is for the starcoder2 layout, and this pack is "
                f"{family}: leave it unset, or set format=starcoder2"
            )
        return Layout(document_format, fim, 0.0, None, None)
    rate = (0.5 if asked is None else asked) if fim == "file" else 0.0
    context = config.context_length or model_context_length(folder) or DEFAULT_CONTEXT_LENGTH
    return Layout(document_format, fim, rate, config.repo_metadata_probability, context)


@dataclass
class PackResult:
    out_dir: Path
    meta: dict[str, Any]
    skipped: bool = False


@dataclass(frozen=True)
class _Settings:
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
class _Batch:
    index: int
    columns: dict[str, list[Any]]  # COLUMNS -> one value per record
    valid: list[bool]


@dataclass
class _Encoded:
    index: int
    records: int
    tokens: int
    # split -> ids, document lengths, document languages, tokens per language (None: the
    # documents' own lengths)
    parts: dict[str, tuple[np.ndarray, np.ndarray, list[str], dict[str, int] | None]]
    skipped: int = 0


class _Encoder:
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
def _encoder(tokenizer_file: str, sha256: str, document_format: DocumentFormat) -> _Encoder:
    """One encoder per process and tokenizer; the hash in the key makes a changed file a miss.
    The main process loads it before forking, so forked workers start with it loaded."""
    return _Encoder(tokenizer_file, document_format)


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


def _encode_batch(job: tuple[_Settings, _Batch | RepoBatch]) -> _Encoded:
    """Worker side: one batch -> per split, its documents' ids back to back."""
    settings, batch = job
    if isinstance(batch, RepoBatch):
        return _encode_repositories(settings, batch)
    encoder = _encoder(settings.tokenizer_file, settings.tokenizer_sha256, settings.layout.format)
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
    return _Encoded(batch.index, len(plans), total, parts)


def _encode_texts(encoder: _Encoder, texts: list[str]) -> list:
    with _serial_tokenizers():
        # encode_batch_fast: the same ids as encode(), without the offsets pack never reads.
        encode = encoder.tokenizer.encode_batch_fast
        return _on_own_thread(encode, texts, add_special_tokens=False)


def _special_from_text(settings: _Settings) -> None:
    raise UserError(
        f"tokenizer {settings.source} turns plain text into special-token ids (a pre-tokenizer "
        "that keeps text such as '<|endoftext|>' whole, or a special token for unknown text); "
        "use a byte-level BPE, as `codekiln tokenizer train` makes"
    )


def _encode_repositories(settings: _Settings, batch: RepoBatch) -> _Encoded:
    """Worker side, starcoder2: whole repositories -> their documents' ids, per split."""
    layout = settings.layout
    encoder = _encoder(settings.tokenizer_file, settings.tokenizer_sha256, layout.format)
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
    return _Encoded(batch.index, len(batch.keys), total, parts, skipped)


class _SplitWriter:
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
        self._handle = open(self.directory / (bin_name + ".tmp"), "wb")  # noqa: SIM115
        self._lengths = []
        self._used = 0

    def _close_shard(self) -> None:
        if self._handle is None:
            return
        self._handle.close()
        self._handle = None
        bin_name, idx_name = shard_names(self.split, len(self.shards) - 1)
        offsets = np.zeros(sum(len(x) for x in self._lengths) + 1, dtype=np.int64)
        if self._lengths:
            np.cumsum(np.concatenate(self._lengths), out=offsets[1:])
        idx_tmp = self.directory / (idx_name + ".tmp")
        with open(idx_tmp, "wb") as handle:  # np.save(path) would append ".npy" to the name
            np.save(handle, offsets, allow_pickle=False)
        idx_tmp.replace(self.directory / idx_name)
        (self.directory / (bin_name + ".tmp")).replace(self.directory / bin_name)

    def finish(self) -> dict[str, Any]:
        self._close_shard()
        return {
            "shards": self.shards,
            "tokens": self.tokens,
            "documents": self.documents,
            "languages": {k: self.languages[k] for k in sorted(self.languages)},
        }


def vocab_size_of(tokenizer) -> int:
    """One more than the largest id, added tokens included: every id must fit the dtype."""
    largest = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)
    return max(tokenizer.get_vocab_size(with_added_tokens=True), largest + 1)


def data_files(data: str | Path) -> list[Path]:
    """The curated shards of `data` in name order, checked for the columns packing reads."""
    files = curated_shards(data)
    for path in files:
        missing = [c for c in COLUMNS if c not in pq.read_schema(path).names]
        if missing:
            raise UserError(
                f"{path} lacks column(s) {', '.join(missing)}: pack reads the shards "
                "`codekiln curate` writes"
            )
    return files


def _batches(
    files: list[Path], batch_records: int, valid: set[str], skipped: list[int]
) -> Iterator[_Batch]:
    """Fixed batches of records in input order (files by name, rows in order), read lazily.
    Records without content are left out and counted in skipped[0]."""
    buffer: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    index = 0

    def take(count: int) -> _Batch:
        nonlocal index
        columns = {name: values[:count] for name, values in buffer.items()}
        for values in buffer.values():
            del values[:count]
        flags = [(repo or "") in valid for repo in columns["repo"]]
        index += 1
        return _Batch(index - 1, columns, flags)

    for path in files:
        shard = pq.ParquetFile(path)
        try:
            for table in shard.iter_batches(batch_size=batch_records, columns=list(COLUMNS)):
                content = table.column("content")
                if content.null_count:
                    skipped[0] += content.null_count
                    table = table.filter(pc.is_valid(content))
                for name in COLUMNS:
                    buffer[name] += table.column(name).to_pylist()
                while len(buffer["content"]) >= batch_records:
                    yield take(batch_records)
        finally:
            shard.close()
    if buffer["content"]:
        yield take(len(buffer["content"]))


def _clear_outputs(out_dir: Path) -> None:
    """Remove what an earlier pack wrote here (and nothing else)."""
    for split in SPLITS:
        for pattern in (f"{split}-*.bin", f"{split}-*.idx", f"{split}-*.tmp"):
            for path in out_dir.glob(pattern):
                path.unlink()
    (out_dir / "meta.json").unlink(missing_ok=True)
    copy = out_dir / TOKENIZER_DIR
    for name in TOKENIZER_FILES:
        for path in (copy / name, copy / (name + ".tmp")):
            path.unlink(missing_ok=True)
    if copy.is_dir() and not any(copy.iterdir()):
        copy.rmdir()


def _check_copy_place(out_dir: Path) -> None:
    """The tokenizer copy goes to out_dir/tokenizer; refuse to write into the folder of
    another stage (`codekiln tokenizer train -o work/tokenizer`, then `pack -o work`)."""
    stage = read_manifest(out_dir / TOKENIZER_DIR)
    if stage is not None:
        raise UserError(
            f"{out_dir / TOKENIZER_DIR} holds the output of `codekiln {stage.get('stage')}`, "
            "and pack keeps its tokenizer copy there: choose another output directory"
        )


def pack(
    data: str | Path,
    tokenizer: str | Path,
    out_dir: str | Path,
    config: PackConfig | None = None,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
) -> PackResult:
    """Tokenize the curated shards in `data` into train/valid token shards in `out_dir`,
    with a copy of the tokenizer in out_dir/tokenizer.

    `tokenizer` is any Hugging Face tokenizer folder (or its tokenizer.json); its special
    tokens decide the document layout unless config.format names one. Re-running with the
    same data, tokenizer and config does nothing (`skipped`); other inputs or settings need
    `force`. The output is the same, byte for byte, for any `workers`.
    """
    config = config or PackConfig()
    out_dir = Path(out_dir)
    started = time.time()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output path {out_dir} exists and is not a directory; choose another")
    files = data_files(data)
    if out_dir.resolve() == Path(data).resolve():
        raise UserError("pack needs its own output directory, not the curated data folder")
    source = Path(tokenizer).absolute()
    loaded = load_any_tokenizer(source)  # a UserError says where a tokenizer comes from
    layout = resolve_layout(config, loaded, source if source.is_dir() else source.parent)
    # Read now: with --force the copy's place is cleared before it is written again.
    copy_files = tokenizer_files(source, loaded)
    tokenizer_sha = hashlib.sha256(copy_files["tokenizer.json"]).hexdigest()
    vocab_size = vocab_size_of(loaded)
    data_hashes = {p.name: file_sha256(p) for p in files}
    request = fingerprint(
        {
            "format_version": FORMAT_VERSION,
            "config": config.to_dict(),
            "data": data_hashes,
            "tokenizer": tokenizer_sha,
            "tokenizer_files": {n: hashlib.sha256(b).hexdigest() for n, b in copy_files.items()},
            "layout": layout.to_dict(),
        }
    )
    previous = read_manifest(out_dir)
    if previous is not None:
        if previous.get("stage") != "pack":
            raise UserError(
                f"{out_dir} holds the output of `codekiln {previous.get('stage')}`; "
                "choose another output directory"
            )
        if previous.get("request") == request and not force:
            return PackResult(out_dir, read_meta(out_dir), skipped=True)
        if not force:
            raise UserError(
                f"{out_dir} holds a finished pack of other data, tokenizer or settings; "
                "pass --force to replace it, or choose another output directory"
            )
    _check_copy_place(out_dir)
    total_records = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    if total_records == 0:
        raise UserError(
            f"{data} holds no records: curate some sources into it first (`codekiln curate`)"
        )

    if vocab_size > 1 << 32:
        raise UserError(f"tokenizer {source} has {vocab_size:,} ids: more than uint32")
    dtype = dtype_for(vocab_size)
    timings = {"prepare_s": time.time() - started}

    clock = time.time()
    by_repository = layout.format.family == "starcoder2"
    index = index_repositories(files) if by_repository else None
    repos = set(index.names) if index is not None else repository_names(files)
    valid = valid_repositories(repos, config.seed, config.valid_fraction)
    timings["split_s"] = time.time() - clock

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # no manifest: not finished
    _clear_outputs(out_dir)
    copy = out_dir / TOKENIZER_DIR
    copy.mkdir(exist_ok=True)
    for name, content in copy_files.items():
        write_atomic(copy / name, content)
    # Workers read the copy: a converted slow tokenizer has no tokenizer.json of its own.
    # Loaded once here, before the fork, so forked workers start with it loaded.
    encoder = _encoder(str(copy / "tokenizer.json"), tokenizer_sha, layout.format)
    writers = {s: _SplitWriter(out_dir, s, dtype, config.shard_tokens) for s in SPLITS}
    settings = _Settings(
        str(copy / "tokenizer.json"),
        tokenizer_sha,
        str(source),
        config.seed,
        config.metadata_probability,
        dtype.name,
        layout,
        tuple((str(p), data_hashes[p.name]) for p in files) if by_repository else (),
    )
    skipped = [0]
    if index is not None:
        repo_batches = index.batches(config.batch_records, valid)
        del index
        tasks = len(repo_batches)
        jobs: Iterator[tuple[_Settings, Any]] = ((settings, b) for b in repo_batches)
    else:
        batches = _batches(files, config.batch_records, valid, skipped)
        jobs = ((settings, batch) for batch in batches)
        tasks = -(-total_records // config.batch_records)
    clock = time.time()
    bar = StageProgress("pack", total_records, "records", progress)
    try:
        with LocalExecutor(min(workers, tasks)) as pool, bar:
            # Results arrive as batches finish; they are written in batch order.
            waiting: dict[int, _Encoded] = {}
            following = 0
            for result in pool.map_unordered(_encode_batch, jobs):
                waiting[result.index] = result
                while following in waiting:
                    done = waiting.pop(following)
                    following += 1
                    for split, part in done.parts.items():
                        writers[split].write(*part)
                    skipped[0] += done.skipped
                    bar.advance(done.records, records=done.records, tokens=done.tokens)
    finally:
        ROW_GROUPS.clear()  # the last row groups read: no use after this pack
    timings["encode_s"] = time.time() - clock

    splits = {s: w.finish() for s, w in writers.items()}
    splits = {s: entry for s, entry in splits.items() if entry["documents"]}
    if not splits:
        raise UserError(f"{data} holds no records with content: nothing to pack")
    meta = {
        "format_version": FORMAT_VERSION,
        "dtype": dtype.name,
        "vocab_size": vocab_size,
        "tokenizer_sha256": tokenizer_sha,
        "special_ids": encoder.special,
        "tokenizer": {
            "dir": TOKENIZER_DIR,
            "fingerprint": tokenizer_fingerprint(loaded),
            "source": str(source),
        },
        "format": layout.to_dict(),
        "splits": splits,
        "skipped_records": skipped[0],
        "config": config.to_dict(),
    }
    write_json(out_dir / "meta.json", meta)
    timings["total_s"] = time.time() - started
    tokens = sum(s["tokens"] for s in splits.values())
    tokenizer_file = source / "tokenizer.json" if source.is_dir() else source
    write_manifest(
        out_dir,
        "pack",
        request=request,
        config=config.to_dict(),
        inputs={
            "data": {"path": str(data), "shards": data_hashes},
            "tokenizer": {
                "path": str(tokenizer_file if tokenizer_file.exists() else source),
                "sha256": tokenizer_sha,
            },
        },
        outputs={
            "meta": "meta.json",
            "tokenizer": TOKENIZER_DIR,
            "shards": [n for s in splits.values() for n in s["shards"]],
        },
        workers=workers,
        versions=package_versions("tokenizers", "numpy", "pyarrow"),
        timings={k: round(v, 3) for k, v in timings.items()},
        tokens_per_s=round(tokens / max(timings["encode_s"], 1e-9)),
    )
    return PackResult(out_dir, meta)
