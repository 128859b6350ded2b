"""The pack stage: curated shards + a tokenizer -> train/valid token shards (`format.py`).

The tokenizer's special tokens decide the layout (codekiln.tokenizer.family), or the `format`
setting does. StarCoder's (`starcoder`) makes every curated record one document:

    [<reponame>REPO][<filename>PATH][<gh_stars>BUCKET]["\\n" if any of them]CONTENT<|endoftext|>

Each metadata field is kept on its own with `metadata_probability`, drawn from a hash of
(seed, record id), so a record's document depends neither on the number of workers nor on the
order records are read in. `plain` is CONTENT<eos>. StarCoder2's (`starcoder2`) makes every
repository one document, its files in a seeded random order (see `repository_documents`):

    <repo_name>REPO<file_sep>PATH\\nCODE<file_sep>PATH\\nCODE...<|endoftext|>   (with metadata)
    <file_sep>CODE<file_sep>CODE...<|endoftext|>                             (without)

with some files in Fill-in-the-Middle form, and a repository longer than `context_length`
tokens split at file boundaries.

The text pieces are encoded with special-token matching off: a file that contains the text
"<|endoftext|>" gets the ids of that text, never the end-of-text id, so no file can fake a
document boundary or a FIM sentinel. The special ids are put in by pack.

A record goes to `valid` or `train` by a seeded hash of its repository, so no repository is in
both. Workers encode fixed batches in input order (shard files by name, rows in order; for
starcoder2, whole repositories in order of their first record, located by a first pass over
the `repo` column); the main process appends each batch's tokens in batch order, so the bytes
written do not depend on the number of workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
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
from codekiln.pack.fim import fim_cut_points
from codekiln.pack.format import FORMAT_VERSION, SPLITS, dtype_for, read_meta, shard_names
from codekiln.progress import StageProgress
from codekiln.shards import curated_shards
from codekiln.tokenizer.family import (
    FAMILIES,
    TOKENIZER_FILES,
    DocumentFormat,
    FimTokens,
    detect_format,
    load_any_tokenizer,
    model_context_length,
    special_token_ids,
    tokenizer_files,
    tokenizer_fingerprint,
)
from codekiln.tokenizer.special import (
    EOS,
    FILE_SEP,
    FILENAME,
    GH_STARS,
    REPO_NAME,
    REPONAME,
)

# The columns of a curated record (curate/pipeline.py RECORD_SCHEMA) that packing reads.
COLUMNS = ("id", "content", "repo", "path", "lang", "stars")

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


@dataclass(frozen=True)
class Layout:
    """How documents are laid out for one tokenizer and config: what meta.json's `format`
    records. `fim` is "context" (the loader does FIM while training), "file" (pack did it,
    StarCoder2) or "none" (no FIM tokens); `fim_rate` is pack's own share of FIM files."""

    format: DocumentFormat
    fim: str
    fim_rate: float
    repo_metadata_probability: float | None
    context_length: int | None

    def to_dict(self) -> dict[str, Any]:
        tokens = self.format.fim
        return {
            "family": self.format.family,
            "eos": self.format.eos,
            "fim": self.fim,
            "fim_tokens": tokens.to_dict() if tokens is not None else None,
            "fim_rate": self.fim_rate,
            "repo_metadata_probability": self.repo_metadata_probability,
            "context_length": self.context_length,
        }


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


def repository_has_metadata(repo: str, seed: int, probability: float) -> bool:
    """Whether a StarCoder2 repository document carries <repo_name> and the paths: drawn with
    `probability` from a hash of (seed, repository), so every split piece of it agrees. A
    record without a repository never does.

    >>> repository_has_metadata("octo/demo", 42, 1.0), repository_has_metadata("", 42, 1.0)
    (True, False)
    """
    return bool(repo) and _uniforms(f"repo-meta\0{seed}\0{repo}", 1)[0] < probability


