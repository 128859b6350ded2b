"""`codekiln serve`: an HTTP server that speaks OpenAI's and TGI's completion APIs.

Routes (see docs/serving.md for every field):

    POST /v1/completions   OpenAI legacy completions; `suffix` fills in the middle; SSE stream
    GET  /v1/models        the one model, with vLLM's `max_model_len`
    POST /generate         TGI; llm-ls's `tgi` backend and llm-vscode
    POST /generate_stream  TGI server-sent events
    POST /                 TGI's compat route: /generate, or /generate_stream with "stream"
    GET  /info             TGI's model facts
    POST /overlap          attribution spans and sources (with an index)
    GET  /health           liveness, never behind the API key
    GET  /metrics          Prometheus text format

Design: the standard library's `ThreadingHTTPServer` gives each connection a thread, so
/health, /metrics and /overlap answer at once whatever runs; generation goes through
`Engine`, which bounds how many samples run at a time and stops one between tokens when its
client disconnects (a failed write while streaming; EOF seen by peeking at the socket
otherwise). No web framework is needed for nine JSON routes, and none is a dependency.

Errors are JSON in the route's API shape: OpenAI's `{"error": {...}}` on /v1 and the
others, TGI's `{"error", "error_type"}` (status 422 for validation, as TGI) on its routes.
Each request logs one line: method, path, status, seconds, prompt and completion tokens.
"""

from __future__ import annotations

import hmac
import json
import logging
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from codekiln.serve.api import (
    OPENAI_FINISH,
    TGI_FINISH,
    ApiError,
    GenerationRequest,
    parse_document,
    parse_openai,
    parse_tgi,
)
from codekiln.serve.config import ServeConfig
from codekiln.serve.engine import ClientGone, Engine, Overloaded, Sample
from codekiln.serve.metrics import Metrics

log = logging.getLogger("codekiln.serve")

TGI_ROUTES = frozenset({"/generate", "/generate_stream", "/", "/info"})
OPEN_ROUTES = frozenset({"/health"})
DRAIN_LIMIT = 64 * 1024 * 1024  # larger refused bodies are cut off, not read


@dataclass
class Usage:
    """Tokens a request used, for its response and its log line."""

    prompt: int = 0
    completion: int = 0

    def add(self, samples: list[Sample], n: int) -> None:
        # A prompt's tokens count once however many samples it gets, as OpenAI counts them.
        self.prompt += sum(s.prompt_tokens for s in samples[::n])
        self.completion += sum(s.tokens for s in samples)

    def body(self) -> dict[str, int]:
        total = self.prompt + self.completion
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": total,
        }


