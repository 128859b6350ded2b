"""`codekiln serve`: an HTTP server that speaks OpenAI's and TGI's completion APIs.

Routes (see docs/serving.md for every field):

    POST /v1/completions   OpenAI legacy completions; `suffix` fills in the middle; SSE stream
    GET  /v1/models        the one model, with vLLM's `max_model_len`
    POST /generate         TGI; llm-ls's `tgi` backend and llm-vscode
    POST /generate_stream  TGI server-sent events
    POST /                 TGI's compat route: a one-element list, or a stream with "stream"
    GET  /info             TGI's model facts
    POST /overlap          attribution spans and sources (with an index)
    GET  /health           liveness, never behind the API key
    GET  /metrics          Prometheus text format

This module holds the app (authorization, limits, errors, the request log) and starting the
server; the routes live by API: `routes_openai`, `routes_tgi`, `routes_service` (health,
metrics, overlap), and what they answer with in `responses`.

Design: a Starlette app served by uvicorn on one asyncio loop. The loop only parses,
routes and writes; generation runs in `Scheduler`'s threads (or its batch), which hand each
request's text back as events (`Generation.events()`), so /health and /metrics answer at
once whatever is generating. While a generation runs, its route also waits for the
client's `http.disconnect` and cancels the generation when it comes: the scheduler drops the
sequence within one step, streamed or not.

Bad requests get a JSON 4xx in the route's API shape, never a 500 or HTML: OpenAI's
`{"error": {...}}` on /v1 and the others; TGI's `{"error", "error_type"}` on its routes,
where validation is 422 and a full queue 429 (OpenAI's routes: 503), both full-queue
answers with `Retry-After`. Limits: the body (413), the URL (414) and the headers (431),
and `read_timeout` for a request to arrive whole (a head that never ends is cut off, a body
that stalls gets 408; `codekiln.serve.listen` adapts uvicorn's h11 protocol for heads that
never end and requests h11 cannot parse, which uvicorn leaves open or answers in plain text).
Each request logs one line: method, path, status, seconds, prompt and completion tokens.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from codekiln.serve import routes_openai as openai
from codekiln.serve import routes_service as service
from codekiln.serve import routes_tgi as tgi
from codekiln.serve.api import ApiError, GenerationRequest
from codekiln.serve.config import ServeConfig
from codekiln.serve.generation import ClientGone, Generation, Overloaded, Sample
from codekiln.serve.listen import (
    MAX_HEAD_BYTES,
    MAX_URL_BYTES,
    Server,
    bind,
    url_of,
    uvicorn_config,
)
from codekiln.serve.metrics import Metrics
from codekiln.serve.responses import JSON, Exchange, parse_json, say_nothing, until_gone
from codekiln.serve.scheduler import Scheduler

log = logging.getLogger("codekiln.serve")

TGI_ROUTES = frozenset({"/generate", "/generate_stream", "/", "/info"})
OPEN_ROUTES = frozenset({"/health"})
DRAIN_LIMIT = 64 * 1024 * 1024  # a larger refused body is cut off, not read


class App:
    """The routes and what they share: the scheduler, the settings, metrics, an attribution
    index. An ASGI application (`await app(scope, receive, send)`)."""

    def __init__(
        self,
        scheduler: Scheduler,
        config: ServeConfig,
        metrics: Metrics,
        index: Any = None,
        model_name: str = "codekiln",
    ) -> None:
        self.scheduler = scheduler
        self.config = config
        self.metrics = metrics
        self.index = index  # AttributionIndex
        self.model_name = model_name
        self.created = int(time.time())
        self.closing = False
        self._live: set[Generation] = set()
        routes = {
            "/health": ("GET", partial(service.health, self)),
            "/metrics": ("GET", partial(service.prometheus, self)),
            "/v1/models": ("GET", partial(openai.models, self)),
            "/v1/completions": ("POST", partial(openai.completions, self)),
            "/generate": ("POST", partial(tgi.tgi, self, stream=False)),
            "/generate_stream": ("POST", partial(tgi.tgi, self, stream=True)),
            "/": ("POST", partial(tgi.tgi, self, stream=False, compat=True)),
            "/info": ("GET", partial(tgi.info, self)),
            "/overlap": ("POST", partial(service.overlap, self)),
        }
        self.paths = frozenset(routes)
        self.starlette = Starlette(
            routes=[
                Route(path, self._endpoint(handler), methods=[method])
                for path, (method, handler) in routes.items()
            ],
            exception_handlers={HTTPException: self._no_route},
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.starlette(scope, receive, send)
            return
        started = time.monotonic()
        path = scope["path"]
        if len(path) > 1:
            path = path.rstrip("/") or "/"
        exchange = Exchange(tgi=path in TGI_ROUTES)
        scope = {**scope, "path": path, "codekiln": exchange}

        async def send_noting_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
            await send(message)

        with self.metrics.gauge("requests_in_flight"):
            try:
                too_large = _oversized_head(scope)
                if too_large is not None:
                    exchange.close = True
                    response = self.error(too_large, exchange)
                    await response(scope, receive, send_noting_status)
                else:
                    await self.starlette(scope, receive, send_noting_status)
            finally:
                status = exchange.status or 499  # nginx's "client closed request"
                seconds = time.monotonic() - started
                endpoint = path if path in self.paths else "other"
                self.metrics.observe_request(endpoint, status, seconds)
                log.info(
                    "%s %s %d %.3fs prompt_tokens=%d completion_tokens=%d",
                    scope["method"],
                    path,
                    status,
                    seconds,
                    exchange.usage.prompt,
                    exchange.usage.completion,
                )

    # Generation.

    def submit(self, request: GenerationRequest) -> Generation:
        generation = self.scheduler.submit(request, asyncio.get_running_loop())
        self._live.add(generation)
        return generation

    def release(self, generation: Generation) -> None:
        """The route is done with the generation: stop it if it still runs."""
        self._live.discard(generation)
        if not generation.finished:
            generation.cancel()

    def stop_generations(self) -> None:
        """Shutting down: cancel every running generation (their routes answer 503)."""
        self.closing = True
        for generation in list(self._live):
            generation.cancel()

    async def collect(self, request: Request, generation: Generation) -> list[Sample]:
        """Every choice's sample; ClientGone (the generation cancelled) if the client
        disconnects first."""

        async def drain() -> None:
            async for _ in generation.events():
                pass

        try:
            await until_gone(request.receive, drain(), generation)
        except ApiError as exc:
            raise self.stopped(exc) from None
        finally:
            self.release(generation)
        return [sample for sample in generation.samples if sample is not None]

    def stopped(self, exc: ApiError) -> ApiError:
        if self.closing and exc.status == 499:
            return ApiError(
                503, "the server is shutting down", code="shutting_down", kind="server_error"
            )
        return exc

    # Requests and errors.

    async def read_json(self, request: Request, ex: Exchange) -> Any:
        """The body as JSON: 413 when too large, 408 when it does not arrive whole within
        `read_timeout`, 400 when malformed."""
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")  # h11 has checked it is a number
        size = 0
        chunks: list[bytes] = []
        try:
            async with asyncio.timeout(self.config.read_timeout):
                if declared is not None and int(declared) > DRAIN_LIMIT:
                    ex.close = True
                    raise _too_large(int(declared), limit)
                async for chunk in request.stream():
                    size += len(chunk)
                    if size <= limit:
                        chunks.append(chunk)
                    elif size > DRAIN_LIMIT:
                        ex.close = True
                        break
                # A refused body is read (up to DRAIN_LIMIT) all the same: a client still
                # sending when the server closes gets a reset, and loses the 413 with it.
        except TimeoutError:
            ex.close = True
            raise ApiError(
                408,
                f"the request did not arrive whole within {self.config.read_timeout:g} s",
                code="request_timeout",
            ) from None
        except ClientDisconnect:
            raise ClientGone from None
        if size > limit:
            raise _too_large(size, limit)
        return parse_json(b"".join(chunks))

    def _authorize(self, request: Request) -> None:
        api_key = self.config.api_key
        if api_key is None or request.scope["path"] in OPEN_ROUTES:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), api_key.encode()
        ):
            raise ApiError(
                401,
                "missing or wrong API key: send Authorization: Bearer KEY",
                code="invalid_api_key",
            )

    def error(self, exc: ApiError, ex: Exchange, headers: dict[str, str] | None = None) -> Response:
        """The error in the route's API shape; 400 is TGI's 422 on its routes."""
        headers = dict(headers or {})
        status = exc.status
        if ex.tgi and status == 400:
            status = 422
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if ex.close:
            headers["Connection"] = "close"
        return JSON(exc.tgi_body() if ex.tgi else exc.openai_body(), status, headers)

    def _overloaded(self, ex: Exchange) -> Response:
        headers = {"Retry-After": str(self.config.retry_after)}
        message = "the server is busy: retry later"
        if ex.tgi:  # TGI's answer (its clients raise OverloadedError on it)
            return self.error(ApiError(429, message, kind="overloaded"), ex, headers)
        exc = ApiError(503, message, code="overloaded", kind="server_error")
        return self.error(exc, ex, headers)

    def _endpoint(
        self, handler: Callable[[Request, Exchange], Awaitable[Any]]
    ) -> Callable[[Request], Awaitable[Any]]:
        async def endpoint(request: Request) -> Any:
            ex: Exchange = request.scope["codekiln"]
            try:
                self._authorize(request)
                return await handler(request, ex)
            except ApiError as exc:
                return self.error(exc, ex)
            except Overloaded:
                return self._overloaded(ex)
            except ClientGone:
                return say_nothing
            except Exception:
                log.exception("%s %s failed", request.method, request.scope["path"])
                return self.error(ApiError(500, "internal server error", kind="server_error"), ex)

        return endpoint

    async def _no_route(self, request: Request, exc: Exception) -> Response:
        """Starlette's 404 and 405, in JSON (and behind the API key, as every route)."""
        ex: Exchange = request.scope["codekiln"]
        path = request.scope["path"]
        try:
            self._authorize(request)
        except ApiError as refused:
            return self.error(refused, ex)
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            message = f"{path} takes {allow}, not {request.method}"
            refused = ApiError(405, message, code="method_not_allowed")
            return self.error(refused, ex, {"Allow": allow})
        refused = ApiError(exc.status_code, f"no route {request.method} {path}", code="not_found")
        return self.error(refused, ex)


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(413, f"the body has {size} bytes; the limit is {limit}", code="body_too_large")


