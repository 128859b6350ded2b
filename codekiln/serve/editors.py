"""`codekiln editor-settings`: an editor's settings for one model, its context window derived.

llm-ls (behind llm-vscode and llm.nvim) cuts each prompt to `contextWindow` tokens (less 3
for the FIM tokens) and leaves no room for the answer, so a window equal to the model's
context makes every prompt from a long file too long for the completion asked for. The
settings written here set the window to the model's context minus the completion's
`max_new_tokens`, read from the model folder's `config.json` (`n_positions`, or
`max_position_embeddings`) or from a running server (`/v1/models`' `max_model_len`, as vLLM
and `codekiln serve` report it, or TGI's `/info` `max_total_tokens`).

    facts = model_facts("runs/demo/model")           # 512 tokens of context, FIM tokens
    print(render("vscode", "tgi", facts, max_new_tokens=60))   # llm.contextWindow: 452
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from codekiln.errors import UserError

EDITORS = ("vscode", "neovim", "emacs")
BACKENDS = ("tgi", "openai", "lsp")
DEFAULT_SERVER = "http://127.0.0.1:8000"
DEFAULT_MAX_NEW_TOKENS = 60  # llm-vscode's and llm.nvim's default requestBody
FIM_TOKENS = {"prefix": "<fim_prefix>", "middle": "<fim_middle>", "suffix": "<fim_suffix>"}
END_OF_TEXT = "<|endoftext|>"
CONTEXT_FIELDS = ("n_positions", "max_position_embeddings", "n_ctx")
ATTRIBUTION_WINDOW = 250  # characters each side of the cursor llm-vscode sends
# The wrapper that plugins expecting one llm-ls executable start (editors/neovim/codekiln-lsp).
WRAPPER = Path(__file__).resolve().parents[2] / "editors" / "neovim" / "codekiln-lsp"


@dataclass(frozen=True)
class ModelFacts:
    """What the settings need to know about a model, from its folder or its server."""

    source: str  # the folder (absolute) or the server's root URL
    name: str
    context_tokens: int
    fim: bool
    tokenizer: str | None = None  # tokenizer.json, for llm-ls to count tokens
    is_url: bool = False


def context_window(context_tokens: int, max_new_tokens: int) -> int:
    """The prompt's share of the context: what is left after the completion's tokens.

    >>> context_window(512, 60)
    452
    """
    if not 1 <= max_new_tokens < context_tokens:
        raise UserError(
            f"--max-new-tokens must be between 1 and {context_tokens - 1} (the model has "
            f"{context_tokens} tokens of context), got {max_new_tokens}"
        )
    return context_tokens - max_new_tokens


def model_facts(source: str, context_tokens: int | None = None) -> ModelFacts:
    """The facts of a model folder or of a running server's model (`context_tokens`, when
    given, replaces the context the model reports)."""
    if source.startswith(("http://", "https://")):
        facts = _server_facts(source)
    else:
        facts = _folder_facts(Path(source))
    if context_tokens is not None:
        facts = replace(facts, context_tokens=context_tokens)
    if facts.context_tokens < 2:
        raise UserError(
            f"{source} does not report its context length: give it with --context-tokens N"
        )
    return facts


def _folder_facts(folder: Path) -> ModelFacts:
    from codekiln.generate.backend import model_name
    from codekiln.model.hf import read_hf_config

    config = read_hf_config(folder)
    context = next((config[k] for k in CONTEXT_FIELDS if isinstance(config.get(k), int)), 0)
    tokenizer = folder / "tokenizer.json"
    fim = False
    if tokenizer.exists():
        try:
            added = json.loads(tokenizer.read_text(encoding="utf-8")).get("added_tokens") or []
        except (OSError, json.JSONDecodeError, AttributeError):
            added = []
        names = {token.get("content") for token in added if isinstance(token, dict)}
        fim = set(FIM_TOKENS.values()) <= names
    folder = folder.resolve()
    return ModelFacts(
        source=str(folder),
        name=model_name(folder),  # the id `codekiln serve` lists for this folder
        context_tokens=context,
        fim=fim,
        tokenizer=str(tokenizer.resolve()) if tokenizer.exists() else None,
    )


def server_root(url: str) -> str:
    """A server's root from any of the URLs users give for it.

    >>> server_root("http://127.0.0.1:8000/v1/")
    'http://127.0.0.1:8000'
    """
    root = url.rstrip("/")
    for tail in ("/v1/completions", "/generate", "/v1"):
        if root.endswith(tail):
            return root[: -len(tail)]
    return root


def _server_facts(url: str) -> ModelFacts:
    root = server_root(url)
    name, context, fim = "codekiln", 0, True
    models = _get_json(root + "/v1/models")
    entries = models.get("data") if isinstance(models, dict) else None
    if isinstance(entries, list) and entries and isinstance(entries[0], dict):
        first = entries[0]
        name = first.get("id") if isinstance(first.get("id"), str) else name
        context = first.get("max_model_len") if isinstance(first.get("max_model_len"), int) else 0
    info = _get_json(root + "/info")
    if isinstance(info, dict):
        if not context and isinstance(info.get("max_total_tokens"), int):
            context = info["max_total_tokens"]
        if isinstance(info.get("supports_fim"), bool):
            fim = info["supports_fim"]
    if models is None and info is None:
        raise UserError(f"{root} answers neither /v1/models nor /info: is the server up?")
    return ModelFacts(source=root, name=name, context_tokens=context, fim=fim, is_url=True)


def _get_json(url: str) -> Any:
    """The JSON at `url`, or None when the server has no such route or is not up."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def render(
    editor: str,
    backend: str | None,
    facts: ModelFacts,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    server: str | None = None,
) -> str:
    """The settings file's text for `editor` (vscode: JSON for settings.json; neovim: an
    llm.nvim set-up in Lua; emacs: codekiln-lsp.el's command). `server` is the URL of
    `codekiln serve` when `facts` come from a folder (default http://127.0.0.1:8000)."""
    if editor not in EDITORS:
        raise UserError(f"--editor must be one of {', '.join(EDITORS)}, got {editor!r}")
    backend = backend or ("lsp" if editor == "emacs" else "tgi")
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if editor == "emacs" and backend != "lsp":
        raise UserError(
            "emacs talks to codekiln lsp (lsp-mode): use --backend lsp; with a server URL it "
            "runs codekiln lsp --endpoint URL"
        )
    window = context_window(facts.context_tokens, max_new_tokens)
    root = facts.source if facts.is_url else server_root(server or DEFAULT_SERVER)
    note = (
        f"generated by `codekiln editor-settings {facts.source} --editor {editor} --backend "
        f"{backend} --max-new-tokens {max_new_tokens}`: context window {window} = "
        f"{facts.context_tokens} tokens of context - {max_new_tokens} new tokens"
    )
    if editor == "emacs":
        return _emacs(facts, max_new_tokens, note)
    settings = _llm_settings(backend, facts, max_new_tokens, window, root)
    if editor == "vscode":
        return json.dumps(_vscode(settings), indent=2) + "\n"
    return f'-- {note}\nrequire("llm").setup({_lua(_neovim(settings))})\n'


