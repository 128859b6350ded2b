"""The `codekiln` command: the table of commands, and the entry point that turns bad input
into one line on stderr.

Each command is a typed function in `codekiln.commands` (one module per group of stages);
what a command prints about its stage lives beside the stage (`codekiln.curate.summary`,
...); a command's flags become its stage's config one way, `commands.common.stage_config`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

import codekiln
from codekiln.commands import common, data, evaluation, serving, training, workspace
from codekiln.errors import UserError

app = typer.Typer(
    name="codekiln",
    help="Build a large language model for code: curate, tokenize, train, evaluate, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# typer raises click's exceptions (recent versions: their own copy of click); name the base
# class through a public typer name either way.
_ClickError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
# What the commands print to while `main` runs (tests replace these two).
console = common.console
err_console = common.err_console


def _version(value: bool) -> None:
    if value:
        common.console.print(f"codekiln {codekiln.__version__}")
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


def _group(name: str, help: str) -> typer.Typer:
    group = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


# The table of commands (`codekiln --help` lists the groups after the single commands).
app.command("curate")(data.curate_command)
app.command("run")(workspace.run_command)
tokenizer_app = _group(
    "tokenizer", "Train a byte-level BPE tokenizer with StarCoder's special tokens."
)
tokenizer_app.command("train")(data.tokenizer_train_command)
app.command("pack")(data.pack_command)
app.command("train")(training.train_command)
app.command("memory")(training.memory_command)
app.command("export")(training.export_command)
app.command("eval")(evaluation.eval_command)
app.command("leaderboard")(evaluation.leaderboard_command)
attribution_app = _group(
    "attribution",
    "Which training files a piece of code overlaps (a Bloom-filter index of the data).",
)
attribution_app.command("build")(data.attribution_build_command)
attribution_app.command("query")(data.attribution_query_command)
app.command("serve")(serving.serve_command)
app.command("lsp")(serving.lsp_command)
app.command("editor-settings")(serving.editor_settings_command)
data_app = _group("data", "Questions about a curated dataset.")
data_app.command("lookup")(data.data_lookup_command)


def main() -> None:
    """Entry point: bad input (a UserError, or a flag typer refuses) becomes one line on
    stderr and exit status 2, never a traceback."""
    saved = common.console, common.err_console
    common.console, common.err_console = console, err_console
    try:
        code = app(standalone_mode=False)
    except UserError as exc:
        _fail(str(exc), 2)
    except _ClickError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a command group named alone
            exc.show()
            sys.exit(exc.exit_code)
        _fail(_usage_line(exc), exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    finally:
        common.console, common.err_console = saved
    if isinstance(code, int) and code:
        sys.exit(code)


def _fail(message: str, code: int) -> None:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


def _usage_line(exc: Exception) -> str:
    """A usage error as one line, pointing at the command's --help."""
    message = " ".join(exc.format_message().split())
    context = getattr(exc, "ctx", None)
    if context is None:
        return message
    return f"{message} (see {context.command_path} --help)"


if __name__ == "__main__":
    main()
