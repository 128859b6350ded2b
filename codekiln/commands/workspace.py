"""`codekiln run`: every stage in one workspace."""

from __future__ import annotations

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
)
from codekiln.commands.data import curate_config


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
    workers: Workers = default_workers(),
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
    quiet: Quiet = False,
) -> None:
    """The main job: run every stage in one workspace: curate (near-dedup, PII redaction,
    decontamination, licenses), tokenizer, pack, train, evaluate. `--set` takes
    `stage.key=value` (curate when no stage is named)."""
    from codekiln.config import split_sets
    from codekiln.curate.summary import print_curate_summary
    from codekiln.evaluate.summary import print_eval_summary
    from codekiln.pack.summary import print_pack_summary
    from codekiln.run import run_pipeline
    from codekiln.tokenizer.summary import print_tokenizer_summary
    from codekiln.train.summary import print_train_summary

    groups = split_sets(sets, "curate")
    result = run_pipeline(
        workspace,
        sources,
        curate_config(config, groups.get("curate")),
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
        common.console.print("curate: already done with these settings (--force redoes it).")
    print_curate_summary(common.console, result.curate.report, workspace / "curated")
    print_tokenizer_summary(common.console, result.tokenizer)
    print_pack_summary(common.console, result.pack)
    print_train_summary(common.console, result.train)
    print_eval_summary(common.console, result.evaluation, workspace / "eval")
    common.console.print(f"workspace report: {result.report_path}")
    model_dir, index_dir = result.train.model_dir, result.attribution.out_dir
    common.console.print(
        f"serve the model with attribution:  codekiln serve {model_dir} --attribution {index_dir}"
    )
    common.console.print(f"complete in an editor (LSP):      codekiln lsp --model {model_dir}")
    common.console.print(
        f"export for llama.cpp/Ollama:       codekiln export {model_dir} --format gguf --quant q8_0"
    )
