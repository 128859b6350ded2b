"""`OpenAIBackend`: an OpenAI-compatible `/v1/completions` endpoint (vLLM, TGI, llama.cpp,
`codekiln serve`), with the standard library's urllib only.

- One request per sample (n=1), each seeded with `sample_seed(seed, prompt, sample)`: servers
  that do not take n > 1 (llama.cpp) work, samples differ where a server honours the seed,
  and the requests run concurrently (`concurrency` threads), so a batching server such as
  vLLM sees them together.
- Infilling sends `suffix`; the server lays out the FIM prompt with its own tokenizer.
- Connection errors, timeouts, 429 and 5xx are retried `retries` times with exponential
  backoff; then, or at once for any other 4xx or a reply that is no completion, a UserError
  says in one line what went wrong.
- The server applies the stop strings; the text is cut again here, so a server that ignores
  `stop` gives the same completions.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from codekiln.errors import PromptTooLong, UserError
from codekiln.generate.backend import (
    TextStream,
    check_infill_args,
    check_prompts,
    check_stream_params,
)
from codekiln.generate.params import Completion, SamplingParams, sample_seed
from codekiln.generate.text import StopMatcher, cut_at_stop

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class OpenAIBackend:
    """`base_url` is `http(s)://host:port` or that with `/v1`. `model` is the name sent with
    every request (default: the first model `GET /v1/models` lists, or none).
    `context_length` defaults to the `max_model_len` vLLM reports there, or 0 (unknown)."""

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        retries: int = 3,
        backoff: float = 0.5,
        timeout: float = 600.0,
        context_length: int | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise UserError(f"endpoint {base_url!r} must start with http:// or https://")
        if concurrency < 1 or retries < 0 or backoff < 0 or timeout <= 0:
            raise UserError(
                "endpoint settings: concurrency must be >= 1, retries and backoff >= 0, timeout > 0"
            )
        root = base_url.rstrip("/")
        self.base_url = root if root.endswith("/v1") else root + "/v1"
        self.name = model or self.base_url
        self.api_key = api_key
        self.concurrency = concurrency
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.supports_fim = True  # the server decides; one that cannot says so in its error
        self.counts_prompt_tokens = False  # max_length falls back to max_new_tokens
        self.model = model
        self.context_length = context_length or 0
        if model is None or context_length is None:
            self._discover()

    def complete(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        check_prompts(prompts)
        return self._run([{"prompt": p} for p in prompts], params)

    def infill(
        self, prefixes: Sequence[str], suffixes: Sequence[str], params: SamplingParams
    ) -> list[list[Completion]]:
        check_infill_args(prefixes, suffixes)
        pairs = zip(prefixes, suffixes, strict=True)
        return self._run([{"prompt": p, "suffix": s} for p, s in pairs], params)

    def stream(self, prompt: str, params: SamplingParams, suffix: str | None = None) -> TextStream:
        check_stream_params(params)
        body = self._body({"prompt": prompt}, params, sample_seed(params.seed, 0, 0))
        if suffix is not None:
            body["suffix"] = suffix
        body["stream"] = True
        return TextStream(self._stream(body, params))

    def _run(self, inputs: list[dict[str, str]], params: SamplingParams) -> list[list[Completion]]:
        jobs = [
            self._body(fields, params, sample_seed(params.seed, index, sample))
            for index, fields in enumerate(inputs)
            for sample in range(params.n)
        ]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs) or 1)) as pool:
            replies = list(pool.map(lambda body: self._complete_one(body, params), jobs))
        n = params.n
        return [replies[i * n : (i + 1) * n] for i in range(len(inputs))]

    def _body(self, fields: dict[str, str], params: SamplingParams, seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            **fields,
            "max_tokens": params.max_new_tokens,
            "temperature": 0.0 if params.is_greedy else params.temperature,
            "top_p": 1.0 if params.is_greedy else params.top_p,
            "n": 1,
            "seed": seed % 2**31,  # some servers keep seeds in 32-bit signed integers
        }
        if params.top_k and not params.is_greedy:
            body["top_k"] = params.top_k  # vLLM, TGI and llama.cpp's extension
        if params.stop:
            body["stop"] = list(params.stop)
        if params.ignore_eos:
            body["ignore_eos"] = True  # vLLM's extension
        if self.model:
            body["model"] = self.model
        return body

    def _complete_one(self, body: dict[str, Any], params: SamplingParams) -> Completion:
        reply = self._request("POST", "/completions", body)
        try:
            choice = reply["choices"][0]
            text = choice["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
            reason = choice.get("finish_reason")
            usage = reply.get("usage") or {}
            tokens = int(usage.get("completion_tokens") or 0)
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(
                f"endpoint {self.base_url}/completions returned no completion ({exc}): "
                f"{_preview(reply)}"
            ) from None
        text, stopped = cut_at_stop(text, params.stop)
        finish = "stop" if stopped or reason in ("stop", "eos", "eos_token") else "length"
        return Completion(text, tokens, finish, prompt_tokens)

    def _stream(self, body: dict[str, Any], params: SamplingParams) -> Iterator[str]:
        matcher = StopMatcher(params.stop)
        reason = "length"
        with self._open("POST", "/completions", body) as response:
            for event in _server_sent_events(response, f"{self.base_url}/completions"):
                try:
                    choice = event["choices"][0]
                    delta = choice.get("text") or ""
                    reason = choice.get("finish_reason") or reason
                except (KeyError, IndexError, TypeError, AttributeError):
                    raise UserError(
                        f"endpoint {self.base_url}/completions streamed an event that is no "
                        f"completion: {_preview(event)}"
                    ) from None
                out, stopped = matcher.feed(delta)
                if out:
                    yield out
                if stopped:
                    break
        if matcher.stopped:
            reason = "stop"
        else:
            tail = matcher.flush()
            if tail:
                yield tail
        finish = "stop" if reason in ("stop", "eos", "eos_token") else "length"
        return Completion(matcher.text, 0, finish)

    def _discover(self) -> None:
        """The model's name and context from `GET /v1/models`, where the server has it.

        Only an unreachable server is an error here; a server without the route is fine.
        """
        try:
            reply = self._request("GET", "/models", None, quiet_status=True)
        except _HTTPStatus:
            return
        entries = reply.get("data") if isinstance(reply, dict) else None
        if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
            return
        first = entries[0]
        if self.model is None and isinstance(first.get("id"), str):
            self.model = first["id"]
            self.name = self.model
        if not self.context_length and isinstance(first.get("max_model_len"), int):
            self.context_length = first["max_model_len"]

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None, quiet_status: bool = False
    ) -> Any:
        with self._open(method, path, body, quiet_status) as response:
            raw = response.read()
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise UserError(
                f"endpoint {self.base_url}{path} returned something that is not JSON: {raw[:80]!r}"
            ) from None

    def _open(
        self, method: str, path: str, body: dict[str, Any] | None, quiet_status: bool = False
    ):
        """The open response, after retrying what a retry can fix."""
        url = self.base_url + path
        headers = json_headers(self.api_key)
        data = None if body is None else json.dumps(body).encode()
        failure = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                return urllib.request.urlopen(request, timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                message = _error_message(exc)
                if exc.code not in RETRY_STATUS:
                    if quiet_status:
                        raise _HTTPStatus(exc.code) from None
                    error = UserError
                    if exc.code in (400, 422) and _says_too_long(message):
                        error = PromptTooLong
                    raise error(
                        f"endpoint {url} refused the request: HTTP {exc.code} {message}"
                    ) from None
                failure = f"HTTP {exc.code} {message}"
            except (urllib.error.URLError, OSError) as exc:
                failure = str(getattr(exc, "reason", exc))
        raise UserError(f"endpoint {url} failed {self.retries + 1} times, the last with: {failure}")


class _HTTPStatus(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _server_sent_events(response: Any, url: str) -> Iterator[Any]:
    """The JSON payloads of `data:` lines until `data: [DONE]` (or the end of the stream)."""
    for raw in response:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            event = json.loads(payload)
        except json.JSONDecodeError:
            raise UserError(
                f"endpoint {url} streamed something that is not JSON: {payload[:80]!r}"
            ) from None
        yield event


def _says_too_long(message: str) -> bool:
    """Whether a 400's message is about the prompt's length (vLLM, TGI, OpenAI, ours).

    >>> _says_too_long("This model's maximum context length is 2048 tokens")
    True
    """
    text = message.lower()
    return (
        "context" in text or "too long" in text or "input validation" in text and "tokens" in text
    )


def _error_message(exc: urllib.error.HTTPError) -> str:
    """The server's own error message where it sent one (OpenAI's {"error": {"message"}})."""
    try:
        body = exc.read()
        reply = json.loads(body)
        error = reply.get("error", reply) if isinstance(reply, dict) else reply
        message = error.get("message", error) if isinstance(error, dict) else error
        return str(message)[:200]
    except Exception:
        return str(exc.reason)[:200]


def _preview(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text[:120]


def json_headers(api_key: str | None) -> dict[str, str]:
    """A JSON request's headers, with the bearer token when there is one."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers
