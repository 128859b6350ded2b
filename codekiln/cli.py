"""The `codekiln` command: one thin, typed function per stage; the table of commands is here."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import codekiln
from codekiln.errors import UserError

app = typer.Typer(
    name="codekiln",
    help="Build a large language model for code: curate, tokenize, train, evaluate, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console()
err_console = Console(stderr=True)

Workers = Annotated[
    int,
    typer.Option(
        "--workers", "-j", min=1, help="Worker processes (output is the same for any number)."
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML settings: a table per stage ([curate], [pack], ...) or top-level keys.",
    ),
]
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="One setting, key=value (dotted for tables: overrides.SQL.max_lines=10; "
        "with run: stage.key=value).",
    ),
]


Executor = Annotated[
    str,
    typer.Option(
        "--executor", help="Where tasks run: local (processes here) or ray (a Ray cluster)."
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address", help="Address of a running Ray cluster (default: start one here)."
    ),
]


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _version(value: bool) -> None:
    if value:
        console.print(f"codekiln {codekiln.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Build a large language model for code: curate, tokenize, train, evaluate, serve."""


def _curate_config(
    config: Path | None,
    sets: list[str] | None,
    languages: str | None = None,
    max_file_bytes: int | None = None,
    licenses: str | None = None,
    opt_out: Path | None = None,
    benchmarks: list[Path] | None = None,
    commits: bool = False,
):
    import json

    from codekiln.curate.config import CurateConfig

    extra = list(sets or [])
    if languages:
        extra.append(f"languages={languages}")
    if max_file_bytes is not None:
        extra.append(f"max_file_bytes={max_file_bytes}")
    if licenses:
        extra.append(f"licenses={json.dumps(licenses)}")
    if commits:
        extra.append("commits.enabled=true")
    cfg = CurateConfig.load(config, extra)
    if opt_out is not None:
        try:
            lines = opt_out.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UserError(f"cannot read the opt-out list {opt_out}: {exc.strerror}") from None
        names = [line.split("#", 1)[0].strip() for line in lines]
        cfg.opt_out = sorted(set(cfg.opt_out) | {n for n in names if n})
    for path in benchmarks or []:
        if not path.exists():
            raise UserError(f"benchmark file not found: {path}")
        cfg.benchmark_files.append(str(path.resolve()))
    return cfg