def _llm_settings(
    backend: str, facts: ModelFacts, max_new: int, window: int, root: str
) -> dict[str, Any]:
    """llm-ls's settings, named as llm-ls names them; each editor renames them."""
    sampling = {"temperature": 0.2, "top_p": 0.95}
    if backend == "openai":
        body: dict[str, Any] = {"max_tokens": max_new, **sampling}
        url = root + "/v1/completions"
    else:
        body = {"parameters": {"max_new_tokens": max_new, **sampling}}
        url = root + "/generate" if backend == "tgi" else "http://127.0.0.1:1"  # lsp: unused
    settings: dict[str, Any] = {
        "backend": "openai" if backend == "openai" else "tgi",
        "url": url,
        "model": facts.name,
        "request_body": body,
        "fim": {"enabled": facts.fim, **FIM_TOKENS},
        "tokens_to_clear": [END_OF_TEXT],
        "context_window": window,
    }
    if backend == "lsp":
        source = "CODEKILN_ENDPOINT" if facts.is_url else "CODEKILN_MODEL"
        settings["lsp"] = {
            "bin_path": str(WRAPPER),
            "cmd_env": {source: facts.source, "CODEKILN_LSP_ARGS": f"--max-new-tokens {max_new}"},
        }
    else:
        if facts.tokenizer:
            settings["tokenizer"] = {"path": facts.tokenizer}
        settings["attribution"] = root + "/overlap?offsets=utf-16"
    return settings


