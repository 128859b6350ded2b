"""What every route answers with: a request's bookkeeping (`Exchange`), JSON bodies both ways,
and server-sent events over a generation that stop when the client goes away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from codekiln.serve.api import ApiError
from codekiln.serve.generation import ClientGone, Generation, Sample

if TYPE_CHECKING:
    from codekiln.serve.http import App

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


async def say_nothing(scope: Any, receive: Any, send: Any) -> None:
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