def repository_order(file_ids: list[str | None], repo: str, seed: int) -> list[int]:
    """The order of a repository's files in its document, as positions into `file_ids`: by
    a seeded hash of (repository, file id), so the order is random but depends neither on
    the order the files were read in nor on the workers. Equal ids keep their input order.

    >>> repository_order(["1", "2", "3", "4"], "octo/demo", 42)
    [2, 1, 0, 3]
    """
    keys = [_uniforms(f"order\0{seed}\0{repo}\0{i or ''}", 1)[0] for i in file_ids]
    return sorted(range(len(file_ids)), key=lambda k: (keys[k], k))


def file_fim_cuts(file_id: str | None, length: int, seed: int, rate: float):
    """The two cut points (characters) of a file put in FIM form while packing, or None for a
    file left as it is. The file is drawn with `rate` from a hash of (seed, file id); the cut
    points are `fim.fim_cut_points` (uniform over 0..length) from an rng seeded the same way.

    >>> file_fim_cuts("beef", 10, 42, 1.0), file_fim_cuts("beef", 10, 42, 0.0)
    ((1, 9), None)
    """
    if not _uniforms(f"fim\0{seed}\0{file_id or ''}", 1)[0] < rate:
        return None
    digest = hashlib.sha256(f"fim-cuts\0{seed}\0{file_id or ''}".encode("utf-8", "surrogatepass"))
    rng = np.random.default_rng(int.from_bytes(digest.digest()[:16], "big"))
    return fim_cut_points(length, rng)


def file_fields(
    path: str, content: str, metadata: bool, cuts: tuple[int, int] | None, fim: FimTokens | None
) -> list[tuple[str, str]]:
    """One file of a StarCoder2 repository document as (special token, text) pairs: each
    special token is followed by its text. With metadata the path and a newline come first;
    a file with cut points is in FIM form (PSM), the path going with the prefix.

    >>> fim = FimTokens("<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>")
    >>> file_fields("a.py", "x = 1\\n", True, None, fim)
    [('<file_sep>', 'a.py\\nx = 1\\n')]
    >>> file_fields("a.py", "x = 1\\n", False, (2, 4), fim)
    [('<file_sep>', ''), ('<fim_prefix>', 'x '), ('<fim_suffix>', '1\\n'), ('<fim_middle>', '= ')]
    """
    head = f"{path}\n" if metadata else ""
    if cuts is None:
        return [(FILE_SEP, head + content)]
    assert fim is not None, "cut points without FIM tokens"
    lo, hi = cuts
    return [
        (FILE_SEP, ""),
        (fim.prefix, head + content[:lo]),
        (fim.suffix, content[hi:]),
        (fim.middle, content[lo:hi]),
    ]


def repository_fields(
    repo: str, records: list[Mapping[str, Any]], seed: int, layout: Layout
) -> tuple[list[tuple[str, str]], list[tuple[int, list[tuple[str, str]]]]]:
    """A StarCoder2 repository document before encoding: the header's (special token, text)
    pairs (<repo_name> and the name, where the repository has metadata) and, in document
    order, (position in `records`, the file's pairs). Each record needs id, path, content.

    >>> layout = Layout(DocumentFormat("starcoder2", EOS, None), "none", 0.0, 1.0, 4096)
    >>> files = [{"id": i, "path": f"{i}.py", "content": i * 2} for i in "12"]
    >>> header, ordered = repository_fields("octo/demo", files, 42, layout)
    >>> header
    [('<repo_name>', 'octo/demo')]
    >>> ordered
    [(1, [('<file_sep>', '2.py\\n22')]), (0, [('<file_sep>', '1.py\\n11')])]
    """
    metadata = repository_has_metadata(repo, seed, layout.repo_metadata_probability or 0.0)
    header = [(REPO_NAME, repo)] if metadata else []
    fim = layout.format.fim
    files = []
    for position in repository_order([r.get("id") for r in records], repo, seed):
        record = records[position]
        content = record.get("content") or ""
        cuts = file_fim_cuts(record.get("id"), len(content), seed, layout.fim_rate)
        path = record.get("path") or ""
        files.append((position, file_fields(path, content, metadata, cuts, fim)))
    return header, files