def _vscode(settings: dict[str, Any]) -> dict[str, Any]:
    fim = settings["fim"]
    out: dict[str, Any] = {
        "llm.configTemplate": "Custom",
        "llm.backend": settings["backend"],
        "llm.url": settings["url"],
        "llm.modelId": settings["model"],
    }
    if "lsp" in settings:
        # VS Code has no per-server environment: the wrapper reads CODEKILN_MODEL (or
        # CODEKILN_ENDPOINT) from the one VS Code starts with.
        out["llm.lsp.binaryPath"] = settings["lsp"]["bin_path"]
    out.update(
        {
            "llm.requestBody": settings["request_body"],
            "llm.fillInTheMiddle.enabled": fim["enabled"],
            "llm.fillInTheMiddle.prefix": fim["prefix"],
            "llm.fillInTheMiddle.middle": fim["middle"],
            "llm.fillInTheMiddle.suffix": fim["suffix"],
            "llm.tokensToClear": settings["tokens_to_clear"],
        }
    )
    if "tokenizer" in settings:
        out["llm.tokenizer"] = settings["tokenizer"]
    out["llm.contextWindow"] = settings["context_window"]
    out["llm.enableAutoSuggest"] = True
    if "attribution" in settings:
        out["llm.attributionEndpoint"] = settings["attribution"]
        out["llm.attributionWindowSize"] = ATTRIBUTION_WINDOW
    return out


def _neovim(settings: dict[str, Any]) -> dict[str, Any]:
    out = {key: settings[key] for key in ("backend", "url", "model")}
    out.update(
        tokens_to_clear=settings["tokens_to_clear"],
        request_body=settings["request_body"],
        fim=settings["fim"],
        context_window=settings["context_window"],
    )
    for key in ("tokenizer", "lsp"):
        if key in settings:
            out[key] = settings[key]
    out["enable_suggestions_on_startup"] = True
    return out


def _emacs(facts: ModelFacts, max_new: int, note: str) -> str:
    source = "--endpoint" if facts.is_url else "--model"
    command = ["codekiln", "lsp", source, facts.source, "--max-new-tokens", str(max_new)]
    words = " ".join(json.dumps(word) for word in command)
    return (
        f";; {note}\n"
        ";; (codekiln lsp fits each prompt to the model's context itself.)\n"
        f"(setq codekiln-lsp-command '({words}))\n"
    )


def _lua(value: Any, indent: int = 0) -> str:
    """`value` as a Lua table constructor.

    >>> print(_lua({"a": [1, "x"], "b": {"c": True}}))
    {
      a = { 1, "x" },
      b = {
        c = true,
      },
    }
    """
    pad = "  " * (indent + 1)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "{ " + ", ".join(_lua(item, indent) for item in value) + " }"
    lines = [f"{pad}{_lua_key(key)} = {_lua(item, indent + 1)}," for key, item in value.items()]
    return "{\n" + "\n".join(lines) + "\n" + "  " * indent + "}"


def _lua_key(key: str) -> str:
    return key if key.isidentifier() else f"[{json.dumps(key)}]"
