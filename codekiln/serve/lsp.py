"""`codekiln lsp`: a language server over stdio that completes code with the model.

Requests it answers (pygls 2, LSP 3.18):

- `textDocument/inlineCompletion`: ghost text at the cursor (VS Code, Neovim 0.12+, Zed...);
- `textDocument/completion`: one completion item, for editors without inline completion;
- `llm-ls/getCompletions`: llm-ls's custom request, `{"request_id", "completions":
  [{"generated_text"}]}`, so llm.nvim and llm-vscode work unchanged with this server as
  their `lsp.bin_path` / `llm.lsp.binaryPath` (`llm-ls/acceptCompletion` and
  `llm-ls/rejectCompletion` are acknowledged and logged).

The server keeps the open documents (didOpen/didChange/didClose, incremental sync) and
builds each prompt itself (`codekiln.serve.context`): the lines around the cursor within the
context budget, the suffix as fill-in-the-middle when the model has FIM tokens, one line of
completion when code follows the cursor on its line and several otherwise. llm-ls's request
settings apply where they make sense (`fim.enabled`, `contextWindow`, `tokensToClear`,
`requestBody`'s sampling parameters); its `model`, `backend` and `url` are ignored: the
model is the one this server was started with (`--model FOLDER`, or `--endpoint URL` for
`codekiln serve`, any OpenAI-compatible server, or llama.cpp's `llama-server`, whose
`/infill` fills in the middle: `LspConfig.endpoint_api`), and its own FIM tokens are used.

A request for a document the server never saw opened (or saw closed) answers an empty
result, as llm-ls does, rather than an error: editors send completion requests for buffers
they have not synced yet. With `--endpoint`, the server starts whether or not the endpoint is
up: each completion tries to reach it (at most once per backoff, which doubles from half a
second to ten), answers nothing while it is down, logging one line, and works as soon as it
answers; an endpoint that fails mid-completion is logged the same way.

Staleness: one generation runs at a time. A request whose client cancels it
(`$/cancelRequest`) or that a newer request for the same document supersedes stops between
two tokens and answers with nothing; handlers are coroutines, so the editor's next request
is read while a generation runs on a worker thread. Each completion logs one line on
stderr: document, position, mode, prompt size, milliseconds and outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from codekiln.errors import UserError
from codekiln.generate.params import SamplingParams
from codekiln.serve.config import LspConfig
from codekiln.serve.context import CursorContext, cursor_context

log = logging.getLogger("codekiln.lsp")

DEFAULT_CONTEXT = 2048  # tokens, for a backend that does not know its context
GET_COMPLETIONS = "llm-ls/getCompletions"
ACCEPT_COMPLETION = "llm-ls/acceptCompletion"
REJECT_COMPLETION = "llm-ls/rejectCompletion"
LOCK_POLL_SECONDS = 0.02
FIRST_RETRY_SECONDS = 0.5  # backoff for an endpoint that is not up, doubled to the last
LAST_RETRY_SECONDS = 10.0
PROBE_TIMEOUT_SECONDS = 5.0  # a host that does not answer must not hold completions long


@dataclass
class Ticket:
    """One completion request's right to run; `cancelled` is set to stop it."""

    uri: str
    cancelled: threading.Event


@dataclass(frozen=True)
class Settings:
    """Per-request settings: the server's, overridden by an llm-ls request's."""

    params: SamplingParams
    fim: bool
    context_tokens: int
    tokens_to_clear: tuple[str, ...] = ()


