"""The serving commands: serve (HTTP), lsp (stdio) and editor-settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from codekiln.commands import common
from codekiln.commands.common import ConfigFile, Sets, stage_config
from codekiln.errors import UserError


def serve_command(
    model: Annotated[
        str,
        typer.Argument(help="A model folder (Hugging Face format) or an OpenAI-compatible URL."),
    ],
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="Port (default 8000; 0: any free one)."),
    ] = None,
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
        int | None,
        typer.Option(
            "--max-batch", min=1, help="Sequences decoded together (default 16; 1: batching off)."
        ),
    ] = None,
    max_queue: Annotated[
        int | None,
        typer.Option(
            "--max-queue",
            min=0,
            help="Requests that may wait (default 64); beyond, 429/503 at once.",
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option("--engine", help="auto, codekiln, transformers, ctranslate2 or vllm."),
    ] = "auto",
    dtype: Annotated[
        str | None,
        typer.Option("--dtype", help="float32, bfloat16 or int8 (default: the engine's)."),
    ] = None,
    read_timeout: Annotated[
        float | None,
        typer.Option(
            "--read-timeout",
            min=0.001,
            help="Seconds for a client to send its whole request (default 30).",
        ),
    ] = None,
    no_truncate: Annotated[
        bool,
        typer.Option(
            "--no-truncate",
            help="Refuse prompts too long for the context instead of trimming them.",
        ),
    ] = False,
    config: ConfigFile = None,
    sets: Sets = None,
) -> None:
    """Serve a model over HTTP: OpenAI /v1/completions (with suffix: fill-in-the-middle), TGI
    /generate and /generate_stream, /overlap (attribution), /health, /metrics. Every
    setting of ServeConfig (limits, prefill_chunk, model_name...) is a `--set`."""
    from codekiln.serve import ServeConfig
    from codekiln.serve.http import serve

    options: dict[str, str] = {"engine": engine}
    if dtype is not None:
        if model.startswith(("http://", "https://")):
            raise UserError("--dtype is for a model folder; an endpoint URL has its own")
        options["dtype"] = dtype
    cfg = stage_config(
        ServeConfig,
        "serve",
        config,
        sets,
        host=host,
        port=port,
        api_key=api_key,
        max_batch=max_batch,
        max_queue=max_queue,
        read_timeout=read_timeout,
        truncate=False if no_truncate else None,
    )
    serve(
        model,
        host=cfg.host,
        port=cfg.port,
        attribution=attribution,
        api_key=cfg.api_key,
        config=cfg,
        **options,
    )


def lsp_command(
    model: Annotated[str | None, typer.Option("--model", help="A model folder.")] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            help="A server's URL: codekiln serve's (OpenAI API) or llama.cpp's llama-server "
            "(/infill), told apart by --set endpoint_api=auto|openai|llama.cpp.",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="CODEKILN_API_KEY", help="Bearer token for --endpoint."),
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option("--max-new-tokens", min=1, help="Default 64.")
    ] = None,
    context_tokens: Annotated[
        int | None,
        typer.Option("--context-tokens", min=0, help="Prompt budget (default 0: the model's)."),
    ] = None,
    temperature: Annotated[
        float | None, typer.Option("--temperature", min=0.0, help="Default 0.2.")
    ] = None,
    config: ConfigFile = None,
    sets: Sets = None,
) -> None:
    """Language server over stdio: textDocument/inlineCompletion, textDocument/completion and
    llm-ls/getCompletions (llm.nvim, llm-vscode). LspConfig's settings (top_p,
    prefix_share, fim...) are `--set`s, or a [lsp] table."""
    from codekiln.serve import LspConfig
    from codekiln.serve.lsp import run_lsp

    cfg = stage_config(
        LspConfig,
        "lsp",
        config,
        sets,
        max_new_tokens=max_new_tokens,
        context_tokens=context_tokens,
        temperature=temperature,
    )
    run_lsp(model, endpoint, cfg, api_key=api_key)


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
    common.err_console.print(f"wrote {output}", markup=False, highlight=False)
