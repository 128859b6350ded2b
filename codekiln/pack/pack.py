"""The pack stage: curated shards + a tokenizer -> train/valid token shards (`format.py`).

The tokenizer's special tokens decide the layout (codekiln.tokenizer.family), or the `format`
setting does (`config.py`: `PackConfig`, `resolve_layout`). What a document is in each layout,
and which split a repository goes to, is `documents.py`; workers encode those documents
(`encode.py`) and this module writes them (`writer.py`).

Workers encode fixed batches in input order (shard files by name, rows in order; for
starcoder2, whole repositories in order of their first record, located by a first pass over
the `repo` column: `repositories.py`); the main process appends each batch's tokens in batch
order (`SplitWriter`), so the bytes written do not depend on the number of workers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from codekiln.errors import UserError
from codekiln.executor import LocalExecutor
from codekiln.manifest import (
    begin_stage,
    file_sha256,
    fingerprint,
    package_versions,
    read_manifest,
    tmp_path,
    write_atomic,
    write_json,
    write_manifest,
)
from codekiln.pack.config import DEFAULT_CONTEXT_LENGTH, PackConfig, resolve_layout
from codekiln.pack.documents import valid_repositories
from codekiln.pack.encode import (
    Encoded,
    EncodeSettings,
    RecordBatch,
    encode_batch,
    encoder_for,
    vocab_size_of,
)
from codekiln.pack.format import FORMAT_VERSION, SPLITS, dtype_for, read_meta
from codekiln.pack.repositories import COLUMNS, ROW_GROUPS, index_repositories, repository_names
from codekiln.pack.writer import SplitWriter
from codekiln.progress import StageProgress
from codekiln.shards import curated_shards
from codekiln.tokenizer.family import (
    TOKENIZER_FILES,
    load_any_tokenizer,
    tokenizer_files,
    tokenizer_fingerprint,
)

__all__ = [
    "DEFAULT_CONTEXT_LENGTH",
    "TOKENIZER_DIR",
    "PackConfig",
    "PackResult",
    "data_files",
    "pack",
    "resolve_layout",
    "vocab_size_of",
]

TOKENIZER_DIR = "tokenizer"  # the pack's copy of its tokenizer


@dataclass
class PackResult:
    out_dir: Path
    meta: dict[str, Any]
    skipped: bool = False


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
) -> Iterator[RecordBatch]:
    """Fixed batches of records in input order (files by name, rows in order), read lazily.
    Records without content are left out and counted in skipped[0]."""
    buffer: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    index = 0

    def take(count: int) -> RecordBatch:
        nonlocal index
        columns = {name: values[:count] for name, values in buffer.items()}
        for values in buffer.values():
            del values[:count]
        flags = [(repo or "") in valid for repo in columns["repo"]]
        index += 1
        return RecordBatch(index - 1, columns, flags)

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
        for path in (copy / name, tmp_path(copy / name)):
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
    files = data_files(data)
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
    # Every input check before the gate, which clears the manifest of a run it will redo.
    _check_copy_place(out_dir)
    total_records = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    if total_records == 0:
        raise UserError(
            f"{data} holds no records: curate some sources into it first (`codekiln curate`)"
        )
    if vocab_size > 1 << 32:
        raise UserError(f"tokenizer {source} has {vocab_size:,} ids: more than uint32")
    holds = "a finished pack of other data, tokenizer or settings"
    if begin_stage(out_dir, "pack", request, force, holds, inputs=(Path(data),)) is not None:
        return PackResult(out_dir, read_meta(out_dir), skipped=True)
    dtype = dtype_for(vocab_size)
    timings = {"prepare_s": time.time() - started}

    clock = time.time()
    by_repository = layout.format.family == "starcoder2"
    index = index_repositories(files) if by_repository else None
    repos = set(index.names) if index is not None else repository_names(files)
    valid = valid_repositories(repos, config.seed, config.valid_fraction)
    timings["split_s"] = time.time() - clock

    _clear_outputs(out_dir)
    copy = out_dir / TOKENIZER_DIR
    copy.mkdir(exist_ok=True)
    for name, content in copy_files.items():
        write_atomic(copy / name, content)
    # Workers read the copy: a converted slow tokenizer has no tokenizer.json of its own.
    # Loaded once here, before the fork, so forked workers start with it loaded.
    encoder = encoder_for(str(copy / "tokenizer.json"), tokenizer_sha, layout.format)
    writers = {s: SplitWriter(out_dir, s, dtype, config.shard_tokens) for s in SPLITS}
    settings = EncodeSettings(
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
        jobs: Iterator[tuple[EncodeSettings, Any]] = ((settings, b) for b in repo_batches)
    else:
        batches = _batches(files, config.batch_records, valid, skipped)
        jobs = ((settings, batch) for batch in batches)
        tasks = -(-total_records // config.batch_records)
    clock = time.time()
    bar = StageProgress("pack", total_records, "records", progress)
    try:
        with LocalExecutor(min(workers, tasks)) as pool, bar:
            # Results arrive as batches finish; they are written in batch order.
            waiting: dict[int, Encoded] = {}
            following = 0
            for result in pool.map_unordered(encode_batch, jobs):
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