class Completer:
    """The model behind the language server: prompts, one generation at a time, staleness.

    Usable without LSP (the IPython extension and the tests call `complete` directly).
    """

    def __init__(self, backend: Any, config: LspConfig | None = None) -> None:
        self.backend = backend
        self.config = config or LspConfig()
        self._generation = threading.Lock()
        self._tickets_lock = threading.Lock()
        self._latest: dict[str, Ticket] = {}

    def default_settings(self) -> Settings:
        config = self.config
        params = SamplingParams(
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
        )
        return Settings(params, config.fim, config.context_tokens)

    def ticket(self, uri: str) -> Ticket:
        """A new ticket for `uri`, cancelling the document's previous one (superseded)."""
        ticket = Ticket(uri, threading.Event())
        with self._tickets_lock:
            previous = self._latest.get(uri)
            if previous is not None:
                previous.cancelled.set()
            self._latest[uri] = ticket
        return ticket

    def release(self, ticket: Ticket) -> None:
        with self._tickets_lock:
            if self._latest.get(ticket.uri) is ticket:
                del self._latest[ticket.uri]

    def context(self, text: str, offset: int, settings: Settings) -> CursorContext:
        budget = self._prompt_budget(settings)
        return cursor_context(text, offset, budget, self._count, self.config.prefix_share)

    def complete(
        self, text: str, offset: int, settings: Settings | None = None, ticket: Ticket | None = None
    ) -> str | None:
        """The completion at character `offset` of `text`; None when cancelled."""
        settings = settings or self.default_settings()
        ticket = ticket or Ticket("", threading.Event())
        started = time.monotonic()
        ready = getattr(self.backend, "ready", None)
        if ready is not None and not ready():  # an endpoint that is not up (it logged why)
            return ""
        context = self.context(text, offset, settings)
        fim = settings.fim and self.backend.supports_fim and bool(context.suffix.strip())
        stop = self.config.multiline_stop if context.multiline else ("\n",)
        params = _with_stops(settings.params, stop)
        try:
            text_out = self._generate(context, fim, params, ticket)
            outcome = "cancelled" if text_out is None else f"{len(text_out)} chars"
        except UserError as exc:  # an endpoint that went away or refused: no completion
            text_out, outcome = "", f"failed: {exc}"
        log.info(
            "completion %s offset %d %s%s: prompt %d+%d chars, %.0f ms, %s",
            ticket.uri or "-",
            offset,
            "multi-line" if context.multiline else "single line",
            " FIM" if fim else "",
            len(context.prefix),
            len(context.suffix) if fim else 0,
            1000 * (time.monotonic() - started),
            outcome,
        )
        if text_out is None:
            return None
        for token in settings.tokens_to_clear:
            text_out = text_out.replace(token, "")
        if not context.multiline:
            text_out = text_out.split("\n", 1)[0]
        return text_out

    def _generate(
        self, context: CursorContext, fim: bool, params: SamplingParams, ticket: Ticket
    ) -> str | None:
        while not self._generation.acquire(timeout=LOCK_POLL_SECONDS):
            if ticket.cancelled.is_set():
                return None
        try:
            if ticket.cancelled.is_set():
                return None
            suffix = context.suffix if fim else None
            stream = self.backend.stream(context.prefix, params, suffix)
            parts = []
            try:
                for delta in stream:
                    parts.append(delta)
                    if ticket.cancelled.is_set():
                        return None
            finally:
                stream.close()
            return "".join(parts)
        finally:
            self._generation.release()

    def _prompt_budget(self, settings: Settings) -> int:
        context = int(getattr(self.backend, "context_length", 0) or 0) or DEFAULT_CONTEXT
        if settings.context_tokens:
            context = min(context, settings.context_tokens)
        fim_tokens = 3 if settings.fim else 0
        return max(1, context - settings.params.max_new_tokens - fim_tokens)

    def _count(self, text: str) -> int:
        count = getattr(self.backend, "count_tokens", None)
        if count is None:
            return -(-len(text) // 3)  # a remote model's tokenizer is unknown: ~3 chars a token
        return count(text)


class Endpoint:
    """An endpoint (`codekiln serve`'s, any OpenAI-compatible one, or llama.cpp's: `api`, as
    `LspConfig.endpoint_api`) that may not be up yet.

    The language server starts before it, or outlives a restart of it: `ready()` connects on
    first use (telling llama.cpp from the others by its `/props`, and reading the model's
    name and context). While the endpoint does not answer (or refuses, as with a wrong API
    key: the line says so) each call logs one line and the next try waits
    `FIRST_RETRY_SECONDS`, doubled after each failure up to `LAST_RETRY_SECONDS`. Once
    connected it behaves as the backend it wraps.
    """

    def __init__(self, url: str, api: str = "auto", **options: Any) -> None:
        self.url = url
        self.api = api
        self.name = url
        self.retries = options.pop("retries", 1)  # for completions; the probe fails fast
        self.timeout = options.pop("timeout", 60.0)
        self.options = options
        self.backend: Any = None
        self._lock = threading.Lock()
        self._delay = FIRST_RETRY_SECONDS
        self._next_try = 0.0

    def ready(self) -> bool:
        """Whether the endpoint answers; tries to connect when the backoff allows."""
        with self._lock:
            if self.backend is not None:
                return True
            now = time.monotonic()
            if now < self._next_try:
                wait = self._next_try - now
                log.info("endpoint %s not ready: no completion, next try in %.1f s", self.url, wait)
                return False
            from codekiln.serve.llama_server import connect

            try:
                probe_timeout = min(PROBE_TIMEOUT_SECONDS, self.timeout)
                options = {"retries": 0, "timeout": probe_timeout, **self.options}
                backend = connect(self.url, self.api, **options)
            except UserError as exc:
                self._next_try = now + self._delay
                retry = self._delay
                log.info("endpoint not ready: %s; no completion, next try in %.1f s", exc, retry)
                self._delay = min(2 * self._delay, LAST_RETRY_SECONDS)
                return False
            backend.retries, backend.timeout = self.retries, self.timeout
            self.backend, self.name = backend, backend.name
            context = backend.context_length or "unknown"
            kind = getattr(backend, "kind", "openai")
            log.info(
                "endpoint %s up: model %s, context %s tokens, %s API",
                self.url,
                self.name,
                context,
                kind,
            )
            return True

    @property
    def supports_fim(self) -> bool:
        return self.backend.supports_fim if self.backend is not None else True

    @property
    def context_length(self) -> int:
        return self.backend.context_length if self.backend is not None else 0

    def stream(self, prompt: str, params: SamplingParams, suffix: str | None = None) -> Any:
        assert self.backend is not None, "stream() before ready()"
        return self.backend.stream(prompt, params, suffix)


def llm_ls_settings(params: dict[str, Any], defaults: Settings) -> Settings:
    """Settings from an `llm-ls/getCompletions` request (its `requestBody` in TGI's shape,
    `{"parameters": {...}}`, or OpenAI's flat one).

    >>> base = Settings(SamplingParams(max_new_tokens=64), True, 0)
    >>> body = {"parameters": {"max_new_tokens": 12, "temperature": 0.5}}
    >>> s = llm_ls_settings({"requestBody": body, "fim": {"enabled": False}}, base)
    >>> s.params.max_new_tokens, s.params.temperature, s.fim
    (12, 0.5, False)
    """
    body = params.get("requestBody") or {}
    sampling = body.get("parameters") if isinstance(body.get("parameters"), dict) else body
    base = defaults.params
    temperature = _number(sampling.get("temperature"), base.temperature)
    max_new = sampling.get("max_new_tokens", sampling.get("max_tokens"))
    stop = sampling.get("stop") or sampling.get("stop_tokens") or ()
    stop = (stop,) if isinstance(stop, str) else tuple(s for s in stop if isinstance(s, str) and s)
    do_sample = sampling.get("do_sample")
    sample_params = SamplingParams(
        max_new_tokens=max_new if _positive_int(max_new) else base.max_new_tokens,
        temperature=temperature,
        top_p=_number(sampling.get("top_p"), base.top_p, upper=1.0),
        seed=sampling["seed"] if _positive_int(sampling.get("seed")) else base.seed,
        stop=stop,
        greedy=temperature == 0 or do_sample is False,
    )
    fim = params.get("fim")
    window = params.get("contextWindow")
    clear = params.get("tokensToClear") or ()
    return Settings(
        params=sample_params,
        fim=bool(fim.get("enabled", True)) if isinstance(fim, dict) else defaults.fim,
        context_tokens=window if _positive_int(window) else defaults.context_tokens,
        tokens_to_clear=tuple(t for t in clear if isinstance(t, str) and t),
    )


def build_lsp_server(completer: Completer) -> Any:
    """A pygls `LanguageServer` answering completion requests with `completer`."""
    try:
        from lsprotocol import types
        from pygls.lsp.server import LanguageServer
    except ImportError:
        raise UserError(
            "the language server needs pygls and lsprotocol, which codekiln depends on: "
            "reinstall it (pip install --force-reinstall codekiln) or pip install 'pygls>=2,<3'"
        ) from None
    import codekiln

    server = LanguageServer("codekiln", codekiln.__version__)

    def opened(uri: str) -> Any:
        """The document as the editor last sent it; None when it was never opened (pygls
        would read the file from disk, or fail for an unsaved buffer)."""
        return server.workspace.text_documents.get(unquote(uri))

    async def run(uri: str, position: types.Position, settings: Settings) -> str | None:
        document = opened(uri)
        if document is None:
            log.info("completion %s: document not opened, empty result", uri)
            return None
        text = document.source
        offset = document.offset_at_position(position)
        ticket = completer.ticket(uri)
        try:
            return await asyncio.to_thread(completer.complete, text, offset, settings, ticket)
        finally:
            ticket.cancelled.set()  # a cancelled task leaves its thread: stop it too
            completer.release(ticket)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: LanguageServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        uri, position = params.text_document.uri, params.position
        text = await run(uri, position, completer.default_settings())
        if not text:
            return types.InlineCompletionList(items=[])
        item = types.InlineCompletionItem(
            insert_text=text, range=types.Range(start=position, end=position)
        )
        return types.InlineCompletionList(items=[item])

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(
        ls: LanguageServer, params: types.CompletionParams
    ) -> types.CompletionList:
        uri, position = params.text_document.uri, params.position
        document = opened(uri)
        lines = document.lines if document is not None else []  # as the request saw them
        line = list(lines[position.line : position.line + 1])
        text = await run(uri, position, completer.default_settings())
        if not text:
            return types.CompletionList(is_incomplete=True, items=[])
        return types.CompletionList(
            is_incomplete=True, items=[_completion_item(types, line, position, text)]
        )

    @server.feature(GET_COMPLETIONS)
    async def get_completions(ls: LanguageServer, raw: Any) -> dict[str, Any]:
        params = _llm_ls_params(_plain(raw))
        settings = llm_ls_settings(params, completer.default_settings())
        where = params["position"]
        position = types.Position(line=where["line"], character=where["character"])
        text = await run(params["textDocument"]["uri"], position, settings)
        completions = [{"generated_text": text}] if text else []  # nothing to show: none
        return {"request_id": str(uuid.uuid4()), "completions": completions}

    @server.feature(ACCEPT_COMPLETION)
    def accept_completion(ls: LanguageServer, raw: Any) -> None:
        log.info("completion accepted: %s", _plain(raw).get("requestId"))

    @server.feature(REJECT_COMPLETION)
    def reject_completion(ls: LanguageServer, raw: Any) -> None:
        log.info("completion rejected: %s", _plain(raw).get("requestId"))

    return server


def run_lsp(
    model: str | None = None,
    endpoint: str | None = None,
    config: LspConfig | None = None,
    api_key: str | None = None,
    **backend_options: Any,
) -> None:
    """Serve LSP on stdin/stdout until the editor exits; exactly one of `model` (a folder)
    and `endpoint` (the URL of `codekiln serve`, an OpenAI-compatible server or llama.cpp's
    llama-server, as `config.endpoint_api` says) names the model."""
    from codekiln.generate import load_backend

    if (model is None) == (endpoint is None):
        raise UserError("give exactly one of --model FOLDER and --endpoint URL")
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
        )
    if endpoint is not None:
        if not endpoint.startswith(("http://", "https://")):
            raise UserError(f"--endpoint must be an http(s) URL, got {endpoint!r}")
        api = (config or LspConfig()).endpoint_api
        backend = Endpoint(endpoint, api, api_key=api_key, **backend_options)
        backend.ready()  # connects now if it can; otherwise on the first completion
    else:
        backend = load_backend(model, **backend_options)
    server = build_lsp_server(Completer(backend, config))
    log.info("codekiln lsp: model %s, FIM %s", backend.name, backend.supports_fim)
    server.start_io()


