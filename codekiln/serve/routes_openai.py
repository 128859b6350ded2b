"""OpenAI's routes: `POST /v1/completions` (`suffix` fills in the middle; SSE stream with
`stream`) and `GET /v1/models` (the one model, with vLLM's `max_model_len`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from codekiln.serve.api import OPENAI_FINISH, ApiError, GenerationRequest, parse_openai
from codekiln.serve.generation import Delta, Generation
from codekiln.serve.responses import DONE, JSON, EventStream, Exchange

if TYPE_CHECKING:
    from codekiln.serve.http import App


async def models(app: App, request: Request, ex: Exchange) -> Response:
    model = {
        "id": app.model_name,
        "object": "model",
        "created": app.created,
        "owned_by": "codekiln",
        "max_model_len": app.scheduler.context_length or None,
    }
    return JSON({"object": "list", "data": [model]})


async def completions(app: App, request: Request, ex: Exchange) -> Response | EventStream:
    body = await app.read_json(request, ex)
    generation_request = app.scheduler.prepare(parse_openai(body, app.config))
    ident = f"cmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    generation = app.submit(generation_request)
    if generation_request.stream:
        chunks = openai_chunks(app, generation, ex, ident, created)
        return EventStream(app, generation, chunks, ex)
    samples = await app.collect(request, generation)
    ex.usage.add(samples, generation_request.n)
    choices = [
        {
            "text": echo(generation_request, i) + sample.text,
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
            "model": app.model_name,
            "choices": choices,
            "usage": ex.usage.body(),
        }
    )


async def openai_chunks(
    app: App, generation: Generation, ex: Exchange, ident: str, created: int
) -> AsyncIterator[Any]:
    request = generation.request

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> Any:
        body = {
            "id": ident,
            "object": "text_completion",
            "created": created,
            "model": app.model_name,
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
        return echo(request, index) + text

    try:
        async for event in generation.events():
            if isinstance(event, Delta):
                yield chunk([choice(event.choice, echoed(event.choice, event.text))])
            else:
                finish = OPENAI_FINISH[event.sample.finish_reason]
                yield chunk([choice(event.choice, echoed(event.choice, ""), finish)])
    except ApiError as exc:
        yield app.stopped(exc).openai_body()
        return
    ex.usage.add([s for s in generation.samples if s is not None], request.n)
    if request.include_usage:
        yield chunk([], ex.usage.body())
    yield DONE


def echo(request: GenerationRequest, choice: int) -> str:
    return request.prompts[choice // request.n] if request.echo else ""
