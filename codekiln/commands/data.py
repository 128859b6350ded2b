"""The data commands: curate, data lookup, tokenizer train, pack, attribution build/query."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from codekiln.commands import common
from codekiln.commands.common import (
    ConfigFile,
    Executor,
    Quiet,
    RayAddress,
    Sets,
    Workers,
    default_workers,
    stage_config,
)
from codekiln.errors import UserError


def curate_config(
    config: Path | None,
    sets: list[str] | None,
    languages: str | None = None,
    max_file_bytes: int | None = None,
    licenses: str | None = None,
    opt_out: Path | None = None,
    benchmarks: list[Path] | None = None,
    commits: bool = False,
):
    """The curate config from a file, --set items and curate's flags (`run` gives none)."""
    from codekiln.config import parse_value
    from codekiln.curate.config import CurateConfig

    names: set[str] | None = None
    if opt_out is not None:
        try:
            lines = opt_out.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UserError(f"cannot read the opt-out list {opt_out}: {exc.strerror}") from None
        names = {n for n in (line.split("#", 1)[0].strip() for line in lines) if n}
    for path in benchmarks or []:
        if not path.exists():
            raise UserError(f"benchmark file not found: {path}")
    if languages:  # as `--set languages=...` reads it: one name is a list of one
        listed = parse_value(languages)
        listed = [listed] if isinstance(listed, str) and listed != "any" else listed
    return stage_config(
        CurateConfig,
        "curate",
        config,
        sets,
        languages=(lambda _: listed) if languages else None,
        max_file_bytes=max_file_bytes,
        licenses=licenses or None,
        commits={"enabled": True} if commits else None,
        opt_out=None if names is None else (lambda old: sorted(set(old) | names)),
        benchmark_files=(lambda old: [*old, *(str(p.resolve()) for p in benchmarks)])
        if benchmarks
        else None,
    )


def curate_command(
    sources: Annotated[
        list[str],
        typer.Argument(help="Directories, git repositories, or Stack-style .parquet/.jsonl files."),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output directory for shards, ledger and report.")
    ],
    config: ConfigFile = None,
    sets: Sets = None,
    languages: Annotated[
        str | None,
        typer.Option(
            "--languages", help="Keep only these languages (comma-separated, e.g. Python,C++)."
        ),
    ] = None,
    max_file_bytes: Annotated[
        int | None,
        typer.Option("--max-file-bytes", help="Drop files larger than this (default 1,000,000)."),
    ] = None,
    licenses: Annotated[
        str | None,
        typer.Option(
            "--licenses",
            help="License policy: permissive (default, as StarCoder), any, or SPDX ids (MIT,ISC).",
        ),
    ] = None,
    opt_out: Annotated[
        Path | None,
        typer.Option(
            "--opt-out", help="File of owner logins or owner/name repositories to leave out."
        ),
    ] = None,
    benchmark: Annotated[
        list[Path] | None,
        typer.Option(
            "--benchmark",
            help="More benchmark strings to decontaminate (JSONL or a folder of .txt).",
        ),
    ] = None,
    commits: Annotated[
        bool, typer.Option("--commits", help="Also curate git sources' history as commit records.")
    ] = False,
    workers: Workers = default_workers(),
    executor: Executor = "local",
    ray_address: RayAddress = None,
    force: Annotated[bool, typer.Option("--force", help="Redo a finished run in OUTPUT.")] = False,
    quiet: Quiet = False,
) -> None:
    """Curate code into Parquet shards, with a ledger row for every input and a report."""
    from codekiln.curate.pipeline import curate
    from codekiln.curate.sources import resolve_sources
    from codekiln.curate.summary import print_curate_summary

    cfg = curate_config(
        config, sets, languages, max_file_bytes, licenses, opt_out, benchmark, commits
    )
    result = curate(
        resolve_sources(sources),
        output,
        cfg,
        workers=workers,
        force=force,
        progress=not quiet,
        executor=executor,
        ray_address=ray_address,
    )
    if result.skipped:
        common.console.print(
            f"{output} is already curated with these settings; nothing to do (--force redoes it)."
        )
    print_curate_summary(common.console, result.report, output)


