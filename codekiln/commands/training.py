"""The training commands: train, memory (a plan, no GPU needed) and export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codekiln.commands import common
from codekiln.commands.common import ConfigFile, Quiet, Sets, given, stage_config
from codekiln.errors import UserError


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
    quiet: Quiet = False,
) -> None:
    """Train a GPT-BigCode or StarCoder2 model on token shards, from scratch or from a model
    folder (--init-from; full or --lora), or instruction-tune one (--sft); export it in
    Hugging Face format. Under torchrun: DDP, FSDP2 (`--set parallel=fsdp`), tensor parallel
    (`parallel=tp`) or both (`parallel=fsdp+tp --set tp_size=N`), each in pipeline stages
    with `--set pp_size=N`."""
    import os

    if sft is not None and data is not None:
        raise UserError("give --data (token shards) or --sft (instruction pairs), not both")
    source = sft if sft is not None else data
    if source is None:
        raise UserError("give --data TOKENS (a pack folder) or --sft PAIRS to train on")
    from codekiln.config import given_settings
    from codekiln.train.config import TrainConfig
    from codekiln.train.loop import train
    from codekiln.train.summary import print_train_summary

    flags = given(
        init_from=None if init_from is None else str(init_from),
        sft=True if sft is not None else None,
        lora=True if lora else None,
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        lora_targets=lora_targets,
        base_dtype=base_dtype,
        merge=True if merge else None,
        license=license_id,
        tokenizer=None if tokenizer is None else str(tokenizer),
        max_minutes=max_minutes,
    )
    if resume:
        # The checkpoint's settings, with what this invocation gives (checked by the run).
        changes = {**given_settings(TrainConfig, "train", config, sets), **flags}
        result = train(source, output, None, resume=True, progress=not quiet, changes=changes)
    else:
        cfg = stage_config(TrainConfig, "train", config, sets, **flags)
        result = train(source, output, cfg, progress=not quiet)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary
        print_train_summary(common.console, result)


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
    from codekiln.model.hf import read_hf_config
    from codekiln.train.config import TrainConfig
    from codekiln.train.memory import plan_memory
    from codekiln.train.summary import print_memory_plan

    init = None if init_from is None else str(init_from)
    cfg = stage_config(TrainConfig, "train", config, sets, init_from=init)
    base = read_hf_config(init_from) if init_from is not None else None
    plan = plan_memory(cfg, nproc, base)
    print_memory_plan(common.console, cfg, nproc, plan, device_gib)


def export_command(
    run: Annotated[
        Path,
        typer.Argument(
            help="A training run's output folder, or (with --format gguf) a Hugging Face "
            "model folder."
        ),
    ],
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
            "adapter goes to OUTPUT/adapter. With --format gguf: the file to write "
            "(default: MODEL/model-QUANT.gguf).",
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
    export_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="hf: a Hugging Face model folder; gguf: one GGUF file for llama.cpp, Ollama "
            "and Tabby (needs codekiln[gguf]).",
        ),
    ] = "hf",
    quant: Annotated[
        str | None,
        typer.Option(
            "--quant",
            help="With --format gguf: f32 (default), f16, q8_0, or 4-/5-bit q5_1, q5_0, "
            "q4_1, q4_0.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="With --format gguf: replace an existing file.")
    ] = False,
) -> None:
    """Turn a training checkpoint (of any parallel layout) into a Hugging Face model folder,
    offline, on the CPU, in one process: what `codekiln train` writes at the end of a run.
    `--format gguf` writes a run's model (or any gpt_bigcode or starcoder2 model folder) as
    one GGUF file for llama.cpp (`llama-server -m FILE`)."""
    from codekiln.train.export import export_run

    if export_format not in ("hf", "gguf"):
        raise UserError(f"--format {export_format!r}: give hf (a model folder) or gguf (a file)")
    if export_format == "gguf":
        if ctranslate2:
            raise UserError("--ctranslate2 converts a Hugging Face folder: drop --format gguf")
        _export_gguf(run, step, output, merge, quant or "f32", force)
        return
    if quant is not None or force:
        raise UserError("--quant and --force are for --format gguf; add it, or drop them")
    if ctranslate2:
        from codekiln.generate.ct2 import check_quantization

        check_quantization(quantization)  # before the export, not after it
    result = export_run(run, step, output, True if merge else None)
    for kind, folder in (("model", result.model_dir), ("adapter", result.adapter_dir)):
        if folder is not None:
            common.console.print(f"exported {result.checkpoint.name} of {run}: {kind} in {folder}")
    if ctranslate2:
        from codekiln.generate.ct2 import convert_ctranslate2

        if result.model_dir is None:
            raise UserError("CTranslate2 converts whole models, not adapters: add --merge")
        converted = convert_ctranslate2(result.model_dir, quantization=quantization)
        common.console.print(f"CTranslate2 ({quantization}) in {converted}")


def _export_gguf(
    run: Path, step: int | None, output: Path | None, merge: bool, quant: str, force: bool
) -> None:
    """`codekiln export --format gguf`: the model folder RUN (or a run's, see
    `_gguf_source`) as one GGUF file."""
    from codekiln.model.gguf import check_quant, export_gguf, gguf_summary

    check_quant(quant)
    if output is not None and output.exists() and not force:
        raise UserError(
            f"{output} already exists: choose another -o file, or --force to replace it"
        )
    model_dir = _gguf_source(run, step, merge)
    out = output if output is not None else model_dir / f"model-{quant}.gguf"
    written = export_gguf(model_dir, out, quant, force=force)
    common.console.print(f"GGUF ({quant}) of {model_dir} in {written}")
    common.console.print(f"  {gguf_summary(written)}")
    common.console.print(f"  run it: llama-server -m {written} --port 8080")


def _gguf_source(run: Path, step: int | None, merge: bool) -> Path:
    """The Hugging Face folder to convert: RUN itself when it is one, else a training run's
    final model (RUN/model), else its export of the checkpoint (`--step`, default the
    newest), written first when it is not there yet."""
    from codekiln.train.checkpoint import checkpoint_dirs
    from codekiln.train.export import export_run

    if (run / "config.json").is_file():
        if step is not None:
            raise UserError(f"--step picks a training run's checkpoint; {run} is a model folder")
        return run
    if step is None and (run / "model" / "config.json").is_file():
        return run / "model"
    found = checkpoint_dirs(run / "checkpoints")
    if not found:
        raise UserError(
            f"{run} is neither a model folder (config.json) nor a training run with "
            "checkpoints: give one of them"
        )
    name = found[-1].name if found and step is None else f"step_{step}"
    for folder in (run / "export" / name, run / "export" / name / "model"):
        if (folder / "config.json").is_file():
            return folder
    result = export_run(run, step, None, True if merge else None)
    if result.model_dir is None:
        raise UserError("GGUF holds whole models, not LoRA adapters: add --merge")
    common.console.print(f"exported {result.checkpoint.name} of {run}: model in {result.model_dir}")
    return result.model_dir