@app.command("curate")
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
    workers: Workers = _default_workers(),
    executor: Executor = "local",
    ray_address: RayAddress = None,
    force: Annotated[bool, typer.Option("--force", help="Redo a finished run in OUTPUT.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Curate code into Parquet shards, with a ledger row for every input and a report."""
    from codekiln.curate.pipeline import curate
    from codekiln.curate.sources import resolve_sources

    cfg = _curate_config(
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
        console.print(
            f"{output} is already curated with these settings; nothing to do (--force redoes it)."
        )
    _print_curate_summary(result.report, output)


@app.command("run")
def run_command(
    sources: Annotated[
        list[str] | None,
        typer.Argument(help="Sources to build from (default: this Python's standard library)."),
    ] = None,
    workspace: Annotated[
        Path, typer.Option("--workspace", "-w", help="Folder for every stage's outputs.")
    ] = Path("workspace"),
    config: ConfigFile = None,
    sets: Sets = None,
    workers: Workers = _default_workers(),
    executor: Executor = "local",
    ray_address: RayAddress = None,
    force: Annotated[
        bool, typer.Option("--force", help="Redo stages that already finished.")
    ] = False,
    allow_code_execution: Annotated[
        bool,
        typer.Option(
            "--allow-code-execution",
            help="Score the trained model by running its code in the sandbox (else the "
            "evaluation only writes generations).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """The main job: run every stage in one workspace: curate (near-dedup, PII redaction,
    decontamination, licenses), tokenizer, pack, train, evaluate. `--set` takes
    `stage.key=value` (curate when no stage is named)."""
    from codekiln.config import split_sets
    from codekiln.run import run_pipeline

    groups = split_sets(sets, "curate")
    result = run_pipeline(
        workspace,
        sources,
        _curate_config(config, groups.get("curate")),
        config_file=config,
        sets=groups,
        workers=workers,
        force=force,
        progress=not quiet,
        executor=executor,
        ray_address=ray_address,
        allow_code_execution=allow_code_execution,
    )
    if result.curate.skipped:
        console.print("curate: already done with these settings (--force redoes it).")
    _print_curate_summary(result.curate.report, workspace / "curated")
    _print_tokenizer_summary(result.tokenizer)
    _print_pack_summary(result.pack)
    _print_train_summary(result.train)
    _print_eval_summary(result.evaluation, workspace / "eval")
    console.print(f"workspace report: {result.report_path}")
    model_dir, index_dir = result.train.model_dir, result.attribution.out_dir
    console.print(
        f"serve the model with attribution:  codekiln serve {model_dir} --attribution {index_dir}"
    )
    console.print(f"complete in an editor (LSP):      codekiln lsp --model {model_dir}")


tokenizer_app = typer.Typer(
    help="Train a byte-level BPE tokenizer with StarCoder's special tokens.", no_args_is_help=True
)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("train")
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
    from codekiln.config import load_config
    from codekiln.manifest import check_output_dir
    from codekiln.tokenizer.train import TokenizerConfig, train_tokenizer

    extra = list(sets or [])
    if vocab_size is not None:
        extra.append(f"vocab_size={vocab_size}")
    if sample_bytes is not None:
        extra.append(f"sample_bytes={sample_bytes}")
    cfg = load_config(TokenizerConfig, "tokenizer", config, extra)
    check_output_dir(output)
    result = train_tokenizer(data, output, cfg, force=force)
    _print_tokenizer_summary(result)


@app.command("pack")
def pack_command(
    data: Annotated[Path, typer.Argument(help="A curated directory (part-*.parquet).")],
    tokenizer: Annotated[Path, typer.Option("--tokenizer", help="A tokenizer folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the token shards.")],
    config: ConfigFile = None,
    sets: Sets = None,
    workers: Workers = _default_workers(),
    force: Annotated[bool, typer.Option("--force", help="Redo a finished pack.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Tokenize curated shards into train/valid token shards, with metadata prefixes."""
    from codekiln.config import load_config
    from codekiln.manifest import check_output_dir
    from codekiln.pack.pack import PackConfig, pack

    cfg = load_config(PackConfig, "pack", config, sets)
    check_output_dir(output)
    result = pack(data, tokenizer, output, cfg, workers=workers, force=force, progress=not quiet)
    _print_pack_summary(result)


@app.command("train")
def train_command(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for checkpoints, model, metrics.")
    ],
    data: Annotated[
        Path | None, typer.Option("--data", help="A pack directory (token shards).")
    ] = None,
    init_from: Annotated[
        Path | None,
        typer.Option(
            "--init-from",
            help="Fine-tune this Hugging Face model folder (gpt_bigcode: StarCoder, "
            "SantaCoder; starcoder2), with its own tokenizer.",
        ),
    ] = None,
    sft: Annotated[
        Path | None,
        typer.Option(
            "--sft",
            help="Instruction tuning on a JSONL of {prompt, completion} pairs, or a curated "
            "folder's commit records (loss on completions only).",
        ),
    ] = None,
    lora: Annotated[
        bool, typer.Option("--lora", help="Train LoRA adapters on the frozen --init-from model.")
    ] = False,
    lora_rank: Annotated[
        int | None, typer.Option("--lora-rank", min=1, help="LoRA rank (default 8).")
    ] = None,
    lora_alpha: Annotated[
        float | None,
        typer.Option("--lora-alpha", min=0.0, help="LoRA scale numerator (default 16)."),
    ] = None,
    lora_dropout: Annotated[
        float | None,
        typer.Option("--lora-dropout", min=0.0, help="Dropout on the adapters' input (0)."),
    ] = None,
    lora_targets: Annotated[
        str | None,
        typer.Option(
            "--lora-targets",
            help="Modules to adapt, as transformers names them (default: every attention "
            "and MLP projection).",
        ),
    ] = None,
    base_dtype: Annotated[
        str | None,
        typer.Option("--base-dtype", help="LoRA: hold the frozen base in float32 or bfloat16."),
    ] = None,
    merge: Annotated[
        bool,
        typer.Option("--merge", help="LoRA: also write the base with the adapter merged in."),
    ] = False,
    license_id: Annotated[
        str | None,
        typer.Option(
            "--license",
            help="The model card's license (a Hub id; default: BigCode OpenRAIL-M, or the "
            "base model's).",
        ),
    ] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option("--tokenizer", help="Use this tokenizer folder instead of the pack's copy."),
    ] = None,
    config: ConfigFile = None,
    sets: Sets = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue from the latest checkpoint with its settings (only max_steps, "
            "max_minutes and the intervals may change).",
        ),
    ] = False,
    max_minutes: Annotated[
        float | None,
        typer.Option("--max-minutes", help="Stop cleanly (checkpoint + export) after this."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a GPT-BigCode or StarCoder2 model on token shards, from scratch or from a model
    folder (--init-from; full or --lora), or instruction-tune one (--sft); export it in
    Hugging Face format. Under torchrun: DDP, FSDP2 (`--set parallel=fsdp`), tensor parallel
    (`parallel=tp`) or both (`parallel=fsdp+tp --set tp_size=N`), each in pipeline stages
    with `--set pp_size=N`."""
    import os

    from codekiln.config import given_settings, load_config
    from codekiln.train.config import TrainConfig
    from codekiln.train.loop import train

    if sft is not None and data is not None:
        raise UserError("give --data (token shards) or --sft (instruction pairs), not both")
    source = sft if sft is not None else data
    if source is None:
        raise UserError("give --data TOKENS (a pack folder) or --sft PAIRS to train on")
    flags = {
        "init_from": None if init_from is None else str(init_from),
        "sft": True if sft is not None else None,
        "lora": True if lora else None,
        "lora_rank": lora_rank,
        "lora_alpha": lora_alpha,
        "lora_dropout": lora_dropout,
        "lora_targets": lora_targets,
        "base_dtype": base_dtype,
        "merge": True if merge else None,
        "license": license_id,
        "tokenizer": None if tokenizer is None else str(tokenizer),
        "max_minutes": max_minutes,
    }
    flags = {key: value for key, value in flags.items() if value is not None}
    if resume:
        # The checkpoint's settings, with what this invocation gives (checked by the run).
        given = {**given_settings(TrainConfig, "train", config, sets), **flags}
        result = train(source, output, None, resume=True, progress=not quiet, changes=given)
    else:
        cfg = load_config(TrainConfig, "train", config, sets, extra=flags)
        result = train(source, output, cfg, progress=not quiet)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary
        _print_train_summary(result)


@app.command("memory")
def memory_command(
    nproc: Annotated[
        int, typer.Option("--nproc", min=1, help="Processes (GPUs) in all, on every node.")
    ] = 1,
    init_from: Annotated[
        Path | None,
        typer.Option("--init-from", help="Plan for this Hugging Face model folder's config."),
    ] = None,
    device_gib: Annotated[
        float | None,
        typer.Option("--device-gib", min=0.0, help="Say whether a rank fits a device this big."),
    ] = None,
    config: ConfigFile = None,
    sets: Sets = None,
) -> None:
    """Print the memory one rank needs to train under the given settings and number of
    processes, as `codekiln train` estimates it before allocating: weights, gradients,
    AdamW state, activations and start-up, for any layout (`parallel`, `tp_size`,
    `pp_size`), without a GPU or data."""
    from codekiln.config import load_config
    from codekiln.model.hf import read_hf_config
    from codekiln.train.config import TrainConfig
    from codekiln.train.memory import plan_memory

    extra = {"init_from": str(init_from)} if init_from is not None else None
    cfg = load_config(TrainConfig, "train", config, sets, extra=extra)
    base = read_hf_config(init_from) if init_from is not None else None
    plan = plan_memory(cfg, nproc, base)
    _print_memory_plan(cfg, nproc, plan, device_gib)


@app.command("export")
def export_command(
    run: Annotated[Path, typer.Argument(help="A training run's output folder.")],
    step: Annotated[
        int | None,
        typer.Option("--step", min=0, help="Export this step's checkpoint (default: the newest)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="A new or empty folder to write (default: RUN/export/step_N); a LoRA run's "
            "adapter goes to OUTPUT/adapter.",
        ),
    ] = None,
    merge: Annotated[
        bool,
        typer.Option("--merge", help="LoRA: also write the base with the adapter merged in."),
    ] = False,
    ctranslate2: Annotated[
        bool,
        typer.Option(
            "--ctranslate2",
            help="Also convert the model for --engine ctranslate2, into "
            "MODEL/ctranslate2-QUANTIZATION (needs codekiln[ctranslate2]).",
        ),
    ] = False,
    quantization: Annotated[
        str,
        typer.Option("--quantization", help="With --ctranslate2: int8, float32 or bfloat16."),
    ] = "int8",
) -> None:
    """Turn a training checkpoint (of any parallel layout) into a Hugging Face model folder,
    offline, on the CPU, in one process: what `codekiln train` writes at the end of a run."""
    from codekiln.train.export import export_run

    if ctranslate2:
        from codekiln.generate.ct2 import check_quantization

        check_quantization(quantization)  # before the export, not after it
    result = export_run(run, step, output, True if merge else None)
    for kind, folder in (("model", result.model_dir), ("adapter", result.adapter_dir)):
        if folder is not None:
            console.print(f"exported {result.checkpoint.name} of {run}: {kind} in {folder}")
    if ctranslate2:
        from codekiln.generate.ct2 import convert_ctranslate2

        if result.model_dir is None:
            raise UserError("CTranslate2 converts whole models, not adapters: add --merge")
        converted = convert_ctranslate2(result.model_dir, quantization=quantization)
        console.print(f"CTranslate2 ({quantization}) in {converted}")


@app.command("eval")
def eval_command(
    model: Annotated[
        str | None,
        typer.Argument(help="A model folder (codekiln or Hugging Face) or an endpoint URL."),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="The model's name in results.json and on the leaderboard "
            "(default: the model folder's name, see docs/leaderboard.md).",
        ),
    ] = None,
    tasks: Annotated[
        str | None,
        typer.Option(
            "--tasks", help="Comma-separated: humaneval,humaneval-infill-single,multiple-lua..."
        ),
    ] = None,
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            metavar="[TASK=]PATH",
            help="Official benchmark rows: PATH for every task that reads data, or TASK=PATH "
            "(MultiPL-E rows, human-eval-infilling files, EvalPlus's HumanEvalPlus). Repeatable.",
        ),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for generations and results.")
    ] = Path("eval"),
    samples: Annotated[
        Path | None,
        typer.Option("--samples", help="Score this generations file instead of a model."),
    ] = None,
    n_samples: Annotated[
        int | None, typer.Option("--n-samples", min=1, help="Samples per problem.")
    ] = None,
    temperature: Annotated[float | None, typer.Option("--temperature", min=0.0)] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", min=0.0, max=1.0)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Sampling seed.")] = None,
    greedy: Annotated[
        bool, typer.Option("--greedy", help="Greedy decoding, one sample per problem.")
    ] = False,
    max_length_generation: Annotated[
        int | None,
        typer.Option(
            "--max-length-generation",
            min=1,
            help="Prompt + generated tokens, as the BigCode harness counts (default 512).",
        ),
    ] = None,
    max_new_tokens: Annotated[
        int | None,
        typer.Option("--max-new-tokens", min=1, help="Generated tokens only (instead)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N problems per task.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-j", min=1, help="Programs run at once.")
    ] = None,
    allow_code_execution: Annotated[
        bool,
        typer.Option(
            "--allow-code-execution",
            help="Run model-written code (in the sandbox: see docs/sandbox.md).",
        ),
    ] = False,
    generate_only: Annotated[
        bool, typer.Option("--generate-only", help="Write generations, run nothing.")
    ] = False,
    list_tasks: Annotated[
        bool, typer.Option("--list-tasks", help="Print every task and exit.")
    ] = False,
    config: ConfigFile = None,
    sets: Sets = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Evaluate a model (or score a generations file) on HumanEval and infilling: generate,
    run each sample's tests in a sandbox, report pass@k."""
    import dataclasses

    from codekiln.config import load_config
    from codekiln.evaluate.config import EvalConfig
    from codekiln.evaluate.harness import evaluate, score_samples
    from codekiln.progress import PhaseProgress

    if list_tasks:
        _print_task_list()
        return
    cfg = load_config(EvalConfig, "eval", config, sets)
    flags = {
        "tasks": tasks,
        "n_samples": n_samples,
        "temperature": temperature,
        "top_p": top_p,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "max_length_generation": max_length_generation,
        "limit": limit,
        "workers": workers,
    }
    if max_new_tokens is not None and max_length_generation is not None:
        raise UserError(
            "give --max-length-generation (prompt + generation, as the BigCode harness) or "
            "--max-new-tokens (generation only), not both"
        )
    if max_new_tokens is not None:  # a flag replaces the other rule from a config file
        cfg = dataclasses.replace(cfg, max_length_generation=None)
    elif max_length_generation is not None:
        cfg = dataclasses.replace(cfg, max_new_tokens=None)
    if data:
        flags["data"] = {**cfg.data, **_data_flags(data)}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    if greedy:
        cfg = dataclasses.replace(cfg, greedy=True)
    with PhaseProgress(enabled=not quiet) as progress:
        if samples is not None:
            if model is not None:
                raise UserError("give a model or --samples, not both")
            results = score_samples(
                samples,
                output,
                cfg,
                allow_code_execution=allow_code_execution,
                progress=progress,
                name=name,
            )
        else:
            if model is None:
                raise UserError("name a model folder or endpoint URL, or pass --samples FILE")
            results = evaluate(
                model,
                output,
                cfg,
                allow_code_execution=allow_code_execution,
                generate_only=generate_only,
                progress=progress,
                name=name,
            )
    _print_eval_summary(results, output)


def _data_flags(values: list[str]) -> dict[str, str]:
    """{task: path} from --data values: "TASK=PATH" binds one task, "PATH" every task that
    reads data (key ""). A path that itself holds "=" is taken whole when it exists."""
    data: dict[str, str] = {}
    for value in values:
        task, sep, path = value.partition("=")
        if not sep or Path(value).exists() or "/" in task or not task:
            task, path = "", value
        if task in data:
            raise UserError(f"--data given twice for {task or 'every task'}: {value}")
        data[task] = path
    return data


@app.command("leaderboard")
def leaderboard_command(
    results: Annotated[
        list[Path], typer.Argument(help="results.json files, or folders holding them.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the site.")] = Path(
        "leaderboard"
    ),
    with_published: Annotated[
        bool,
        typer.Option(
            "--with-published",
            help="Add the published pass@1 of StarCoder, StarCoder2, SantaCoder, Code Llama... "
            "on the same tasks, marked as published, with their sources.",
        ),
    ] = False,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="Name the (one) model these results are of, instead of its own name."
        ),
    ] = None,
) -> None:
    """Build a static leaderboard page (pass@1 per model and task, average, win rate, chart)
    from evaluation results; docs/leaderboard.md says what it shows."""
    from codekiln.evaluate.leaderboard import build_leaderboard

    index = build_leaderboard(results, output, with_published=with_published, name=name)
    console.print(f"leaderboard: {index}")


attribution_app = typer.Typer(
    help="Which training files a piece of code overlaps (a Bloom-filter index of the data).",
    no_args_is_help=True,
)
app.add_typer(attribution_app, name="attribution")


@attribution_app.command("build")
def attribution_build_command(
    data: Annotated[Path, typer.Argument(help="A curated folder (Parquet shards).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the index.")],
    config: ConfigFile = None,
    sets: Sets = None,
    workers: Workers = _default_workers(),
    force: Annotated[bool, typer.Option("--force", help="Rebuild an existing index.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Index curated data in 50-character grams (width, stride and false-positive rate are
    settings: --set false_positive_rate=0.0001)."""
    from codekiln.attribution import AttributionConfig, build_index
    from codekiln.config import load_config

    cfg = load_config(AttributionConfig, "attribution", config, sets)
    result = build_index(data, output, cfg, workers=workers, force=force, progress=not quiet)
    if result.skipped:
        console.print("attribution: already built with these settings (--force rebuilds).")
    _print_attribution_summary(result)


@attribution_app.command("query")
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
        console.print(line, markup=False, highlight=False)
    covered = sum(span.end - span.start for span in spans)
    console.print(
        f"{len(spans)} span(s), {covered:,} of {len(text):,} characters found in the training data"
    )


def _print_attribution_summary(result) -> None:
    def show(value) -> str:
        if isinstance(value, float):
            return f"{value:.2%}" if value < 1 else f"{value:,.1f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    counts = ", ".join(f"{k} {show(v)}" for k, v in result.counts.items())
    console.print(f"attribution index in {result.out_dir}: {counts}")
    console.print("sizes: " + ", ".join(f"{k} {show(v)}" for k, v in result.sizes.items()))


@app.command("serve")
def serve_command(
    model: Annotated[
        str,
        typer.Argument(help="A model folder (Hugging Face format) or an OpenAI-compatible URL."),
    ],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")
    ] = 8000,
    attribution: Annotated[
        Path | None,
        typer.Option("--attribution", help="An attribution index folder, for POST /overlap."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="CODEKILN_API_KEY",
            help="Bearer token every route but /health requires.",
        ),
    ] = None,
    max_batch: Annotated[
        int,
        typer.Option("--max-batch", min=1, help="Sequences decoded together (1: batching off)."),
    ] = 16,
    max_queue: Annotated[
        int,
        typer.Option("--max-queue", min=0, help="Requests that may wait; beyond, 429/503 at once."),
    ] = 64,
    engine: Annotated[
        str,
        typer.Option("--engine", help="auto, codekiln, transformers, ctranslate2 or vllm."),
    ] = "auto",
    dtype: Annotated[
        str | None,
        typer.Option("--dtype", help="float32, bfloat16 or int8 (default: the engine's)."),
    ] = None,
    read_timeout: Annotated[
        float,
        typer.Option(
            "--read-timeout", min=0.001, help="Seconds for a client to send its whole request."
        ),
    ] = 30.0,
    no_truncate: Annotated[
        bool,
        typer.Option(
            "--no-truncate",
            help="Refuse prompts too long for the context instead of trimming them.",
        ),
    ] = False,
) -> None:
    """Serve a model over HTTP: OpenAI /v1/completions (with suffix: fill-in-the-middle), TGI
    /generate and /generate_stream, /overlap (attribution), /health, /metrics."""
    from codekiln.serve import ServeConfig
    from codekiln.serve.http import serve

    options: dict[str, str] = {"engine": engine}
    if dtype is not None:
        if model.startswith(("http://", "https://")):
            raise UserError("--dtype is for a model folder; an endpoint URL has its own")
        options["dtype"] = dtype
    serve(
        model,
        host=host,
        port=port,
        attribution=attribution,
        api_key=api_key,
        config=ServeConfig(
            max_batch=max_batch,
            max_queue=max_queue,
            read_timeout=read_timeout,
            truncate=not no_truncate,
        ),
        **options,
    )


@app.command("lsp")
def lsp_command(
    model: Annotated[str | None, typer.Option("--model", help="A model folder.")] = None,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="An OpenAI-compatible URL (codekiln serve's)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="CODEKILN_API_KEY", help="Bearer token for --endpoint."),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 64,
    context_tokens: Annotated[
        int, typer.Option("--context-tokens", min=0, help="Prompt budget (0: the model's).")
    ] = 0,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0)] = 0.2,
) -> None:
    """Language server over stdio: textDocument/inlineCompletion, textDocument/completion and
    llm-ls/getCompletions (llm.nvim, llm-vscode)."""
    from codekiln.serve import LspConfig
    from codekiln.serve.lsp import run_lsp

    config = LspConfig(
        max_new_tokens=max_new_tokens, context_tokens=context_tokens, temperature=temperature
    )
    run_lsp(model, endpoint, config, api_key=api_key)


@app.command("editor-settings")
def editor_settings_command(
    model: Annotated[
        str,
        typer.Argument(help="A model folder, or the URL of a running server (codekiln serve)."),
    ],
    editor: Annotated[str, typer.Option("--editor", help="vscode, neovim or emacs.")],
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="tgi or openai (llm-ls against codekiln serve), or lsp (codekiln lsp in "
            "place of llm-ls); default: tgi, emacs: lsp.",
        ),
    ] = None,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Tokens each completion asks for.")
    ] = 60,
    context_tokens: Annotated[
        int | None,
        typer.Option(
            "--context-tokens", min=2, help="The model's context, where it does not report it."
        ),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option("--server", help="codekiln serve's URL, for a folder (127.0.0.1:8000)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: print).")
    ] = None,
) -> None:
    """Settings for llm-vscode, llm.nvim or Emacs with the context window derived from the
    model: its context (config.json's n_positions, or the server's max_model_len) minus
    --max-new-tokens, since llm-ls leaves no room for the completion itself."""
    from codekiln.serve.editors import model_facts, render

    text = render(
        editor, backend, model_facts(model, context_tokens), max_new_tokens, server=server
    )
    if output is None:
        print(text, end="")
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UserError(f"cannot write {output}: {error}") from None
    err_console.print(f"wrote {output}", markup=False, highlight=False)


def _print_task_list() -> None:
    from codekiln.evaluate.tasks import get_task, task_names

    table = Table("task", "problems", "mode", "toolchain")
    for name in task_names():
        task = get_task(name)
        ready, note = task.ready()
        problems = "needs --data" if task.needs_data else str(len(task.problems()))
        if task.reads_data and not task.needs_data:
            problems += " (or --data)"
        table.add_row(
            name,
            problems,
            task.mode,
            ("ready" if ready else "missing: ") + (f" ({note})" if ready and note else note),
        )
    console.print(table)


def _print_eval_summary(results: dict, output: Path) -> None:
    scored = {name: r for name, r in results.items() if "metrics" in r}
    for name, result in results.items():
        if "not_run" in result:
            console.print(f"{name}: not run ({result['not_run']})")
        elif name not in scored:
            console.print(f"{name}: generations in {result['generations']}")
    if scored:
        ks = [
            k
            for k in ("pass@1", "pass@10", "pass@100")
            if any(k in r["metrics"] for r in scored.values())
        ]
        table = Table()
        table.add_column("task", no_wrap=True)
        for header in ("problems", "n", *ks, "passed", "failed", "other"):
            table.add_column(header, no_wrap=True, justify="right")
        for name, result in scored.items():
            outcomes = result["outcomes"]
            other = sum(v for k, v in outcomes.items() if k not in ("passed", "failed"))
            metrics = result["metrics"]
            table.add_row(
                name,
                str(result["problems"]),
                str(result["samples_per_problem"]),
                *(f"{metrics[k]:.2%}" if k in metrics else "-" for k in ks),
                str(outcomes["passed"]),
                str(outcomes["failed"]),
                str(other),
            )
            for metric, values in result.get("by_metric", {}).items():  # EvalPlus: both
                table.add_row(
                    f"  {metric}",
                    "",
                    "",
                    *(f"{values[k]:.2%}" if k in values else "-" for k in ks),
                    "",
                    "",
                    "",
                )
        console.print(table)
        for name, result in scored.items():
            others = {k: v for k, v in result["metrics"].items() if not k.startswith("pass@")}
            if others:
                console.print(f"{name}: " + ", ".join(f"{k} {v:.2%}" for k, v in others.items()))
    console.print(f"results in {output}/<task>/results.json")


def _print_train_summary(result) -> None:
    if result.skipped:
        console.print(f"{result.out_dir} already holds this finished run; nothing to do.")
    val = f", validation loss {result.val_loss:.3f}" if result.val_loss is not None else ""
    console.print(
        f"train: {result.steps:,} steps, {result.tokens:,} tokens, "
        f"final loss {result.final_loss:.3f}{val}"
    )
    outputs = [f"checkpoints and metrics: {result.out_dir}"]
    if result.model_dir is not None:
        outputs.append(f"model: {result.model_dir}")
    if result.adapter_dir is not None:
        outputs.append(f"adapter (peft): {result.adapter_dir}")
    console.print("  ".join(outputs))


def _print_memory_plan(cfg, nproc: int, plan: dict, device_gib: float | None) -> None:
    gib = 1 << 30
    cut, model = plan["layout"], plan["model_config"]
    mode = "fsdp" if cut.fsdp else ("ddp" if cut.dp > 1 else "replicated")
    console.print(
        f"{plan['params'] / 1e9:,.2f}B parameters ({model.n_layer} layers, width "
        f"{model.n_embd}) on {nproc:,} processes: pp {cut.pp} x dp {cut.dp} ({mode}) x tp "
        f"{cut.tp}; micro-batch {cfg.batch_size} x {cfg.seq_len} tokens, grad_accum "
        f"{cfg.grad_accum}, {plan['dtype']} compute, activation checkpointing "
        f"{'on' if cfg.activation_checkpointing else 'off'}"
    )
    table = Table(title="one rank at its peak (GiB)")
    table.add_column("weights", justify="right")
    table.add_column("gradients", justify="right")
    table.add_column("AdamW", justify="right")
    table.add_column("activations", justify="right")
    table.add_column("start-up", justify="right")
    table.add_column("peak", justify="right")
    table.add_row(
        *(
            f"{plan[key] / gib:,.2f}"
            for key in ("weights", "gradients", "optimizer", "activations", "startup", "peak")
        )
    )
    console.print(table)
    if device_gib is not None:
        fits = plan["peak"] <= device_gib * gib
        advice = ["lower batch_size", "add ranks (or raise tp_size, pp_size)"]
        if not cfg.activation_checkpointing:
            advice.insert(0, "set activation_checkpointing=true")
        if plan["layout"].pp > 1 and cfg.pp_schedule == "gpipe":
            advice.insert(0, "use pp_schedule=1f1b (GPipe keeps every micro-batch)")
        console.print(
            f"{'fits' if fits else 'does not fit'} a {device_gib:g} GiB device"
            + ("" if fits else ": " + ", ".join(advice))
        )


def _print_tokenizer_summary(result) -> None:
    if result.skipped:
        console.print(f"{result.out_dir} is already trained with these settings; nothing to do.")
    overall = result.fertility.get("overall", {})
    console.print(
        f"tokenizer: {result.vocab_size:,} tokens, trained on {result.sample_documents:,} "
        f"documents ({result.sample_bytes / 1e6:,.1f} MB); "
        f"{overall.get('chars_per_token', 0):.2f} characters per token on held-out text"
    )
    console.print(f"tokenizer folder: {result.out_dir}")


def _print_pack_summary(result) -> None:
    if result.skipped:
        console.print(f"{result.out_dir} is already packed with these settings; nothing to do.")
    splits = result.meta["splits"]
    parts = [
        f"{name}: {s['tokens']:,} tokens in {s['documents']:,} documents"
        for name, s in splits.items()
    ]
    console.print("pack: " + "; ".join(parts) + f" ({result.meta['dtype']})")
    console.print(f"token shards: {result.out_dir}")


data_app = typer.Typer(help="Questions about a curated dataset.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("lookup")
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
    from codekiln.curate.lookup import lookup, row_detail

    result = lookup(dataset, query)
    if not result.rows:
        console.print(f"{query}: not in {dataset} (no repository, owner or path matches)")
        raise typer.Exit(1)
    repos = sorted({r["repo"] for r in result.rows})
    console.print(
        f"{query}: {len(result.rows):,} files in {len(repos):,} repositories; "
        f"{len(result.kept):,} kept, {len(result.rows) - len(result.kept):,} dropped"
    )
    for reason, n in result.reasons().items():
        console.print(f"  dropped as {reason}: {n:,}")
    table = Table(show_edge=False)
    for column in ("repo", "path", "status", "reason", "detail"):
        table.add_column(column)
    shown = result.rows if limit == 0 else result.rows[:limit]
    for row in shown:
        detail = row_detail(row)
        table.add_row(row["repo"], row["path"], row["status"], row["reason"] or "", detail)
    console.print(table)
    if len(shown) < len(result.rows):
        console.print(f"... {len(result.rows) - len(shown):,} more (--limit 0 shows all)")


def _print_curate_summary(report: dict, out_dir: Path) -> None:
    totals = report["totals"]
    table = Table(title="curate", show_edge=False)
    table.add_column("")
    table.add_column("files", justify="right")
    table.add_column("MB", justify="right")
    table.add_row("in", f"{totals['files_in']:,}", f"{totals['bytes_in'] / 1e6:,.1f}")
    for reason, slot in totals["dropped"].items():
        table.add_row(f"  dropped: {reason}", f"{slot['files']:,}", f"{slot['bytes'] / 1e6:,.1f}")
    table.add_row(
        "kept (MB written)",
        f"{totals['files_kept']:,}",
        f"{totals['bytes_kept'] / 1e6:,.1f}",
        style="bold",
    )
    console.print(table)
    from codekiln.curate.report import by_kept

    kept = [(lang, b["files_kept"]) for lang, b in by_kept(report["languages"])]
    top = [f"{lang} {files:,}" for lang, files in kept if files][:8]
    if top:
        console.print("kept by language: " + ", ".join(top))
    console.print(f"shards and ledger: {out_dir}  report: {out_dir / 'report.html'}")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except UserError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
