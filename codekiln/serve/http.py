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
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from codekiln.serve.api import (
    OPENAI_FINISH,
    TGI_FINISH,
    ApiError,
    GenerationRequest,
    parse_openai,
    parse_overlap,
    parse_tgi,
)
from codekiln.serve.config import ServeConfig
from codekiln.serve.scheduler import ClientGone, Delta, Done, Scheduler, Generation, Overloaded, Sample
from codekiln.serve.listen import (
    MAX_HEAD_BYTES,
    MAX_URL_BYTES,
    Server,
    bind,
    url_of,
    uvicorn_config,
)
from codekiln.serve.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("codekiln.serve")

TGI_ROUTES = frozenset({"/generate", "/generate_stream", "/", "/info"})
OPEN_ROUTES = frozenset({"/health"})
DRAIN_LIMIT = 64 * 1024 * 1024  # a larger refused body is cut off, not read
DONE = object()  # OpenAI's `data: [DONE]`


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
class Exchange:
    """One request's bookkeeping: its API shape, tokens, status, whether to close after."""

    tgi: bool
    usage: Usage = field(default_factory=Usage)
    status: int = 0
    close: bool = False  # the body was not read whole: the connection cannot be reused


class JSON(Response):
    """A JSON response; ASCII escapes keep any text (a lone surrogate too) writable."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content).encode()


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, or ApiError 400: malformed, nested past Python's recursion
    limit, or holding text that is not Unicode (a lone surrogate such as `"\\ud800"`, which
    `json` accepts but no tokenizer or response can encode).

    >>> parse_json(b'{"prompt": "x"}')
    {'prompt': 'x'}
    >>> parse_json(b'"\\\\ud800"')
    Traceback (most recent call last):
    ...
    codekiln.serve.api.ApiError: the body holds a lone surrogate: send valid Unicode
    """
    try:
        body = json.loads(raw)
        json.dumps(body, ensure_ascii=False).encode()
    except RecursionError:
        raise ApiError(400, "the body's JSON is nested too deeply", code="invalid_json") from None
    except UnicodeEncodeError:
        message = "the body holds a lone surrogate: send valid Unicode"
        raise ApiError(400, message, code="invalid_json") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ApiError(400, f"the body is not valid JSON ({exc})", code="invalid_json") from None
    return body


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
            "/health": ("GET", self.health),
            "/metrics": ("GET", self.prometheus),
            "/v1/models": ("GET", self.models),
            "/v1/completions": ("POST", self.completions),
            "/generate": ("POST", partial(self.tgi, stream=False)),
            "/generate_stream": ("POST", partial(self.tgi, stream=True)),
            "/": ("POST", partial(self.tgi, stream=False, compat=True)),
            "/info": ("GET", self.info),
            "/overlap": ("POST", self.overlap),
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

    # Routes.

    async def health(self, request: Request, ex: Exchange) -> Response:
        return JSON({"status": "ok", "model": self.model_name})

    async def prometheus(self, request: Request, ex: Exchange) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def models(self, request: Request, ex: Exchange) -> Response:
        model = {
            "id": self.model_name,
            "object": "model",
            "created": self.created,
            "owned_by": "codekiln",
            "max_model_len": self.scheduler.context_length or None,
        }
        return JSON({"object": "list", "data": [model]})

    async def info(self, request: Request, ex: Exchange) -> Response:
        context = self.scheduler.context_length or None
        return JSON(
            {
                "model_id": self.model_name,
                "max_total_tokens": context,
                "max_input_tokens": context - 1 if context else None,
                "max_concurrent_requests": self.config.max_batch + self.config.max_queue,
                "router": "codekiln",
                "supports_fim": bool(self.scheduler.backend.supports_fim),
            }
        )

    async def overlap(self, request: Request, ex: Exchange) -> Response:
        if self.index is None:
            raise ApiError(
                404,
                "no attribution index: start the server with --attribution INDEX",
                code="no_attribution_index",
            )
        from codekiln.attribution import overlap_response

        body = await self.read_json(request, ex)
        overlap = parse_overlap(body, self.config, request.query_params)
        answer = await asyncio.to_thread(
            overlap_response, self.index, overlap.document, offsets=overlap.offsets
        )
        return JSON(answer)

    async def completions(self, request: Request, ex: Exchange) -> Response | EventStream:
        body = await self.read_json(request, ex)
        generation_request = self.scheduler.prepare(parse_openai(body, self.config))
        ident = f"cmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        generation = self.submit(generation_request)
        if generation_request.stream:
            chunks = self._openai_chunks(generation, ex, ident, created)
            return EventStream(self, generation, chunks, ex)
        samples = await self.collect(request, generation)
        ex.usage.add(samples, generation_request.n)
        choices = [
            {
                "text": _echo(generation_request, i) + sample.text,
                "index": i,
                "logprobs": None,
                "finish_reason": OPENAI_FINISH[sample.finish_reason],
            }
            for i, sample in enumerate(samples)
        ]
        return JSON(
            {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": self.model_name,
                "choices": choices,
                "usage": ex.usage.body(),
            }
        )

    async def _openai_chunks(
        self, generation: Generation, ex: Exchange, ident: str, created: int
    ) -> AsyncIterator[Any]:
        request = generation.request

        def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> Any:
            body = {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": self.model_name,
                "choices": choices,
            }
            if usage is not None:
                body["usage"] = usage
            return body

        def choice(index: int, text: str, finish: str | None = None) -> dict[str, Any]:
            return {"text": text, "index": index, "logprobs": None, "finish_reason": finish}

        started: set[int] = set()

        def echoed(index: int, text: str) -> str:
            if index in started:
                return text
            started.add(index)
            return _echo(request, index) + text

        try:
            async for event in generation.events():
                if isinstance(event, Delta):
                    yield chunk([choice(event.choice, echoed(event.choice, event.text))])
                else:
                    finish = OPENAI_FINISH[event.sample.finish_reason]
                    yield chunk([choice(event.choice, echoed(event.choice, ""), finish)])
        except ApiError as exc:
            yield self._stopped(exc).openai_body()
            return
        ex.usage.add([s for s in generation.samples if s is not None], request.n)
        if request.include_usage:
            yield chunk([], ex.usage.body())
        yield DONE

    async def tgi(
        self, request: Request, ex: Exchange, stream: bool, compat: bool = False
    ) -> Response | EventStream:
        body = await self.read_json(request, ex)
        generation_request = self.scheduler.prepare(parse_tgi(body, self.config, stream))
        prefix = generation_request.prompts[0] if generation_request.return_full_text else ""
        generation = self.submit(generation_request)
        if generation_request.stream:
            return EventStream(self, generation, self._tgi_events(generation, ex, prefix), ex)
        [sample] = await self.collect(request, generation)
        ex.usage.add([sample], 1)
        reply: dict[str, Any] = {"generated_text": prefix + sample.text}
        if generation_request.details:
            reply["details"] = _tgi_details(sample, generation_request)
        return JSON([reply] if compat else reply)  # TGI's `POST /` answers a list

    async def _tgi_events(
        self, generation: Generation, ex: Exchange, prefix: str
    ) -> AsyncIterator[Any]:
        # TGI's last event carries the whole text along with the last token, so each delta
        # is held back until the next one (or the end) shows whether it is the last.
        request = generation.request
        count = 0

        def event(text: str, final: Sample | None = None) -> dict[str, Any]:
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
            return body

        held: str | None = None
        sample: Sample | None = None
        try:
            async for item in generation.events():
                if isinstance(item, Delta):
                    if held is not None:
                        yield event(held)
                    held = item.text
                elif isinstance(item, Done):
                    sample = item.sample
        except ApiError as exc:
            yield self._stopped(exc).tgi_body()
            return
        assert sample is not None, "a finished generation has its sample"
        ex.usage.add([sample], 1)
        yield event(held or "", sample)

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
            raise self._stopped(exc) from None
        finally:
            self.release(generation)
        return [sample for sample in generation.samples if sample is not None]

    def _stopped(self, exc: ApiError) -> ApiError:
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
                return _say_nothing
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


