"""The evaluation commands: eval (generate, run, score) and leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codekiln.commands import common
from codekiln.commands.common import ConfigFile, Sets, stage_config
from codekiln.errors import UserError


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
    from codekiln.evaluate.config import EvalConfig
    from codekiln.evaluate.harness import evaluate, score_samples
    from codekiln.evaluate.summary import print_eval_summary, print_task_list
    from codekiln.progress import PhaseProgress

    if list_tasks:
        print_task_list(common.console)
        return
    if max_new_tokens is not None and max_length_generation is not None:
        raise UserError(
            "give --max-length-generation (prompt + generation, as the BigCode harness) or "
            "--max-new-tokens (generation only), not both"
        )
    # A length flag replaces the other rule where a config file gives it.
    length_rule = {
        "max_new_tokens": max_new_tokens,
        "max_length_generation": max_length_generation,
    }
    if max_new_tokens is not None:
        length_rule["max_length_generation"] = lambda _: None
    elif max_length_generation is not None:
        length_rule["max_new_tokens"] = lambda _: None
    flagged = _data_flags(data) if data else None
    cfg = stage_config(
        EvalConfig,
        "eval",
        config,
        sets,
        tasks=tasks,
        n_samples=n_samples,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        limit=limit,
        workers=workers,
        greedy=True if greedy else None,
        data=None if flagged is None else (lambda old: {**old, **flagged}),
        **length_rule,
    )
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
    print_eval_summary(common.console, results, output)


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
    common.console.print(f"leaderboard: {index}")
