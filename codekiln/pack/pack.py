"""The pack stage: curated shards + a tokenizer -> train/valid token shards (`format.py`).

Every curated record becomes one document, as StarCoder was trained:

    [<reponame>REPO][<filename>PATH][<gh_stars>BUCKET]["\\n" if any of them]CONTENT<|endoftext|>

Each metadata field is kept on its own with `metadata_probability`, drawn from a hash of
(seed, record id), so a record's document depends neither on the number of workers nor on the
order records are read in. The text pieces are encoded with special-token matching off: a file
that contains the text "<|endoftext|>" gets the ids of that text, never the end-of-text id, so
no file can fake a document boundary or a FIM sentinel. The special ids are put in by pack.

A record goes to `valid` or `train` by a seeded hash of its repository, so no repository is in
both. Workers encode fixed batches of records in input order (shard files by name, rows in
order); the main process appends each batch's tokens in batch order, so the bytes written do
not depend on the number of workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
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
    write_json,
    write_manifest,
)
from codekiln.pack.format import FORMAT_VERSION, SPLITS, dtype_for, read_meta, shard_names
from codekiln.progress import StageProgress
from codekiln.shards import curated_shards
from codekiln.tokenizer.special import (
    EOS,
    FILENAME,
    GH_STARS,
    REPONAME,
    load_tokenizer,
    special_ids,
)

# The columns of a curated record (curate/pipeline.py RECORD_SCHEMA) that packing reads.
COLUMNS = ("id", "content", "repo", "path", "lang", "stars")

_PARALLELISM = "TOKENIZERS_PARALLELISM"


@dataclass
class PackConfig:
    """How curated records become token shards.

    >>> PackConfig(valid_fraction=0).valid_fraction
    0.0
    """

    valid_fraction: float = 0.01  # share of repositories in the validation split
    metadata_probability: float = 0.2  # each of <reponame>, <filename>, <gh_stars> on its own
    seed: int = 42
    shard_tokens: int = 500_000_000  # tokens per .bin shard before a new one starts
    batch_records: int = 256  # records per encode batch: the unit of parallel work

    def __post_init__(self) -> None:
        for name in ("valid_fraction", "metadata_probability"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"pack config: {name} must be a number, got {value!r}")
            # 0 and 0.0 are one setting: a float keeps the saved config (and its hash) the same.
            setattr(self, name, float(value))
        if not 0.0 <= self.valid_fraction < 1.0:
            raise UserError(
                f"pack config: valid_fraction is a share of repositories in [0, 1) "
                f"(e.g. 0.01; 0 for no validation split), got {self.valid_fraction}"
            )
        if not 0.0 <= self.metadata_probability <= 1.0:
            raise UserError(
                f"pack config: metadata_probability must be in [0, 1] (StarCoder: 0.2), "
                f"got {self.metadata_probability}"
            )
        for name in ("seed", "shard_tokens", "batch_records"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise UserError(f"pack config: {name} must be a whole number, got {value!r}")
        if self.seed < 0:
            raise UserError(f"pack config: seed must be 0 or more, got {self.seed}")
        for name in ("shard_tokens", "batch_records"):
            if getattr(self, name) <= 0:
                raise UserError(f"pack config: {name} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PackResult:
    out_dir: Path
    meta: dict[str, Any]
    skipped: bool = False


def star_bucket(stars: int | None) -> str:
    """The text after <gh_stars>: a repository's star count in StarCoder's buckets.

    None or less than 1 -> "0"; 1-9 -> "1-10"; 10-99 -> "10-100"; 100-999 -> "100-1000";
    1000 or more -> "1000+". Each bucket includes its lower bound and excludes its upper one.

    >>> [star_bucket(s) for s in (None, 0, 1, 9, 10, 99, 100, 999, 1000)]
    ['0', '0', '1-10', '1-10', '10-100', '10-100', '100-1000', '100-1000', '1000+']
    """
    if stars is None or stars < 1:
        return "0"
    if stars < 10:
        return "1-10"
    if stars < 100:
        return "10-100"
    if stars < 1000:
        return "100-1000"
    return "1000+"


def _uniforms(key: str, count: int) -> list[float]:
    """`count` (at most 4) numbers in [0, 1) from SHA-256 of `key`, 64 bits each: the same on
    every machine and Python version, unlike hash() or a process-seeded RNG."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return [int.from_bytes(digest[8 * i : 8 * i + 8], "big") / 2**64 for i in range(count)]