def _oversized_head(scope: Any) -> ApiError | None:
    """414 for a URL over MAX_URL_BYTES, 431 for headers over MAX_HEAD_BYTES. (h11 refuses
    a head over MAX_HEAD_BYTES only while it is incomplete; a whole one arriving in one
    read gets here.)"""
    url = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
    if url > MAX_URL_BYTES:
        return ApiError(414, f"the URL has {url} bytes; the limit is {MAX_URL_BYTES}")
    head = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
    if head > MAX_HEAD_BYTES:
        return ApiError(431, f"the headers have {head} bytes; the limit is {MAX_HEAD_BYTES}")
    return None


@dataclass
class RunningServer:
    """A server answering in a background thread; `close()` (or leaving `with`) stops it."""

    server: Server
    thread: threading.Thread
    app: App
    url: str

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join()
        self.app.scheduler.close()

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
    """The ASGI app: `model` is a Backend, or a folder or URL for `load_backend`;
    `attribution` an AttributionIndex or its folder."""
    if isinstance(model, str | Path):
        from codekiln.generate import load_backend

        model = load_backend(model, **backend_options)
    if isinstance(attribution, str | Path):
        from codekiln.attribution import AttributionIndex

        attribution = AttributionIndex.open(attribution)
    metrics = Metrics()
    name = config.model_name or str(getattr(model, "name", "codekiln"))
    return App(Scheduler(model, config, metrics), config, metrics, attribution, name)


