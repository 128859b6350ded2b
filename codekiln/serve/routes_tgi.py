"""TGI's routes: `POST /generate` (llm-ls's `tgi` backend, llm-vscode), `POST
/generate_stream` (server-sent events), `POST /` (the compat route: a one-element list, or a
stream with "stream") and `GET /info` (the model's facts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from codekiln.serve.api import TGI_FINISH, ApiError, GenerationRequest, parse_tgi
from codekiln.serve.generation import Delta, Done, Generation, Sample
from codekiln.serve.responses import JSON, EventStream, Exchange

if TYPE_CHECKING:
    from codekiln.serve.http import App


async def info(app: App, request: Request, ex: Exchange) -> Response:
    context = app.scheduler.context_length or None
    return JSON(
        {
            "model_id": app.model_name,
            "max_total_tokens": context,
            "max_input_tokens": context - 1 if context else None,
            "max_concurrent_requests": app.config.max_batch + app.config.max_queue,
            "router": "codekiln",
            "supports_fim": bool(app.scheduler.backend.supports_fim),
        }
    )


async def tgi(
    app: App, request: Request, ex: Exchange, stream: bool, compat: bool = False
) -> Response | EventStream:
    body = await app.read_json(request, ex)
    generation_request = app.scheduler.prepare(parse_tgi(body, app.config, stream))
    prefix = generation_request.prompts[0] if generation_request.return_full_text else ""
    generation = app.submit(generation_request)
    if generation_request.stream:
        return EventStream(app, generation, tgi_events(app, generation, ex, prefix), ex)
    [sample] = await app.collect(request, generation)
    ex.usage.add([sample], 1)
    reply: dict[str, Any] = {"generated_text": prefix + sample.text}
    if generation_request.details:
        reply["details"] = tgi_details(sample, generation_request)
    return JSON([reply] if compat else reply)  # TGI's `POST /` answers a list


async def tgi_events(
    app: App, generation: Generation, ex: Exchange, prefix: str
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
            details = tgi_details(final, request)
            body["details"] = {k: details[k] for k in ("finish_reason", "generated_tokens", "seed")}
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
        yield app.stopped(exc).tgi_body()
        return
    assert sample is not None, "a finished generation has its sample"
    ex.usage.add([sample], 1)
    yield event(held or "", sample)


def tgi_details(sample: Sample, request: GenerationRequest) -> dict[str, Any]:
    return {
        "finish_reason": TGI_FINISH[sample.finish_reason],
        "generated_tokens": sample.tokens,
        "seed": None if request.params.is_greedy else request.params.seed,
        "prefill": [],
        "tokens": [],  # per-token ids and logprobs: the stream API yields text only
    }