def repo_hash(repo: str, seed: int) -> float:
    """The repository's place in [0, 1) that decides its split.

    >>> round(repo_hash("octo/demo", 42), 6)
    0.260829
    """
    return _uniforms(f"split\0{seed}\0{repo}", 1)[0]


def split_of(repo: str, seed: int, valid_fraction: float) -> str:
    """A repository's split: "valid" when its seeded hash is below `valid_fraction`.

    >>> split_of("octo/demo", 42, 0.01), split_of("octo/demo", 42, 0.5)
    ('train', 'valid')
    """
    return "valid" if repo_hash(repo, seed) < valid_fraction else "train"


def valid_repositories(repos: Iterable[str], seed: int, valid_fraction: float) -> set[str]:
    """The repositories of the validation split: those `split_of` puts there, with two fixes
    for small corpora. If it puts none of two or more repositories there, the one with the
    smallest hash goes (the first to enter as the fraction grows), so a tiny corpus still has a
    validation split; if it puts all of them there, the one with the largest hash stays in
    train. valid_fraction 0 means no validation split at all.

    >>> sorted(valid_repositories(["a", "b", "c"], 42, 0.01))  # none by hash: the smallest
    ['a']
    >>> valid_repositories(["a"], 42, 0.01), valid_repositories(["a", "b"], 42, 0.0)
    (set(), set())
    """
    if valid_fraction <= 0:
        return set()
    ranked = sorted((repo_hash(r, seed), r) for r in set(repos))
    valid = {r for h, r in ranked if h < valid_fraction}
    if not valid and len(ranked) >= 2:
        valid = {ranked[0][1]}
    if ranked and len(valid) == len(ranked):
        valid.discard(ranked[-1][1])
    return valid


def metadata_prefix(
    record: Mapping[str, Any], seed: int, probability: float
) -> list[tuple[str, str]]:
    """The (special token, text) fields that go before a record's content, in StarCoder's
    order. Each of <reponame>, <filename>, <gh_stars> is kept with `probability`, by its own
    64 bits of SHA-256 of (seed, record id): a record always gets the same prefix. A field
    whose value is missing (no repo or path) is left out.

    >>> record = {"id": "f00d", "repo": "octo/demo", "path": "src/app.py", "stars": 42}
    >>> metadata_prefix(record, seed=42, probability=1.0)
    [('<reponame>', 'octo/demo'), ('<filename>', 'src/app.py'), ('<gh_stars>', '10-100')]
    >>> metadata_prefix(record, seed=42, probability=0.0)
    []
    """
    draws = _uniforms(f"meta\0{seed}\0{record.get('id') or ''}", 3)
    values = (record.get("repo"), record.get("path"), star_bucket(record.get("stars")))
    return [
        (token, value)
        for token, value, draw in zip((REPONAME, FILENAME, GH_STARS), values, draws, strict=True)
        if value and draw < probability
    ]


def document_text(record: Mapping[str, Any], seed: int, probability: float) -> str:
    """The text a record's document decodes to (special tokens kept).

    >>> record = {"id": "f00d", "repo": "octo/demo", "path": "a.py", "stars": 0, "content": "x"}
    >>> document_text(record, 42, 1.0)
    '<reponame>octo/demo<filename>a.py<gh_stars>0\\nx<|endoftext|>'
    """
    fields = metadata_prefix(record, seed, probability)
    prefix = "".join(token + text for token, text in fields) + ("\n" if fields else "")
    return prefix + (record.get("content") or "") + EOS


