"""A llama.cpp server (`llama-server -m model.gguf`) as the language server's endpoint.

llama.cpp lays out fill-in-the-middle itself on its `/infill` route: the request carries
`input_prefix` and `input_suffix` (and `input_extra`, other files' chunks, which we leave
empty), the server puts the GGUF's FIM tokens around them and streams `{"content": ...}`
events. Plain completions (no code after the cursor, or FIM off) go through its
OpenAI-compatible `/v1/completions` as with any OpenAI endpoint.

`GET /props` tells the kinds apart: llama.cpp answers with its `default_generation_settings`
(whose `n_ctx` is the context the server was started with); codekiln serve, vLLM and TGI
have no such route.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from codekiln.errors import UserError
from codekiln.generate.backend import TextStream, check_stream_params
from codekiln.generate.openai import (
    OpenAIBackend,
    _error_message,
    _server_sent_events,
    json_headers,
)
from codekiln.generate.params import Completion, SamplingParams, sample_seed
from codekiln.generate.text import StopMatcher

# llama.cpp's defaults add top-k 40, min-p 0.05 and a repeat penalty; codekiln's engine
# samples with none of them, so every request turns them off (a request's top_k wins)
NEUTRAL_SAMPLING = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}


def server_root(url: str) -> str:
    """The server's root URL, where llama.cpp's own routes live.

    >>> server_root("http://127.0.0.1:8012/v1/")
    'http://127.0.0.1:8012'
    """
    root = url.rstrip("/")
    return root.removesuffix("/v1")


def llama_props(url: str, api_key: str | None, timeout: float) -> dict[str, Any] | None:
    """llama.cpp's `GET /props` reply; None when the server answers but is not llama.cpp.

    A server that does not answer at all is a UserError (the caller retries later).
    """
    request = urllib.request.Request(server_root(url) + "/props", headers=json_headers(api_key))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 503:  # llama.cpp while it loads the model: not up yet
            raise UserError(f"{url} answered /props with HTTP 503 {_error_message(exc)}") from None
        return None
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"{url} does not answer: {getattr(exc, 'reason', exc)}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    settings = reply.get("default_generation_settings") if isinstance(reply, dict) else None
    return reply if isinstance(settings, dict) else None


def connect(url: str, api: str = "auto", **options: Any) -> Any:
    """The backend for an endpoint URL: llama.cpp's when `api` says so or (auto) `/props`
    shows a llama.cpp server, the OpenAI-compatible one otherwise."""
    from codekiln.generate import load_backend

    assert api in ("auto", "openai", "llama.cpp"), api  # LspConfig validated it
    if api != "openai":
        props = llama_props(url, options.get("api_key"), options.get("timeout", 60.0))
        if props is not None:
            return LlamaServerBackend(url, props, **options)
        if api == "llama.cpp":
            raise UserError(
                f"{url} is not a llama.cpp server (GET /props has no default_generation_settings)"
                ": start llama-server there, or --set endpoint_api=openai"
            )
    return load_backend(url, **options)


class LlamaServerBackend(OpenAIBackend):
    """llama-server: infilling through `/infill`, plain completion through `/v1/completions`.

    `props` is its `GET /props` reply; the context is the server's `n_ctx` (per slot).
    """

    def __init__(self, url: str, props: dict[str, Any], **options: Any) -> None:
        n_ctx = props["default_generation_settings"].get("n_ctx")
        context = n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else 0
        super().__init__(
            url, context_length=options.pop("context_length", None) or context, **options
        )
        self.root = server_root(url)
        self.kind = "llama.cpp"
        path = props.get("model_path")
        if self.model is None and isinstance(path, str) and path:
            self.name = path
        self.supports_fim = True  # until /infill says the model has no FIM tokens

    def stream(self, prompt: str, params: SamplingParams, suffix: str | None = None) -> TextStream:
        if suffix is None:
            return super().stream(prompt, params)
        check_stream_params(params)
        return TextStream(self._infill(infill_body(prompt, suffix, params), params))

    def _body(self, fields: dict[str, str], params: SamplingParams, seed: int) -> dict[str, Any]:
        return {**NEUTRAL_SAMPLING, **super()._body(fields, params, seed)}

    def _infill(self, body: dict[str, Any], params: SamplingParams) -> Iterator[str]:
        url = self.root + "/infill"
        data = json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers=json_headers(self.api_key))
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            message = _error_message(exc)
            if "not supported" in message.lower():  # no FIM tokens: plain completions from now
                self.supports_fim = False
            raise UserError(
                f"endpoint {url} refused the request: HTTP {exc.code} {message}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise UserError(f"endpoint {url} failed: {getattr(exc, 'reason', exc)}") from None
        matcher = StopMatcher(params.stop)
        stop_type = "limit"
        with response:
            for event in _server_sent_events(response, url):
                if isinstance(event, dict) and "error" in event:  # failed after the headers
                    raise UserError(f"endpoint {url} failed mid-stream: {event['error']}")
                if not isinstance(event, dict) or not isinstance(event.get("content", ""), str):
                    raise UserError(f"endpoint {url} streamed an event that is no completion")
                out, stopped = matcher.feed(event.get("content", ""))
                if out:
                    yield out
                if stopped:
                    break
                if event.get("stop") is True:
                    stop_type = event.get("stop_type") or stop_type
                    break
        if not matcher.stopped:
            tail = matcher.flush()
            if tail:
                yield tail
        finish = "stop" if matcher.stopped or stop_type in ("eos", "word") else "length"
        return Completion(matcher.text, 0, finish)


def infill_body(prefix: str, suffix: str, params: SamplingParams) -> dict[str, Any]:
    """The `/infill` request for `prefix` and `suffix`, sampling as codekiln's engine does.

    >>> body = infill_body("def f(", "):", SamplingParams(max_new_tokens=8, greedy=True))
    >>> body["input_prefix"], body["input_suffix"], body["n_predict"], body["temperature"]
    ('def f(', '):', 8, 0.0)
    """
    greedy = params.is_greedy
    body: dict[str, Any] = {
        **NEUTRAL_SAMPLING,
        "input_prefix": prefix,
        "input_suffix": suffix,
        "input_extra": [],
        "prompt": "",
        "n_predict": params.max_new_tokens,
        "temperature": 0.0 if greedy else params.temperature,
        "top_p": 1.0 if greedy else params.top_p,
        "top_k": 0 if greedy else params.top_k,
        "seed": sample_seed(params.seed, 0, 0) % 2**31,
        "stream": True,
        "cache_prompt": True,  # the next keystroke's prompt shares most of this one
    }
    if params.stop:
        body["stop"] = list(params.stop)
    return body