def repository_documents(file_tokens: list[int], header: int, context_length: int) -> list:
    """A repository's files (their token counts, in document order) grouped into documents
    of at most `context_length` tokens, each the header, its files and the eos: greedily, in
    order, splitting only between files; a file too long for a document with no other file
    is a document of its own.

    >>> repository_documents([3, 4, 5, 20], header=2, context_length=12)
    [[0, 1], [2], [3]]
    """
    documents: list[list[int]] = [[]]
    size = header + 1
    for k, tokens in enumerate(file_tokens):
        if documents[-1] and size + tokens > context_length:
            documents.append([])
            size = header + 1
        documents[-1].append(k)
        size += tokens
    return documents


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
class _RepoBatch:
    """Whole repositories, as the locations of their records (starcoder2)."""

    index: int
    where: np.ndarray  # (3, n): shard, row group and row of each record
    keys: np.ndarray  # (n,): the record's repository; one repository's records are adjacent
    valid: np.ndarray  # (n,) bool


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


def _encode_batch(job: tuple[_Settings, _Batch | _RepoBatch]) -> _Encoded:
    """Worker side: one batch -> per split, its documents' ids back to back."""
    settings, batch = job
    if isinstance(batch, _RepoBatch):
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


class _RowGroups:
    """The row groups a process read last, up to `budget` bytes, and its open shards.

    A repository's records are usually together (curate writes a source's files in order),
    so consecutive batches mostly need the same row groups; where repositories are spread
    over the shards, a batch needs many, and keeping them saves reading them again for the
    next batch. Open shards keep their parsed footers. The sha256 in each key makes a
    rewritten shard a miss."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._tables: OrderedDict[tuple[str, str, int], pa.Table] = OrderedDict()
        self._files: OrderedDict[tuple[str, str], pq.ParquetFile] = OrderedDict()
        self._bytes = 0

    def get(self, path: str, sha256: str, group: int) -> pa.Table:
        key = (path, sha256, group)
        table = self._tables.get(key)
        if table is not None:
            self._tables.move_to_end(key)
            return table
        table = self._file(path, sha256).read_row_group(group, columns=list(COLUMNS))
        self._tables[key] = table
        self._bytes += table.nbytes
        while self._bytes > self.budget and len(self._tables) > 1:
            self._bytes -= self._tables.popitem(last=False)[1].nbytes
        return table

    def _file(self, path: str, sha256: str) -> pq.ParquetFile:
        key = (path, sha256)
        if key not in self._files:
            self._files[key] = pq.ParquetFile(path)
            if len(self._files) > 64:  # open files are few: a batch touches a handful
                self._files.popitem(last=False)[1].close()
        self._files.move_to_end(key)
        return self._files[key]

    def clear(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._tables.clear()
        self._files.clear()
        self._bytes = 0


_ROW_GROUPS = _RowGroups(budget=256 << 20)  # per process: each worker has its own


def _read_rows(shards: tuple[tuple[str, str], ...], where: np.ndarray) -> dict[str, list]:
    """COLUMNS -> one value per located record, in the order of `where`, reading only the
    row groups that hold them."""
    columns: dict[str, list[Any]] = {name: [None] * where.shape[1] for name in COLUMNS}
    groups = where[0].astype(np.int64) << 32 | where[1].astype(np.int64)
    for key in dict.fromkeys(groups.tolist()):
        positions = np.flatnonzero(groups == key)
        shard, group = key >> 32, key & 0xFFFFFFFF
        table = _ROW_GROUPS.get(*shards[shard], group).take(where[2, positions])
        for name in COLUMNS:
            values = columns[name]
            found = table.column(name).to_pylist()
            for position, value in zip(positions.tolist(), found, strict=True):
                values[position] = value
    return columns


def _encode_repositories(settings: _Settings, batch: _RepoBatch) -> _Encoded:
    """Worker side, starcoder2: whole repositories -> their documents' ids, per split."""
    layout = settings.layout
    encoder = _encoder(settings.tokenizer_file, settings.tokenizer_sha256, layout.format)
    columns = _read_rows(settings.shards, batch.where)
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