def start_server(
    model: Any,
    config: ServeConfig | None = None,
    attribution: str | Path | Any = None,
    **backend_options: Any,
) -> RunningServer:
    """Start serving in a background thread (port 0: any free port; see `.url`)."""
    config = config or ServeConfig(port=0)
    sock = bind(config)
    app = _listen(sock, model, config, attribution, backend_options)
    server = Server(uvicorn_config(app, config), app)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="codekiln-serve", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            app.scheduler.close()
            raise RuntimeError("the server did not start (see the log above)")
        time.sleep(0.005)
    return RunningServer(server, thread, app, url_of(sock))


def serve(
    model: Any,
    host: str | None = None,
    port: int | None = None,
    attribution: str | Path | Any = None,
    api_key: str | None = None,
    config: ServeConfig | None = None,
    **backend_options: Any,
) -> None:
    """Serve until interrupted (Ctrl-C shuts down cleanly); `host`, `port` and `api_key`,
    where given, override `config`'s.

    backend_options go to `load_backend` (`engine`, `device`, `dtype`, ...).
    """
    given = {"host": host, "port": port, "api_key": api_key}
    config = replace(config or ServeConfig(), **{k: v for k, v in given.items() if v is not None})
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # its start/stop lines
    sock = bind(config)
    app = _listen(sock, model, config, attribution, backend_options)
    log.info(
        "serving %s on %s (context %s tokens, FIM %s, attribution %s, auth %s, batch %d, queue %d)",
        app.model_name,
        url_of(sock),
        app.scheduler.context_length or "unknown",
        "yes" if app.scheduler.backend.supports_fim else "no",
        "yes" if app.index is not None else "no",
        "on" if config.api_key else "off",
        config.max_batch,
        config.max_queue,
    )
    try:
        Server(uvicorn_config(app, config), app).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn has shut down; it re-raises the Ctrl-C it caught
    finally:
        app.scheduler.close()


def _listen(
    sock: socket.socket,
    model: Any,
    config: ServeConfig,
    attribution: Any,
    backend_options: dict[str, Any],
) -> App:
    """The app, and the socket listening: from here connections wait in its backlog until
    uvicorn serves them."""
    try:
        app = build_app(model, config, attribution, **backend_options)
    except BaseException:
        sock.close()
        raise
    sock.listen(2048)
    return app