@dataclass
class App:
    """What the routes share: the engine, the settings, metrics, an attribution index."""

    engine: Engine
    config: ServeConfig
    metrics: Metrics
    index: Any = None  # AttributionIndex
    model_name: str = "codekiln"
    created: int = field(default_factory=lambda: int(time.time()))

    def routes(self) -> dict[str, dict[str, Callable[[Exchange], None]]]:
        return {
            "/health": {"GET": self.health},
            "/metrics": {"GET": self.prometheus},
            "/v1/models": {"GET": self.models},
            "/v1/completions": {"POST": self.completions},
            "/generate": {"POST": lambda ex: self.tgi(ex, stream=False)},
            "/generate_stream": {"POST": lambda ex: self.tgi(ex, stream=True)},
            "/": {"POST": lambda ex: self.tgi(ex, stream=False)},
            "/info": {"GET": self.info},
            "/overlap": {"POST": self.overlap},
        }

    def health(self, ex: Exchange) -> None:
        ex.send_json(200, {"status": "ok", "model": self.model_name})

    def prometheus(self, ex: Exchange) -> None:
        ex.send_bytes(200, self.metrics.render().encode(), "text/plain; version=0.0.4")

    def models(self, ex: Exchange) -> None:
        model = {
            "id": self.model_name,
            "object": "model",
            "created": self.created,
            "owned_by": "codekiln",
            "max_model_len": self.engine.context_length or None,
        }
        ex.send_json(200, {"object": "list", "data": [model]})

    def info(self, ex: Exchange) -> None:
        context = self.engine.context_length or None
        ex.send_json(
            200,
            {
                "model_id": self.model_name,
                "max_total_tokens": context,
                "max_input_tokens": context - 1 if context else None,
                "max_concurrent_requests": self.config.max_concurrent + self.config.max_queue,
                "router": "codekiln",
                "supports_fim": bool(self.engine.backend.supports_fim),
            },
        )

    def overlap(self, ex: Exchange) -> None:
        if self.index is None:
            raise ApiError(
                404,
                "no attribution index: start the server with --attribution INDEX",
                code="no_attribution_index",
            )
        from codekiln.attribution import overlap_response

        document = parse_document(ex.read_json(), self.config)
        ex.send_json(200, overlap_response(self.index, document))

    def completions(self, ex: Exchange) -> None:
        request = parse_openai(ex.read_json(), self.config)
        self.engine.check(request)
        ident = f"cmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if request.stream:
            self._stream_openai(ex, request, ident, created)
            return
        samples = self.engine.samples(request, lambda _choice, _delta: None, ex.client_gone)
        ex.usage.add(samples, request.n)
        choices = [
            {
                "text": _echo(request, i) + sample.text,
                "index": i,
                "logprobs": None,
                "finish_reason": OPENAI_FINISH[sample.finish_reason],
            }
            for i, sample in enumerate(samples)
        ]
        ex.send_json(
            200,
            {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": self.model_name,
                "choices": choices,
                "usage": ex.usage.body(),
            },
        )

    def _stream_openai(
        self, ex: Exchange, request: GenerationRequest, ident: str, created: int
    ) -> None:
        def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> None:
            body = {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": self.model_name,
                "choices": choices,
            }
            if usage is not None:
                body["usage"] = usage
            ex.send_event(body)

        def choice(index: int, text: str, finish: str | None = None) -> dict[str, Any]:
            return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}

        started: set[int] = set()

        def on_delta(index: int, delta: str) -> None:
            if index not in started:
                started.add(index)
                delta = _echo(request, index) + delta
            chunk([choice(index, delta)])

        ex.start_events()
        samples = self.engine.samples(request, on_delta, ex.client_gone)
        for index, sample in enumerate(samples):
            chunk([choice(index, "", OPENAI_FINISH[sample.finish_reason])])
        ex.usage.add(samples, request.n)
        if request.include_usage:
            chunk([], ex.usage.body())
        ex.send_done()

    def tgi(self, ex: Exchange, stream: bool) -> None:
        request = parse_tgi(ex.read_json(), self.config, stream)
        self.engine.check(request)
        prefix = request.prompts[0] if request.return_full_text else ""
        if request.stream:
            self._stream_tgi(ex, request, prefix)
            return
        [sample] = self.engine.samples(request, lambda _choice, _delta: None, ex.client_gone)
        ex.usage.add([sample], 1)
        body: dict[str, Any] = {"generated_text": prefix + sample.text}
        if request.details:
            body["details"] = _tgi_details(sample, request)
        ex.send_json(200, body)

    def _stream_tgi(self, ex: Exchange, request: GenerationRequest, prefix: str) -> None:
        # TGI's last event carries the whole text along with the last token, so each delta is
        # held back until the next one (or the end) shows whether it is the last.
        held: list[str] = []
        count = 0

        def event(text: str, final: Sample | None = None) -> None:
            nonlocal count
            token = {"id": -1, "text": text, "logprob": None, "special": False}
            body: dict[str, Any] = {
                "index": count,
                "token": token,
                "generated_text": None if final is None else prefix + final.text,
                "details": None,
            }
            if final is not None and request.details:
                details = _tgi_details(final, request)
                body["details"] = {
                    k: details[k] for k in ("finish_reason", "generated_tokens", "seed")
                }
            count += 1
            ex.send_event(body)

        def on_delta(_choice: int, delta: str) -> None:
            if held:
                event(held.pop())
            held.append(delta)

        ex.start_events()
        [sample] = self.engine.samples(request, on_delta, ex.client_gone)
        ex.usage.add([sample], 1)
        event(held.pop() if held else "", sample)
        ex.close_events()


