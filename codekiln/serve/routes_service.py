"""The routes beside generation: `GET /health` (liveness, never behind the API key), `GET
/metrics` (Prometheus text format) and `POST /overlap` (attribution spans and sources)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from codekiln.serve.api import ApiError, parse_overlap
from codekiln.serve.metrics import CONTENT_TYPE
from codekiln.serve.responses import JSON, Exchange

if TYPE_CHECKING:
    from codekiln.serve.http import App


async def health(app: App, request: Request, ex: Exchange) -> Response:
    return JSON({"status": "ok", "model": app.model_name})


async def prometheus(app: App, request: Request, ex: Exchange) -> Response:
    return Response(app.metrics.render(), media_type=CONTENT_TYPE)


async def overlap(app: App, request: Request, ex: Exchange) -> Response:
    if app.index is None:
        raise ApiError(
            404,
            "no attribution index: start the server with --attribution INDEX",
            code="no_attribution_index",
        )
    from codekiln.attribution import overlap_response

    body = await app.read_json(request, ex)
    asked = parse_overlap(body, app.config, request.query_params)
    answer = await asyncio.to_thread(
        overlap_response, app.index, asked.document, offsets=asked.offsets
    )
    return JSON(answer)