@dataclass(frozen=True)
class _Settings:
    """What a worker needs besides its records (small: sent with every batch)."""

    tokenizer_file: str
    tokenizer_sha256: str
    seed: int
    metadata_probability: float
    dtype: str


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
    parts: dict[str, tuple[np.ndarray, np.ndarray, list[str]]]  # split -> ids, lengths, langs


class _Encoder:
    """A tokenizer that encodes plain text, with the special ids pack puts in itself."""

    def __init__(self, tokenizer_file: str) -> None:
        tokenizer = load_tokenizer(tokenizer_file)
        # Special-token text inside a file is text: match no special token while encoding.
        tokenizer.encode_special_tokens = True
        self.tokenizer = tokenizer
        self.special = special_ids(tokenizer)
        self.vocab_size = vocab_size_of(tokenizer)
        self.is_special = np.zeros(self.vocab_size, dtype=bool)
        self.is_special[list(self.special.values())] = True


@lru_cache(maxsize=2)
def _encoder(tokenizer_file: str, sha256: str) -> _Encoder:
    """One encoder per process and tokenizer; the hash in the key makes a changed file a miss.
    The main process loads it before forking, so forked workers start with it loaded."""
    return _Encoder(tokenizer_file)


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


def _encode_batch(job: tuple[_Settings, _Batch]) -> _Encoded:
    """Worker side: one batch of records -> per split, their documents' ids back to back."""
    settings, batch = job
    encoder = _encoder(settings.tokenizer_file, settings.tokenizer_sha256)
    special = encoder.special
    eos = special[EOS]
    texts: list[str] = []  # every plain piece of every record, encoded in one call
    plans: list[list[int]] = []  # per record: special ids, and -1 where the next piece goes
    columns = batch.columns
    for i, content in enumerate(columns["content"]):
        record = {name: columns[name][i] for name in ("id", "repo", "path", "stars")}
        plan: list[int] = []
        fields = metadata_prefix(record, settings.seed, settings.metadata_probability)
        for token, text in fields:
            plan += [special[token], -1]
            texts.append(text)
        if fields:
            plan.append(-1)
            texts.append("\n")
        plan += [-1, eos]
        texts.append(content)
        plans.append(plan)
    with _serial_tokenizers():
        # encode_batch_fast: the same ids as encode(), without the offsets pack never reads.
        encode = encoder.tokenizer.encode_batch_fast
        encoded = _on_own_thread(encode, texts, add_special_tokens=False)
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
            parts[split] = (array, np.array(lengths[valid], dtype=np.int64), langs[valid])
    if found != inserted:
        raise UserError(
            f"tokenizer {settings.tokenizer_file} turns plain text into special-token ids; "
            "its pre-tokenizer must split text such as '<|endoftext|>' (a byte-level BPE "
            "from `codekiln tokenizer train` does)"
        )
    total = sum(len(part[0]) for part in parts.values())
    return _Encoded(batch.index, len(plans), total, parts)


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

    def write(self, ids: np.ndarray, lengths: np.ndarray, langs: list[str]) -> None:
        for lang, length in zip(langs, lengths.tolist(), strict=True):
            entry = self.languages.setdefault(lang, {"tokens": 0, "documents": 0})
            entry["tokens"] += length
            entry["documents"] += 1
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


def _repositories(files: list[Path]) -> set[str]:
    repos: set[str] = set()
    for path in files:
        column = pq.read_table(path, columns=["repo"])["repo"]
        repos.update(r or "" for r in pc.unique(column).to_pylist())
    return repos


def _clear_outputs(out_dir: Path) -> None:
    """Remove what an earlier pack wrote here (and nothing else)."""
    for split in SPLITS:
        for pattern in (f"{split}-*.bin", f"{split}-*.idx", f"{split}-*.tmp"):
            for path in out_dir.glob(pattern):
                path.unlink()
    (out_dir / "meta.json").unlink(missing_ok=True)