def _echo(request: GenerationRequest, choice: int) -> str:
    return request.prompts[choice // request.n] if request.echo else ""


def _tgi_details(sample: Sample, request: GenerationRequest) -> dict[str, Any]:
    return {
        "finish_reason": TGI_FINISH[sample.finish_reason],
        "generated_tokens": sample.tokens,
        "seed": None if request.params.is_greedy else request.params.seed,
        "prefill": [],
        "tokens": [],  # per-token ids and logprobs: the stream API yields text only
    }


class Exchange(BaseHTTPRequestHandler):
    """One connection's requests: parsing, auth, dispatch, responses, the log line."""

    protocol_version = "HTTP/1.1"
    server: CodekilnHTTPServer

    def do_GET(self) -> None:  # noqa: N802 (the standard library's names)
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch()

    def _dispatch(self) -> None:
        app = self.server.app
        started = time.monotonic()
        self.status = 0
        self.usage = Usage()
        self._streaming = False
        self._allow = ""
        self._extra_headers: dict[str, str] = {}
        path = self.path.split("?", 1)[0]
        if len(path) > 1:
            path = path.rstrip("/")
        routes = app.routes()
        endpoint = path if path in routes else "other"
        with app.metrics.gauge("requests_in_flight"):
            try:
                self._answer(app, routes, path)
            except ClientGone:
                self.close_connection = True
                self.status = self.status or 499  # nginx's "client closed request"
            finally:
                seconds = time.monotonic() - started
                app.metrics.observe_request(endpoint, self.status, seconds)
                log.info(
                    "%s %s %d %.3fs prompt_tokens=%d completion_tokens=%d",
                    self.command,
                    path,
                    self.status,
                    seconds,
                    self.usage.prompt,
                    self.usage.completion,
                )

    def _answer(self, app: App, routes: dict[str, Any], path: str) -> None:
        tgi = path in TGI_ROUTES
        try:
            if path not in OPEN_ROUTES:
                self._authorize(app.config.api_key)
            methods = routes.get(path)
            if methods is None:
                raise ApiError(404, f"no route {self.command} {path}", code="not_found")
            handler = methods.get(self.command)
            if handler is None:
                self._allow = ", ".join(methods)
                raise ApiError(
                    405,
                    f"{path} takes {self._allow}, not {self.command}",
                    code="method_not_allowed",
                )
            handler(self)
        except ApiError as exc:
            self._refuse(exc, tgi)
        except Overloaded:
            self._refuse(
                ApiError(
                    503, "the server is busy: retry later", code="overloaded", kind="server_error"
                ),
                tgi,
            )
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ClientGone from exc
        except ClientGone:
            raise
        except Exception:
            log.exception("%s %s failed", self.command, path)
            self._refuse(ApiError(500, "internal server error", kind="server_error"), tgi)

    def _refuse(self, exc: ApiError, tgi: bool) -> None:
        if self._streaming:  # headers are out: report in the stream, then end it
            self.send_event(exc.tgi_body() if tgi else exc.openai_body())
            self.close_events()
            return
        if exc.status in (401,):
            self._extra_headers = {"WWW-Authenticate": "Bearer"}
        self.send_json(exc.status, exc.tgi_body() if tgi else exc.openai_body())

    def _authorize(self, api_key: str | None) -> None:
        if api_key is None:
            return
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), api_key.encode()
        ):
            raise ApiError(
                401,
                "missing or wrong API key: send Authorization: Bearer KEY",
                code="invalid_api_key",
            )

    def read_json(self) -> Any:
        """The request body as JSON (413 when too large, 400 when malformed)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise ApiError(411, "send the body with a Content-Length, not chunked")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise ApiError(400, "Content-Length must be a non-negative integer")
        limit = self.server.app.config.max_body_bytes
        if length > limit:
            self.close_connection = True
            self._discard(length)
            raise ApiError(
                413, f"the body has {length} bytes; the limit is {limit}", code="body_too_large"
            )
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            message = f"the body is not valid JSON ({exc})"
            raise ApiError(400, message, code="invalid_json") from None

    def _discard(self, length: int) -> None:
        """Read and drop a refused body (up to DRAIN_LIMIT bytes): a client still sending
        when the server closes gets a reset, and loses the 413 with it."""
        remaining = length if length <= DRAIN_LIMIT else 0
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)

    def client_gone(self) -> bool:
        """Whether the client closed its side: the socket reads EOF without blocking."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def send_json(self, status: int, body: Any) -> None:
        self.send_bytes(status, json.dumps(body).encode(), "application/json")

    def send_bytes(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if self._allow and status == 405:
            self.send_header("Allow", self._allow)
        for name, value in self._extra_headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def start_events(self) -> None:
        """Headers of a server-sent event stream; the connection closes after it."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self._streaming = True

    def send_event(self, body: Any) -> None:
        self._write(b"data: " + json.dumps(body).encode() + b"\n\n")

    def send_done(self) -> None:
        self._write(b"data: [DONE]\n\n")
        self.close_events()

    def close_events(self) -> None:
        self._streaming = False

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError) as exc:
            raise ClientGone from exc

    def send_response(self, code: int, message: str | None = None) -> None:
        self.status = code
        super().send_response(code, message)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silenced: `_dispatch` logs one line per request instead."""


class CodekilnHTTPServer(ThreadingHTTPServer):
    """A thread per connection. The threads are joined when the server closes (none may be
    left inside the model when the interpreter exits: that aborts the process), so closing
    first shuts the connections down, idle keep-alive ones included."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, Exchange)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        """Stop serving: no new generation, running ones end, connections are shut down and
        their threads joined."""
        self.app.engine.close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()


@dataclass
class RunningServer:
    """A server answering in a background thread; `close()` (or leaving `with`) stops it."""

    server: CodekilnHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def app(self) -> App:
        return self.server.app

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join()
        self.server.close_all()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_app(
    model: Any,
    config: ServeConfig,
    attribution: str | Path | Any = None,
    **backend_options: Any,
) -> App:
    """The routes' shared state: `model` is a Backend, or a folder or URL for `load_backend`;
    `attribution` an AttributionIndex or its folder."""
    if isinstance(model, str | Path):
        from codekiln.generate import load_backend

        model = load_backend(model, **backend_options)
    if isinstance(attribution, str | Path):
        from codekiln.attribution import AttributionIndex

        attribution = AttributionIndex.open(attribution)
    metrics = Metrics()
    name = config.model_name or str(getattr(model, "name", "codekiln"))
    return App(Engine(model, config, metrics), config, metrics, attribution, name)


def start_server(
    model: Any,
    config: ServeConfig | None = None,
    attribution: str | Path | Any = None,
    **backend_options: Any,
) -> RunningServer:
    """Start serving in a background thread (port 0: any free port; see `.url`)."""
    config = config or ServeConfig(port=0)
    app = build_app(model, config, attribution, **backend_options)
    server = _bind(config, app)
    thread = threading.Thread(target=server.serve_forever, name="codekiln-serve", daemon=True)
    thread.start()
    return RunningServer(server, thread)


def serve(
    model: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    attribution: str | Path | Any = None,
    api_key: str | None = None,
    config: ServeConfig | None = None,
    **backend_options: Any,
) -> None:
    """Serve until interrupted; `host`, `port` and `api_key` override `config`'s.

    backend_options go to `load_backend` (`engine`, `device`, `dtype`, ...).
    """
    config = replace(config or ServeConfig(), host=host, port=port, api_key=api_key)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = build_app(model, config, attribution, **backend_options)
    server = _bind(config, app)
    host, port = server.server_address[:2]
    log.info(
        "serving %s on http://%s:%d (context %s tokens, FIM %s, attribution %s, auth %s)",
        app.model_name,
        host,
        port,
        app.engine.context_length or "unknown",
        "yes" if app.engine.backend.supports_fim else "no",
        "yes" if app.index is not None else "no",
        "on" if config.api_key else "off",
    )
    try:
        server.serve_forever()
    finally:
        server.close_all()


def _bind(config: ServeConfig, app: App) -> CodekilnHTTPServer:
    from codekiln.errors import UserError

    try:
        return CodekilnHTTPServer((config.host, config.port), app)
    except OSError as exc:
        raise UserError(
            f"cannot listen on {config.host}:{config.port} ({exc.strerror or exc}): "
            "pick another --port or --host"
        ) from None