def main(argv: list[str] | None = None) -> None:
    """`python -m codekiln.serve.lsp (--model FOLDER | --endpoint URL)`, for editors to start
    where the `codekiln` command is not on their PATH."""
    parser = argparse.ArgumentParser(prog="codekiln-lsp", description=main.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a model folder (Hugging Face format)")
    source.add_argument(
        "--endpoint", help="codekiln serve, an OpenAI-compatible server or llama.cpp's llama-server"
    )
    parser.add_argument(
        "--endpoint-api",
        choices=("auto", "openai", "llama.cpp"),
        default=LspConfig.endpoint_api,
        help="what --endpoint is (auto: llama.cpp when its GET /props says so)",
    )
    parser.add_argument("--api-key", help="Bearer token for --endpoint")
    parser.add_argument("--max-new-tokens", type=int, default=LspConfig.max_new_tokens)
    parser.add_argument("--context-tokens", type=int, default=LspConfig.context_tokens)
    parser.add_argument("--temperature", type=float, default=LspConfig.temperature)
    args = parser.parse_args(argv)
    try:
        config = LspConfig(
            max_new_tokens=args.max_new_tokens,
            context_tokens=args.context_tokens,
            temperature=args.temperature,
            endpoint_api=args.endpoint_api,
        )
        run_lsp(args.model, args.endpoint, config, api_key=args.api_key)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def _completion_item(types: Any, line: list[str], position: Any, text: str) -> Any:
    """An item that replaces the word before the cursor with that word + the completion, so
    editors that filter items by the typed word keep it."""
    before = line[0][: position.character] if line else ""
    start = len(before)
    while start > 0 and (before[start - 1].isalnum() or before[start - 1] == "_"):
        start -= 1
    word = before[start:]
    first_line = text.split("\n", 1)[0]
    edit_range = types.Range(
        start=types.Position(line=position.line, character=start), end=position
    )
    return types.CompletionItem(
        label=(word + first_line).strip()[:80] or text.strip()[:80],
        kind=types.CompletionItemKind.Text,
        detail="codekiln",
        filter_text=word + text,
        sort_text="0",
        text_edit=types.TextEdit(range=edit_range, new_text=word + text),
        insert_text_format=types.InsertTextFormat.PlainText,
    )


def _llm_ls_params(params: dict[str, Any]) -> dict[str, Any]:
    """The request's params with textDocument and position at the top, where llm-ls reads
    them; some llm.nvim versions nest them one level down (`table.insert(params, ...)`)."""
    if "textDocument" in params and "position" in params:
        return params
    for value in params.values():
        if isinstance(value, dict) and "textDocument" in value and "position" in value:
            return {**params, **value}
    raise UserError("llm-ls/getCompletions needs textDocument and position")


def _plain(value: Any) -> Any:
    """pygls hands custom requests' params over as namedtuples: back to dicts and lists."""
    if hasattr(value, "_asdict"):
        return {key: _plain(item) for key, item in value._asdict().items()}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _with_stops(params: SamplingParams, stops: tuple[str, ...]) -> SamplingParams:
    from dataclasses import replace

    return replace(params, stop=tuple(dict.fromkeys((*params.stop, *stops))))


def _number(value: Any, default: float, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return default
    if upper is not None and not 0 < value <= upper:
        return default
    return float(value)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


if __name__ == "__main__":
    main()