async def _say_nothing(scope: Any, receive: Any, send: Any) -> None:
    """The response to a client that has gone: none."""


class EventStream:
    """A server-sent event response over a generation's events; the generation is
    cancelled when the client disconnects, and released when the stream ends either way."""

    def __init__(
        self, app: App, generation: Generation, events: AsyncIterator[Any], exchange: Exchange
    ) -> None:
        self.app = app
        self.generation = generation
        self.events = events
        self.exchange = exchange

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def write() -> None:
            async for item in self.events:
                data = b"[DONE]" if item is DONE else json.dumps(item).encode()
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + data + b"\n\n",
                        "more_body": True,
                    }
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        try:
            await until_gone(receive, write(), self.generation)
        except ClientGone:
            pass
        finally:
            self.app.release(self.generation)


async def until_gone(receive: Any, work: Coroutine[Any, Any, Any], generation: Generation) -> Any:
    """Run `work` while watching for the client's disconnect; if it comes first, cancel the
    generation and `work` and raise ClientGone. (The request body is read by then, so the
    next ASGI message can only be `http.disconnect`.)"""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            generation.cancel()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise ClientGone
    return task.result()


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
    host: str = "127.0.0.1",
    port: int = 8000,
    attribution: str | Path | Any = None,
    api_key: str | None = None,
    config: ServeConfig | None = None,
    **backend_options: Any,
) -> None:
    """Serve until interrupted (Ctrl-C shuts down cleanly); `host`, `port` and `api_key`
    override `config`'s.

    backend_options go to `load_backend` (`engine`, `device`, `dtype`, ...).
    """
    config = replace(config or ServeConfig(), host=host, port=port, api_key=api_key)
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
