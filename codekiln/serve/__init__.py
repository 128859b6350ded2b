"""Serving: the model in a developer's editor, with attribution.

- `http`: `codekiln serve`, an HTTP server with OpenAI's `/v1/completions`, TGI's `/generate`
  and `/generate_stream`, `/overlap` (attribution), `/health` and `/metrics`.
- `lsp`: `codekiln lsp`, a language server over stdio (inline completion, completion, and
  llm-ls's `llm-ls/getCompletions`, so llm.nvim and llm-vscode use it unchanged).
- `llama_server`: llama.cpp's `llama-server` as `codekiln lsp --endpoint`'s model
  (fill-in-the-middle through its `/infill`, told apart from OpenAI-compatible servers by
  its `/props`).
- `context`: the prompt an editor's document gives around the cursor, within a budget.
- `jupyter`: an IPython extension that completes code cells with the model.
- `routes_openai`, `routes_tgi`, `routes_service`: the routes by API (`http` holds the app
  they share); `responses`: JSON and server-sent events.
- `api`, `scheduler`, `metrics`, `config`: request parsing, admission (the queue and the
  running batch) and cancellation, Prometheus metrics, the settings; `listen`: the socket
  and uvicorn's settings.

    serve("runs/demo/model", port=8000, attribution="runs/demo/attribution")
    with start_server(backend, ServeConfig(port=0)) as server: ...   # server.url

Nothing here imports torch or pygls until a server starts.
"""

from codekiln.serve.config import LspConfig, ServeConfig

_LAZY = {
    "serve": "codekiln.serve.http",
    "start_server": "codekiln.serve.http",
    "RunningServer": "codekiln.serve.http",
    "run_lsp": "codekiln.serve.lsp",
    "build_lsp_server": "codekiln.serve.lsp",
}

__all__ = ["LspConfig", "ServeConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
