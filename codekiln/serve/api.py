"""Request bodies in, `GenerationRequest`s out: the OpenAI and TGI shapes, validated.

Both APIs reduce to the same request: prompts (with an optional FIM suffix), sampling
parameters, samples per prompt, streaming or not. Parsing is pure, so every validation rule
is tested without a socket; a rule that fails raises `ApiError`, which the HTTP layer writes
in the API's own error shape (OpenAI's `{"error": {"message", "type", "param", "code"}}`,
TGI's `{"error", "error_type"}`).

Unknown fields are ignored, as vLLM and TGI ignore them: llm-ls sends whatever the editor's
`requestBody` holds (llm-vscode's default is TGI's `{"parameters": {...}}`, even with the
`openai` backend), and a strict server would break those set-ups.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from codekiln.generate.params import SamplingParams
from codekiln.serve.config import ServeConfig

OPENAI_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
TGI_DEFAULT_MAX_NEW_TOKENS = 100  # TGI's default for /generate
OPENAI_FINISH = {"stop": "stop", "eos": "stop", "length": "length"}
TGI_FINISH = {"stop": "stop_sequence", "eos": "eos_token", "length": "length"}
OFFSET_NAMES = {  # what /overlap's `offsets` accepts, lower-cased, and the unit it means
    "code-points": "code-points",
    "codepoints": "code-points",
    "utf-32": "code-points",
    "utf-16": "utf-16",
    "utf16": "utf-16",
    "utf-8": "utf-8",
    "utf8": "utf-8",
}


class ApiError(Exception):
    """A request the server refuses: HTTP status, message, and the field to blame."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind

    def openai_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }

    def tgi_body(self) -> dict[str, Any]:
        kind = "validation" if self.kind == "invalid_request_error" else self.kind
        return {"error": self.message, "error_type": kind}


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate: each prompt (with `suffix`, a fill-in-the-middle) `params.n` times.

    `params.n` is always 1: the server draws the n samples itself, one stream each, so that
    it can stop between tokens when the client goes away; `n` holds the count.
    """

    prompts: tuple[str, ...]
    params: SamplingParams
    n: int = 1
    suffix: str | None = None
    stream: bool = False
    echo: bool = False
    include_usage: bool = False  # OpenAI stream_options.include_usage
    details: bool = False  # TGI details
    return_full_text: bool = False  # TGI
    truncate: int | None = None  # TGI: keep only the last `truncate` prompt tokens

    @property
    def choices(self) -> int:
        return len(self.prompts) * self.n


def parse_openai(body: Any, config: ServeConfig) -> GenerationRequest:
    """A `POST /v1/completions` body (OpenAI's legacy completions).

    >>> request = parse_openai({"prompt": "def f(", "max_tokens": 8, "stop": "\\n"}, ServeConfig())
    >>> request.prompts, request.params.max_new_tokens, request.params.stop
    (('def f(',), 8, ('\\n',))
    """
    body = _object(body)
    prompts = _prompts(body.get("prompt", "<|endoftext|>"))
    suffix = _optional(body, "suffix", str)
    max_tokens = _optional(body, "max_tokens", int)
    n = _optional(body, "n", int)
    n = 1 if n is None else n
    _check_n(n, len(prompts), config)
    if body.get("logprobs") not in (None, 0, False):
        raise ApiError(400, "logprobs are not supported by this server", "logprobs")
    best_of = _optional(body, "best_of", int)
    if best_of not in (None, 1) and best_of != n:
        raise ApiError(400, "best_of other than n is not supported by this server", "best_of")
    temperature = _number(body, "temperature", default=1.0)
    params = _sampling(
        max_new_tokens=OPENAI_DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        max_name="max_tokens",
        temperature=temperature,
        top_p=_number(body, "top_p", default=1.0),
        top_k=_optional(body, "top_k", int) or 0,  # vLLM's extension
        seed=_optional(body, "seed", int),
        stop=_stop(body.get("stop"), "stop"),
        greedy=temperature == 0,
        config=config,
    )
    stream = _optional(body, "stream", bool) or False
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return GenerationRequest(
        prompts=prompts,
        params=params,
        n=n,
        suffix=suffix,
        stream=stream,
        echo=_optional(body, "echo", bool) or False,
        include_usage=include_usage,
    )


def parse_tgi(body: Any, config: ServeConfig, stream: bool) -> GenerationRequest:
    """A `POST /generate` or `/generate_stream` body (text-generation-inference's).

    TGI samples when `do_sample` is set or any of temperature, top_p, top_k changes the
    distribution; llm-vscode's default body (temperature 0.2, top_p 0.95, no do_sample)
    therefore samples, as it does against TGI.

    >>> r = parse_tgi({"inputs": "x", "parameters": {"max_new_tokens": 4}}, ServeConfig(), False)
    >>> r.prompts, r.params.max_new_tokens, r.params.is_greedy
    (('x',), 4, True)
    """
    body = _object(body)
    inputs = body.get("inputs")
    if not isinstance(inputs, str):
        raise ApiError(422, "inputs must be a string", "inputs")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ApiError(422, "parameters must be an object", "parameters")
    temperature = _number(parameters, "temperature", default=1.0, status=422)
    top_p = _number(parameters, "top_p", default=1.0, status=422)
    top_k = _optional(parameters, "top_k", int, status=422) or 0
    do_sample = _optional(parameters, "do_sample", bool, status=422) or False
    warped = temperature != 1.0 or top_p < 1.0 or top_k > 0
    best_of = _optional(parameters, "best_of", int, status=422)
    if best_of not in (None, 1):
        raise ApiError(422, "best_of is not supported by this server", "best_of")
    max_new = _optional(parameters, "max_new_tokens", int, status=422)
    truncate = _optional(parameters, "truncate", int, status=422)
    if truncate is not None and truncate < 1:
        raise ApiError(422, f"truncate must be at least 1, got {truncate}", "truncate")
    stop = _stop(parameters.get("stop"), "stop", status=422)
    stop += _stop(parameters.get("stop_tokens"), "stop_tokens", status=422)  # old llm-ls
    params = _sampling(
        max_new_tokens=TGI_DEFAULT_MAX_NEW_TOKENS if max_new is None else max_new,
        max_name="max_new_tokens",
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=_optional(parameters, "seed", int, status=422),
        stop=stop,
        greedy=temperature == 0 or not (do_sample or warped),
        config=config,
        status=422,
    )
    return GenerationRequest(
        prompts=(inputs,),
        params=params,
        stream=stream or (_optional(body, "stream", bool, status=422) or False),
        details=_optional(parameters, "details", bool, status=422) or False,
        return_full_text=_optional(parameters, "return_full_text", bool, status=422) or False,
        truncate=truncate,
    )


@dataclass(frozen=True)
class OverlapRequest:
    """A `POST /overlap`: the document, and the unit its span offsets are answered in."""

    document: str
    offsets: str = "code-points"


def parse_overlap(
    body: Any, config: ServeConfig, query: Mapping[str, str] | None = None
) -> OverlapRequest:
    """A `POST /overlap` body and the URL's query parameters.

    llm-vscode's attribution command posts `{"document": TEXT}` (the text around the cursor,
    with only a Content-Type header) to `llm.attributionEndpoint` and reads the spans as
    JavaScript string offsets, UTF-16 code units; it sends no other field, so its endpoint
    setting asks for them in the URL: `http://HOST:8000/overlap?offsets=utf-16`. Other
    clients may put `"offsets"` in the body: "code-points" (the default, Python's `str`
    indices), "utf-16" or "utf-8" (bytes).

    >>> r = parse_overlap({"document": "x"}, ServeConfig(), {"offsets": "utf-16"})
    >>> r.document, r.offsets
    ('x', 'utf-16')
    """
    document = parse_document(body, config)
    offsets = body.get("offsets")
    if offsets is None and query is not None:
        offsets = query.get("offsets")
    if offsets is None:
        return OverlapRequest(document)
    unit = OFFSET_NAMES.get(offsets.lower()) if isinstance(offsets, str) else None
    if unit is None:
        raise ApiError(
            400,
            f"offsets must be one of code-points, utf-16 or utf-8, got {offsets!r}",
            "offsets",
        )
    return OverlapRequest(document, unit)


def parse_document(body: Any, config: ServeConfig) -> str:
    """The document of a `POST /overlap` body."""
    document = _object(body).get("document")
    if not isinstance(document, str):
        raise ApiError(400, "document must be a string", "document")
    if len(document) > config.max_document_chars:
        raise ApiError(
            413,
            f"document has {len(document)} characters; the limit is {config.max_document_chars}",
            "document",
        )
    return document


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _prompts(prompt: Any) -> tuple[str, ...]:
    if isinstance(prompt, str):
        return (prompt,)
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return tuple(prompt)
    if isinstance(prompt, list) and prompt and all(not isinstance(p, str) for p in prompt):
        raise ApiError(400, "token-id prompts are not supported: send text", "prompt")
    raise ApiError(400, "prompt must be a string or a non-empty list of strings", "prompt")


def _optional(body: dict[str, Any], name: str, kind: type, status: int = 400) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if kind is int and not _is_int(value):
        raise ApiError(status, f"{name} must be an integer, got {value!r}", name)
    if kind is not int and not isinstance(value, kind):
        raise ApiError(status, f"{name} must be a {kind.__name__}, got {value!r}", name)
    return value


def _number(body: dict[str, Any], name: str, default: float, status: int = 400) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(status, f"{name} must be a number, got {value!r}", name)
    return float(value)


def _stop(value: Any, name: str, status: int = 400) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ApiError(status, f"{name} must be a string or a list of strings", name)
    if len(stops) > 16:
        raise ApiError(status, f"{name} has {len(stops)} sequences; the limit is 16", name)
    return tuple(s for s in stops if s)


def _check_n(n: int, prompts: int, config: ServeConfig) -> None:
    if not 1 <= n <= config.max_n:
        raise ApiError(400, f"n must be between 1 and {config.max_n}, got {n}", "n")
    if n * prompts > config.max_choices:
        raise ApiError(
            400,
            f"{prompts} prompts x n={n} asks for {n * prompts} completions; the limit is "
            f"{config.max_choices}",
            "n",
        )


def _sampling(
    *,
    max_new_tokens: int,
    max_name: str,
    temperature: float,
    top_p: float,
    top_k: int,
    seed: int | None,
    stop: tuple[str, ...],
    greedy: bool,
    config: ServeConfig,
    status: int = 400,
) -> SamplingParams:
    if not 1 <= max_new_tokens <= config.max_new_tokens:
        raise ApiError(
            status,
            f"{max_name} must be between 1 and {config.max_new_tokens}, got {max_new_tokens}",
            max_name,
        )
    if not 0 <= temperature <= 100:
        raise ApiError(status, f"temperature must be in [0, 100], got {temperature}", "temperature")
    if not 0 < top_p <= 1:
        raise ApiError(status, f"top_p must be in (0, 1], got {top_p}", "top_p")
    if top_k < 0:
        raise ApiError(status, f"top_k must be 0 or more, got {top_k}", "top_k")
    try:
        return SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=_random_seed() if seed is None else seed,
            stop=stop,
            greedy=greedy,
        )
    except ValueError as exc:
        raise ApiError(status, str(exc)) from None


def _random_seed() -> int:
    """A fresh seed for a request that names none: unseeded requests differ, as OpenAI's do."""
    return random.SystemRandom().getrandbits(62)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