def pack(
    data: str | Path,
    tokenizer: str | Path,
    out_dir: str | Path,
    config: PackConfig | None = None,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
) -> PackResult:
    """Tokenize the curated shards in `data` into train/valid token shards in `out_dir`.

    Re-running with the same data, tokenizer and config does nothing (`skipped`); other inputs
    or settings need `force`. The output is the same, byte for byte, for any `workers`.
    """
    config = config or PackConfig()
    out_dir = Path(out_dir)
    started = time.time()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output path {out_dir} exists and is not a directory; choose another")
    files = data_files(data)
    if out_dir.resolve() == Path(data).resolve():
        raise UserError("pack needs its own output directory, not the curated data folder")
    tokenizer_path = Path(tokenizer)
    tokenizer_file = (
        tokenizer_path / "tokenizer.json" if tokenizer_path.is_dir() else tokenizer_path
    )
    if not tokenizer_file.is_file():
        load_tokenizer(tokenizer_path)  # the UserError says where a tokenizer comes from
    tokenizer_sha = file_sha256(tokenizer_file)
    # Loading checks the special tokens packing and FIM need (a UserError names the missing
    # ones); it happens once per process, before the fork, so workers start with it loaded.
    encoder = _encoder(str(tokenizer_file), tokenizer_sha)
    data_hashes = {p.name: file_sha256(p) for p in files}
    request = fingerprint(
        {
            "format_version": FORMAT_VERSION,
            "config": config.to_dict(),
            "data": data_hashes,
            "tokenizer": tokenizer_sha,
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
    total_records = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    if total_records == 0:
        raise UserError(
            f"{data} holds no records: curate some sources into it first (`codekiln curate`)"
        )

    vocab_size = encoder.vocab_size
    if vocab_size > 1 << 32:
        raise UserError(f"tokenizer {tokenizer_path} has {vocab_size:,} ids: more than uint32")
    dtype = dtype_for(vocab_size)
    timings = {"prepare_s": time.time() - started}

    clock = time.time()
    valid = valid_repositories(_repositories(files), config.seed, config.valid_fraction)
    timings["split_s"] = time.time() - clock

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # no manifest: not finished
    _clear_outputs(out_dir)
    writers = {s: _SplitWriter(out_dir, s, dtype, config.shard_tokens) for s in SPLITS}
    settings = _Settings(
        str(tokenizer_file), tokenizer_sha, config.seed, config.metadata_probability, dtype.name
    )
    skipped = [0]
    jobs = ((settings, batch) for batch in _batches(files, config.batch_records, valid, skipped))
    tasks = -(-total_records // config.batch_records)
    clock = time.time()
    bar = StageProgress("pack", total_records, "records", progress)
    with LocalExecutor(min(workers, tasks)) as pool, bar:
        # Results arrive as batches finish; they are written in batch order.
        waiting: dict[int, _Encoded] = {}
        following = 0
        for result in pool.map_unordered(_encode_batch, jobs):
            waiting[result.index] = result
            while following in waiting:
                done = waiting.pop(following)
                following += 1
                for split, (ids, lengths, langs) in done.parts.items():
                    writers[split].write(ids, lengths, langs)
                bar.advance(done.records, records=done.records, tokens=done.tokens)
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
        "splits": splits,
        "skipped_records": skipped[0],
        "config": config.to_dict(),
    }
    write_json(out_dir / "meta.json", meta)
    timings["total_s"] = time.time() - started
    tokens = sum(s["tokens"] for s in splits.values())
    write_manifest(
        out_dir,
        "pack",
        request=request,
        config=config.to_dict(),
        inputs={
            "data": {"path": str(data), "shards": data_hashes},
            "tokenizer": {"path": str(tokenizer_file), "sha256": tokenizer_sha},
        },
        outputs={
            "meta": "meta.json",
            "shards": [n for s in splits.values() for n in s["shards"]],
        },
        workers=workers,
        versions=package_versions("tokenizers", "numpy", "pyarrow"),
        timings={k: round(v, 3) for k, v in timings.items()},
        tokens_per_s=round(tokens / max(timings["encode_s"], 1e-9)),
    )
    return PackResult(out_dir, meta)