def _repositories(files: list[Path]) -> set[str]:
    repos: set[str] = set()
    for path in files:
        column = pq.read_table(path, columns=["repo"])["repo"]
        repos.update(r or "" for r in pc.unique(column).to_pylist())
    return repos


@dataclass
class _RepoIndex:
    """Where every record is, and its repository, without the records (starcoder2)."""

    where: np.ndarray  # (3, n) int32: shard, row group, row
    keys: np.ndarray  # (n,) int64: the input position of the repository's first record
    codes: np.ndarray  # (n,) int32: the repository's name, as a position in `names`
    names: list[str]  # "" for records without a repository

    def batches(self, batch_records: int, valid: set[str]) -> list[_RepoBatch]:
        """Batches of whole repositories, in order of their first record, of at least
        `batch_records` records (but the last); a repository is never split. Sorting by
        the first record's position groups a repository's records wherever they are."""
        order = np.argsort(self.keys, kind="stable")
        keys = self.keys[order]
        flags = np.array([name in valid for name in self.names], dtype=bool)[self.codes[order]]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]).tolist()
        bounds = [0]
        for end in [*starts[1:], len(keys)]:
            if end - bounds[-1] >= batch_records or end == len(keys):
                bounds.append(end)
        return [
            _RepoBatch(i, self.where[:, order[a:b]], keys[a:b], flags[a:b])
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
        ]


def _index_repositories(files: list[Path]) -> _RepoIndex:
    """One pass over the `repo` column, a row group at a time. A record without a
    repository is a repository of its own (keyed by its own position)."""
    first_seen: dict[str, int] = {}
    code_of: dict[str, int] = {}
    where, keys, codes = [], [], []
    offset = 0
    for file_index, path in enumerate(files):
        shard = pq.ParquetFile(path)
        try:
            for group in range(shard.num_row_groups):
                column = shard.read_row_group(group, columns=["repo"]).column("repo")
                count = len(column)
                if not count:
                    continue
                encoded = pc.dictionary_encode(pc.fill_null(column.combine_chunks(), ""))
                indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
                values = encoded.dictionary.to_pylist()
                # Every dictionary value occurs, so np.unique's k-th first index is value k's.
                first = np.unique(indices, return_index=True)[1]
                value_keys = [
                    first_seen.setdefault(value, offset + int(position))
                    for value, position in zip(values, first, strict=True)
                ]
                row_keys = np.array(value_keys, dtype=np.int64)[indices]
                if "" in values:
                    alone = np.flatnonzero(indices == values.index(""))
                    row_keys[alone] = offset + alone
                value_codes = [code_of.setdefault(v, len(code_of)) for v in values]
                codes.append(np.array(value_codes, dtype=np.int32)[indices])
                keys.append(row_keys)
                rows = np.arange(count, dtype=np.int32)
                where.append(
                    np.stack(
                        [
                            np.full(count, file_index, np.int32),
                            np.full(count, group, np.int32),
                            rows,
                        ]
                    )
                )
                offset += count
        finally:
            shard.close()
    return _RepoIndex(
        np.concatenate(where, axis=1) if where else np.zeros((3, 0), np.int32),
        np.concatenate(keys) if keys else np.zeros(0, np.int64),
        np.concatenate(codes) if codes else np.zeros(0, np.int32),
        list(code_of),
    )


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
    index = _index_repositories(files) if by_repository else None
    repos = set(index.names) if index is not None else _repositories(files)
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
        _ROW_GROUPS.clear()  # the last row groups read: no use after this pack
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