def data_lookup_command(
    dataset: Annotated[Path, typer.Argument(help="A curated output directory (with ledger/).")],
    query: Annotated[
        str, typer.Argument(help="A repository (owner/name), an owner, or a file path.")
    ],
    limit: Annotated[
        int, typer.Option("--limit", help="Show at most this many files (0: all).")
    ] = 50,
) -> None:
    """Am I in this dataset? Which files of a repository were kept, and why others were dropped."""
    from codekiln.curate.lookup import lookup
    from codekiln.curate.summary import print_lookup

    result = lookup(dataset, query)
    if not result.rows:
        common.console.print(f"{query}: not in {dataset} (no repository, owner or path matches)")
        raise typer.Exit(1)
    print_lookup(common.console, query, result, limit)


def tokenizer_train_command(
    data: Annotated[Path, typer.Argument(help="A curated directory (part-*.parquet).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Tokenizer folder to write.")],
    config: ConfigFile = None,
    sets: Sets = None,
    vocab_size: Annotated[
        int | None, typer.Option("--vocab-size", help="Vocabulary size (StarCoder: 49,152).")
    ] = None,
    sample_bytes: Annotated[
        int | None,
        typer.Option("--sample-bytes", help="Bytes of text to train on (seeded sample)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo a finished tokenizer.")] = False,
) -> None:
    """Train the tokenizer on a deterministic sample of curated shards."""
    from codekiln.manifest import check_output_dir
    from codekiln.tokenizer.summary import print_tokenizer_summary
    from codekiln.tokenizer.train import TokenizerConfig, train_tokenizer

    cfg = stage_config(
        TokenizerConfig,
        "tokenizer",
        config,
        sets,
        vocab_size=vocab_size,
        sample_bytes=sample_bytes,
    )
    check_output_dir(output)
    result = train_tokenizer(data, output, cfg, force=force)
    print_tokenizer_summary(common.console, result)


def pack_command(
    data: Annotated[Path, typer.Argument(help="A curated directory (part-*.parquet).")],
    tokenizer: Annotated[Path, typer.Option("--tokenizer", help="A tokenizer folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the token shards.")],
    config: ConfigFile = None,
    sets: Sets = None,
    workers: Workers = default_workers(),
    force: Annotated[bool, typer.Option("--force", help="Redo a finished pack.")] = False,
    quiet: Quiet = False,
) -> None:
    """Tokenize curated shards into train/valid token shards, with metadata prefixes."""
    from codekiln.manifest import check_output_dir
    from codekiln.pack.pack import PackConfig, pack
    from codekiln.pack.summary import print_pack_summary

    cfg = stage_config(PackConfig, "pack", config, sets)
    check_output_dir(output)
    result = pack(data, tokenizer, output, cfg, workers=workers, force=force, progress=not quiet)
    print_pack_summary(common.console, result)


def attribution_build_command(
    data: Annotated[Path, typer.Argument(help="A curated folder (Parquet shards).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the index.")],
    config: ConfigFile = None,
    sets: Sets = None,
    workers: Workers = default_workers(),
    force: Annotated[bool, typer.Option("--force", help="Rebuild an existing index.")] = False,
    quiet: Quiet = False,
) -> None:
    """Index curated data in 50-character grams (width, stride and false-positive rate are
    settings: --set false_positive_rate=0.0001)."""
    from codekiln.attribution import AttributionConfig, build_index
    from codekiln.attribution.summary import print_attribution_summary

    cfg = stage_config(AttributionConfig, "attribution", config, sets)
    result = build_index(data, output, cfg, workers=workers, force=force, progress=not quiet)
    if result.skipped:
        common.console.print("attribution: already built with these settings (--force rebuilds).")
    print_attribution_summary(common.console, result)


def attribution_query_command(
    file: Annotated[Path, typer.Argument(help="The code to check (a file; - for stdin).")],
    index: Annotated[Path, typer.Option("--index", help="An attribution index folder.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {spans, sources} as the server's /overlap.")
    ] = False,
) -> None:
    """Spans of FILE found in the training data, with the files they came from."""
    import json

    from codekiln.attribution import AttributionIndex, describe_spans, overlap_response

    if str(file) == "-":
        text = sys.stdin.read()
    else:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"cannot read {file}: {error}") from None
    opened = AttributionIndex.open(index)
    if as_json:
        print(json.dumps(overlap_response(opened, text)))
        return
    spans = opened.query(text)
    for line in describe_spans(text, spans):
        common.console.print(line, markup=False, highlight=False)
    covered = sum(span.end - span.start for span in spans)
    common.console.print(
        f"{len(spans)} span(s), {covered:,} of {len(text):,} characters found in the training data"
    )
