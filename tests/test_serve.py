"""`codekiln serve` with real clients on loopback: the `openai` package (sync, async,
streaming, FIM, n), `text-generation`'s Client and AsyncClient, `huggingface_hub`'s
InferenceClient, TGI's shapes and the exact bodies llm-ls sends for its `tgi` and `openai`
backends, greedy parity with `backend.complete`, validation errors and bad inputs (JSON 4xx,
never a 500), auth, /metrics, /overlap, a bounded concurrent load, slow requests cut off,
a full queue refused (429/503 with Retry-After), and generation stopped without a traceback
when the client goes away."""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import GOOD_PY, OTHER_PY, small_bpe

from codekiln.errors import UserError
from codekiln.generate import SamplingParams, load_backend
from codekiln.generate.backend import TextStream
from codekiln.generate.params import Completion
from codekiln.serve import ServeConfig
from codekiln.serve.api import ApiError, parse_openai, parse_tgi
from codekiln.serve.http import start_server
from codekiln.tokenizer.special import EOS, SPECIAL_TOKENS

VOCAB = 400
TINY = {"vocab_size": VOCAB, "n_positions": 128, "n_embd": 64, "n_layer": 2, "n_head": 4}
PROMPT = "def add(a, b):\n    return"


def write_model(root: Path, special_tokens=SPECIAL_TOKENS, seed: int = 0) -> Path:
    """A random 2-layer GPTBigCode with a small BPE tokenizer, exported as HF (no download)."""
    from codekiln.model import CodeGPT, ModelConfig, export_hf

    tokenizer_dir = root / "tokenizer"
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = small_bpe([GOOD_PY, OTHER_PY] * 20, special_tokens, vocab_size=VOCAB)
    tokenizer.save(str(tokenizer_dir / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS}
    (tokenizer_dir / "tokenizer_config.json").write_text(json.dumps(config))
    torch.manual_seed(seed)
    model = CodeGPT(ModelConfig(**TINY))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():  # noise, so greedy text varies from step to step
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return export_hf(model.eval(), root / "model", tokenizer_dir=tokenizer_dir)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def backend(model_dir):
    return load_backend(model_dir)


@pytest.fixture(scope="module")
def server(backend):
    # truncate off: an over-long prompt is refused (400), as the validation test checks
    with start_server(backend, ServeConfig(port=0, max_batch=2, truncate=False)) as running:
        yield running


def greedy(max_new_tokens: int = 12, **kw) -> SamplingParams:
    return SamplingParams(greedy=True, max_new_tokens=max_new_tokens, **kw)


def call(url: str, method: str = "GET", body=None, headers=None, raw: bytes | None = None):
    """(status, headers, parsed JSON or text) of one request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, head, payload = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, head, payload = exc.code, exc.headers, exc.read()
    text = payload.decode()
    if head.get("Content-Type", "").startswith("application/json"):
        return status, head, json.loads(text)
    return status, head, text


def events(text: str) -> list:
    """The data of each server-sent event."""
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


class Counting:
    """A backend that yields "x" per step (sleeping `delay`), counting every step taken."""

    name = "counting"
    context_length = 100_000
    supports_fim = True

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.steps = 0
        self.lock = threading.Lock()

    def stream(self, prompt, params, suffix=None):
        def run():
            for _ in range(params.max_new_tokens):
                time.sleep(self.delay)
                with self.lock:
                    self.steps += 1
                yield "x"
            return Completion("x" * params.max_new_tokens, params.max_new_tokens, "length", 1)

        return TextStream(run())


# The openai package.


def test_openai_client_greedy_equals_backend(server, backend):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    reply = client.completions.create(model="x", prompt=PROMPT, max_tokens=12, temperature=0)
    [[expected]] = backend.complete([PROMPT], greedy(12))
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    assert reply.choices[0].text == expected.text
    assert reply.choices[0].finish_reason == (
        "length" if expected.finish_reason == "length" else "stop"
    )
    assert reply.usage.prompt_tokens == len(backend.prompt_ids(PROMPT))
    assert reply.usage.completion_tokens == expected.tokens
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + expected.tokens
    assert [m.id for m in client.models.list()] == [backend.name]


def test_openai_client_stream_equals_backend(server, backend):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    chunks = list(
        client.completions.create(
            model="x",
            prompt=PROMPT,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    [[expected]] = backend.complete([PROMPT], greedy(12))
    assert len(chunks) > 3  # token by token, not one blob
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected.text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and not any(finishes[:-1])
    assert chunks[-1].usage.completion_tokens == expected.tokens


def test_openai_client_suffix_is_fill_in_the_middle(server, backend):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    prefix, suffix = "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"
    reply = client.completions.create(
        model="x", prompt=prefix, suffix=suffix, max_tokens=10, temperature=0
    )
    [[expected]] = backend.infill([prefix], [suffix], greedy(10))
    assert reply.choices[0].text == expected.text
    streamed = client.completions.create(
        model="x", prompt=prefix, suffix=suffix, max_tokens=10, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == expected.text


def test_prompt_list_n_stop_and_seeded_sampling(server, backend):
    prompts = [PROMPT, "class Counter:\n"]
    body = {"prompt": prompts, "n": 2, "max_tokens": 8, "temperature": 0, "stop": ["\n"]}
    status, _, reply = call(server.url + "/v1/completions", "POST", body)
    assert status == 200
    expected = backend.complete(prompts, greedy(8, stop=("\n",)))
    assert [c["index"] for c in reply["choices"]] == [0, 1, 2, 3]
    assert [c["text"] for c in reply["choices"]] == [c[0].text for c in expected for _ in "ab"]

    sampled = {"prompt": PROMPT, "max_tokens": 8, "temperature": 0.9, "top_p": 1, "seed": 5}
    _, _, first = call(server.url + "/v1/completions", "POST", sampled)
    _, _, again = call(server.url + "/v1/completions", "POST", sampled)
    params = SamplingParams(max_new_tokens=8, temperature=0.9, top_p=1.0, seed=5)
    [[drawn]] = backend.complete([PROMPT], params)
    assert first["choices"][0]["text"] == again["choices"][0]["text"] == drawn.text

    _, _, echoed = call(server.url + "/v1/completions", "POST", {**body, "echo": True, "n": 1})
    assert echoed["choices"][1]["text"].startswith(prompts[1])


# TGI, and the bodies llm-ls sends.


def test_tgi_generate_and_stream(server, backend):
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 10, "details": True}}
    status, _, reply = call(server.url + "/generate", "POST", body)
    [[expected]] = backend.complete([PROMPT], greedy(10))
    assert status == 200 and reply["generated_text"] == expected.text
    assert reply["details"]["generated_tokens"] == expected.tokens
    assert reply["details"]["finish_reason"] in ("length", "eos_token", "stop_sequence")

    status, head, text = call(server.url + "/generate_stream", "POST", body)
    assert status == 200 and head["Content-Type"] == "text/event-stream"
    stream = events(text)
    assert all(e["generated_text"] is None for e in stream[:-1])
    assert stream[-1]["generated_text"] == expected.text
    assert "".join(e["token"]["text"] for e in stream) == expected.text
    assert stream[-1]["details"]["generated_tokens"] == expected.tokens

    full = {"inputs": PROMPT, "parameters": {"max_new_tokens": 10, "return_full_text": True}}
    [compat] = call(server.url + "/", "POST", full)[2]  # TGI's compat route: a list
    assert compat["generated_text"] == PROMPT + expected.text


def test_llm_ls_tgi_backend_body(server, backend):
    """llm-ls's `build_body` for tgi: the editor's requestBody, `inputs` (a FIM prompt it laid
    out as text) and `parameters.return_full_text = false`; it reads `generated_text`."""
    prefix, suffix = "def add(a, b):\n    return ", "\n"
    inputs = f"<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>"
    vscode_default = {"max_new_tokens": 60, "temperature": 0.2, "top_p": 0.95}
    body = {"inputs": inputs, "parameters": {**vscode_default, "return_full_text": False}}
    status, _, reply = call(server.url + "/generate", "POST", body)
    assert status == 200 and isinstance(reply["generated_text"], str)

    greedy_body = {
        "inputs": inputs,
        "parameters": {"max_new_tokens": 12, "do_sample": False, "return_full_text": False},
    }
    _, _, reply = call(server.url + "/generate", "POST", greedy_body)
    [[expected]] = backend.infill([prefix], [suffix], greedy(12))
    assert reply == {"generated_text": expected.text}


def test_llm_ls_openai_backend_body(server, backend):
    """llm-ls's `build_body` for openai: requestBody + prompt, model, stream false; it reads
    `choices[].text`. Fields meant for TGI that the editor left in the body are ignored."""
    body = {
        "parameters": {"max_new_tokens": 60},
        "max_tokens": 12,
        "temperature": 0,
        "prompt": PROMPT,
        "model": "bigcode/starcoder",
        "stream": False,
    }
    status, _, reply = call(server.url + "/v1/completions", "POST", body)
    [[expected]] = backend.complete([PROMPT], greedy(12))
    assert status == 200 and reply["choices"][0]["text"] == expected.text


# Validation.


def test_request_validation_errors(server):
    url = server.url
    cases = [
        ({"prompt": PROMPT, "max_tokens": -1}, "max_tokens"),
        ({"prompt": PROMPT, "max_tokens": 10**9}, "max_tokens"),
        ({"prompt": PROMPT, "max_tokens": "12"}, "max_tokens"),
        ({"prompt": PROMPT, "n": 100}, "n"),
        ({"prompt": PROMPT, "temperature": "hot"}, "temperature"),
        ({"prompt": PROMPT, "top_p": 0}, "top_p"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": PROMPT, "stop": [1]}, "stop"),
        ({"prompt": PROMPT, "logprobs": 3}, "logprobs"),
        ({"prompt": PROMPT * 40}, "prompt"),  # over the 128-token context
        ({"prompt": PROMPT, "max_tokens": 129}, "max_tokens"),  # more than the context
    ]
    for body, param in cases:
        status, _, reply = call(url + "/v1/completions", "POST", body)
        assert status == 400, body
        assert set(reply["error"]) == {"message", "type", "param", "code"}
        assert reply["error"]["param"] == param, body
    assert (
        call(url + "/v1/completions", "POST", {"prompt": PROMPT * 40})[2]["error"]["code"]
        == "context_length_exceeded"
    )

    status, _, reply = call(url + "/v1/completions", "POST", raw=b"{not json")
    assert status == 400 and reply["error"]["code"] == "invalid_json"
    status, _, reply = call(url + "/v1/completions", "POST", [1, 2])
    assert status == 400
    status, _, reply = call(url + "/nope")
    assert status == 404 and reply["error"]["code"] == "not_found"
    status, head, reply = call(url + "/v1/completions")
    assert status == 405 and head["Allow"] == "POST"
    big = b'{"prompt": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    status, _, reply = call(url + "/v1/completions", "POST", raw=big)
    assert status == 413 and reply["error"]["code"] == "body_too_large"

    status, _, reply = call(url + "/generate", "POST", {"inputs": 3})
    assert status == 422 and reply == {
        "error": "inputs must be a string",
        "error_type": "validation",
    }
    status, _, reply = call(url + "/generate", "POST", {"inputs": "x", "parameters": {"top_k": -1}})
    assert status == 422 and "top_k" in reply["error"]


def test_suffix_without_fim_tokens_is_400(tmp_path):
    plain = [t for t in SPECIAL_TOKENS if not t.startswith("<fim")]
    folder = write_model(tmp_path, special_tokens=plain)
    with start_server(load_backend(folder), ServeConfig(port=0)) as running:
        body = {"prompt": "x", "suffix": "y", "max_tokens": 4}
        status, _, reply = call(running.url + "/v1/completions", "POST", body)
        assert status == 400 and reply["error"]["code"] == "fim_not_supported"
        assert call(running.url + "/v1/completions", "POST", {"prompt": "x"})[0] == 200


def test_parsers_map_defaults_as_the_apis_do():
    config = ServeConfig()
    openai_default = parse_openai({"prompt": "x"}, config)
    assert openai_default.params.max_new_tokens == 16 and not openai_default.params.is_greedy
    assert parse_tgi({"inputs": "x"}, config, False).params.is_greedy  # TGI: greedy default
    warped = parse_tgi({"inputs": "x", "parameters": {"temperature": 0.2}}, config, False)
    assert not warped.params.is_greedy  # TGI samples when a warper is set
    assert parse_tgi(
        {"inputs": "x", "parameters": {"stop_tokens": ["\n"]}}, config, False
    ).params.stop == ("\n",)
    with pytest.raises(ApiError) as info:
        parse_openai({"prompt": ["a"] * 10, "n": 16}, config)
    assert info.value.param == "n"


# Auth, metrics, attribution.


def test_api_key(backend):
    with start_server(backend, ServeConfig(port=0, api_key="sesame")) as running:
        url = running.url
        body = {"prompt": PROMPT, "max_tokens": 2}
        status, head, reply = call(url + "/v1/completions", "POST", body)
        assert status == 401 and reply["error"]["code"] == "invalid_api_key"
        assert head["WWW-Authenticate"] == "Bearer"
        wrong = {"Authorization": "Bearer nope"}
        assert call(url + "/v1/completions", "POST", body, wrong)[0] == 401
        assert call(url + "/generate", "POST", {"inputs": "x"}, wrong)[0] == 401
        right = {"Authorization": "Bearer sesame"}
        assert call(url + "/v1/completions", "POST", body, right)[0] == 200
        assert call(url + "/health")[0] == 200  # open, for load balancers
        assert call(url + "/metrics")[0] == 401
        assert call(url + "/metrics", headers=right)[0] == 200
        openai = pytest.importorskip("openai")
        assert (
            openai.OpenAI(base_url=url + "/v1", api_key="sesame")
            .completions.create(model="x", prompt=PROMPT, max_tokens=2)
            .choices
        )
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="nope", max_retries=0).completions.create(
                model="x", prompt=PROMPT, max_tokens=2
            )


def metric(text: str, line_start: str) -> float:
    values = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(line_start)]
    assert len(values) == 1, line_start
    return float(values[0])


def test_metrics_count_requests_tokens_and_latency(backend):
    with start_server(backend, ServeConfig(port=0)) as running:
        url = running.url
        tokens = 0
        for _ in range(3):
            reply = call(url + "/v1/completions", "POST", {"prompt": PROMPT, "max_tokens": 5})[2]
            tokens += reply["usage"]["completion_tokens"]
        call(url + "/v1/completions", "POST", {"prompt": PROMPT, "max_tokens": -5})
        call(url + "/missing")
        status, head, text = call(url + "/metrics")
        assert status == 200 and head["Content-Type"].startswith("text/plain")
        ok = 'codekiln_requests_total{endpoint="/v1/completions",status="200"}'
        assert metric(text, ok) == 3
        assert metric(text, ok.replace("200", "400")) == 1
        assert metric(text, 'codekiln_requests_total{endpoint="other",status="404"}') == 1
        assert metric(text, "codekiln_generated_tokens_total") == tokens
        count = 'codekiln_request_duration_seconds_count{endpoint="/v1/completions"}'
        assert metric(text, count) == 4
        assert (
            metric(
                text,
                'codekiln_request_duration_seconds_bucket{endpoint="/v1/completions",le="+Inf"}',
            )
            == 4
        )
        assert metric(text, "codekiln_requests_in_flight") == 1  # this very request


def test_overlap_with_an_attribution_index(tmp_path, backend):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from codekiln.attribution import AttributionConfig, build_index

    rng = random.Random(3)
    planted = "\n".join(
        f"def fn_{rng.randrange(10**6)}(x):\n    return x * {rng.randrange(10**6)}"
        for _ in range(12)
    )
    data = tmp_path / "curated"
    data.mkdir()
    row = {
        "id": "a",
        "content": planted,
        "repo": "acme/app",
        "path": "m.py",
        "license": "MIT",
        "stars": 1,
    }
    pq.write_table(pa.Table.from_pylist([row]), data / "part-00000.parquet")
    build_index(data, tmp_path / "index", AttributionConfig(), progress=False)

    with start_server(backend, ServeConfig(port=0), attribution=tmp_path / "index") as running:
        document = "# fresh text here\n" + planted[40:400] + "\n# more fresh text\n"
        status, _, reply = call(running.url + "/overlap", "POST", {"document": document})
        assert status == 200 and reply["spans"]
        start, end = reply["spans"][0]
        assert document[start:end] in planted
        assert reply["sources"][0][0]["repo"] == "acme/app"
        assert call(running.url + "/overlap", "POST", {"document": 5})[0] == 400
        assert call(running.url + "/overlap", "POST", {"document": "short"})[2]["spans"] == []


def test_port_in_use_is_one_clear_error(server):
    port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(UserError, match="pick another --port"):
        start_server(Counting(), ServeConfig(port=port))


def test_overlap_without_an_index_is_404(server):
    status, _, reply = call(server.url + "/overlap", "POST", {"document": "x"})
    assert status == 404 and reply["error"]["code"] == "no_attribution_index"


# Load and disconnects.


def test_concurrent_load_all_succeed_and_health_stays_fast(server, backend):
    bodies = [{"prompt": f"def f{i}(x):\n", "max_tokens": 8, "temperature": 0} for i in range(16)]
    health_latencies = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            started = time.monotonic()
            assert call(server.url + "/health")[0] == 200
            health_latencies.append(time.monotonic() - started)
            time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            replies = list(
                pool.map(lambda b: call(server.url + "/v1/completions", "POST", b), bodies)
            )
    finally:
        done.set()
        prober.join()
    assert [status for status, _, _ in replies] == [200] * 16
    expected = backend.complete([b["prompt"] for b in bodies], greedy(8))
    assert [r["choices"][0]["text"] for _, _, r in replies] == [c[0].text for c in expected]
    assert len(health_latencies) >= 3 and max(health_latencies) < 0.5


def open_request(url: str, path: str, body: dict) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)
    return sock


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_stops_generation(stream):
    counting = Counting(delay=0.01)
    with start_server(counting, ServeConfig(port=0)) as running:
        metrics = running.app.metrics
        sock = open_request(
            running.url, "/v1/completions", {"prompt": "x", "max_tokens": 2000, "stream": stream}
        )
        if stream:
            received = b""
            while b"data: " not in received:
                received += sock.recv(4096)
        wait_for(lambda: counting.steps >= 5)
        sock.close()
        wait_for(lambda: metrics.value("generations_cancelled") == 1)
        stopped_at = counting.steps
        time.sleep(0.1)
        assert counting.steps == stopped_at < 200  # of 2000
        assert metrics.value("batch_occupancy") == 0
        status, _, _ = call(running.url + "/health")
        assert status == 200


def no_tracebacks(caplog, capfd) -> None:
    """Nothing the server logged or printed carries a traceback."""
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    assert "Traceback" not in caplog.text and "Traceback" not in capfd.readouterr().err


def test_dropped_stream_cancels_without_traceback(caplog, capfd):
    counting = Counting(delay=0.01)
    with start_server(counting, ServeConfig(port=0)) as running:
        for path, body in [
            ("/v1/completions", {"prompt": "x", "max_tokens": 2000, "stream": True}),
            ("/generate_stream", {"inputs": "x", "parameters": {"max_new_tokens": 2000}}),
        ]:
            before = running.app.metrics.value("generations_cancelled")
            sock = open_request(running.url, path, body)
            received = b""
            while received.count(b"data: ") < 3:
                received += sock.recv(4096)
            sock.close()
            wait_for(lambda b=before: running.app.metrics.value("generations_cancelled") == b + 1)
            stopped_at = counting.steps
            time.sleep(0.1)
            assert counting.steps == stopped_at
    no_tracebacks(caplog, capfd)


# Real clients: openai (async), text-generation, huggingface_hub.


def test_openai_async_client(server, backend):
    openai = pytest.importorskip("openai")
    [[expected]] = backend.complete([PROMPT], greedy(12))

    async def run():
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused")
        create = partial(
            client.completions.create, model="x", prompt=PROMPT, max_tokens=12, temperature=0
        )
        replies = await asyncio.gather(*(create() for _ in range(3)))
        stream = await create(stream=True)
        streamed = "".join([chunk.choices[0].text async for chunk in stream if chunk.choices])
        return [reply.choices[0].text for reply in replies], streamed

    texts, streamed = asyncio.run(run())
    assert texts == [expected.text] * 3 and streamed == expected.text


@pytest.mark.filterwarnings("ignore:The `dict` method is deprecated")  # text-generation's
def test_text_generation_client_and_async_client(server, backend):
    text_generation = pytest.importorskip("text_generation")
    [[expected]] = backend.complete([PROMPT], greedy(10))
    client = text_generation.Client(server.url, timeout=60)
    reply = client.generate(PROMPT, max_new_tokens=10)
    assert reply.generated_text == expected.text
    assert reply.details.generated_tokens == expected.tokens
    streamed = list(client.generate_stream(PROMPT, max_new_tokens=10))
    assert "".join(r.token.text for r in streamed) == expected.text
    assert streamed[-1].generated_text == expected.text
    assert streamed[-1].details.generated_tokens == expected.tokens
    with pytest.raises(text_generation.errors.ValidationError):
        client.generate(PROMPT, max_new_tokens=128)  # the whole context: TGI's 422

    async def run():
        client = text_generation.AsyncClient(server.url, timeout=60)
        reply = await client.generate(PROMPT, max_new_tokens=10)
        tokens = [r.token.text async for r in client.generate_stream(PROMPT, max_new_tokens=10)]
        return reply.generated_text, "".join(tokens)

    assert asyncio.run(run()) == (expected.text, expected.text)


def test_huggingface_hub_inference_client(server, backend):
    hub = pytest.importorskip("huggingface_hub")
    [[expected]] = backend.complete([PROMPT], greedy(10))
    client = hub.InferenceClient(base_url=server.url)
    assert client.text_generation(PROMPT, max_new_tokens=10) == expected.text
    detailed = client.text_generation(PROMPT, max_new_tokens=10, details=True)
    assert detailed.generated_text == expected.text
    assert detailed.details.generated_tokens == expected.tokens
    streamed = list(client.text_generation(PROMPT, max_new_tokens=10, stream=True, details=True))
    assert "".join(s.token.text for s in streamed) == expected.text
    assert streamed[-1].details.finish_reason in ("length", "eos_token", "stop_sequence")


# Bad requests: JSON 4xx, never a 500, never HTML.


def raw_exchange(url: str, data: bytes | list[bytes], pause: float = 0.0) -> tuple[int, dict]:
    """Send bytes (a list: pieces, `pause` apart) on a fresh connection; the status and JSON
    body of the answer, read until the server closes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for piece in [data] if isinstance(data, bytes) else data:
            sock.sendall(piece)
            time.sleep(pause)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return int(head.split()[1]), json.loads(body)


def test_bad_inputs_answer_json_4xx(server):
    url = server.url
    for raw in (b'{"prompt": "\\ud800", "max_tokens": 2}', b"[" * 100_000 + b"]" * 100_000):
        status, _, reply = call(url + "/v1/completions", "POST", raw=raw)
        assert status == 400 and reply["error"]["code"] == "invalid_json", raw[:40]
        status, _, reply = call(url + "/generate", "POST", raw=raw)
        assert status == 422 and reply["error_type"] == "validation", raw[:40]
    bad_tgi = [
        {"inputs": "x", "parameters": {"max_new_tokens": 128}},  # the scheduler's 400
        {"inputs": "x", "parameters": {"truncate": 0}},
        {"inputs": "x", "stream": "yes"},
    ]
    for body in bad_tgi:
        status, _, reply = call(url + "/", "POST", body)
        assert status == 422 and reply["error_type"] == "validation", body

    body = json.dumps({"prompt": PROMPT, "max_tokens": 3, "temperature": 0}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:10], body[10:])) + b"0\r\n\r\n"
    head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    status, reply = raw_exchange(url, head + b"Connection: close\r\n\r\n" + chunked)
    assert status == 200 and reply["usage"]["completion_tokens"] >= 1

    status, _, reply = call(url + "/health?" + "a" * 20_000)
    assert status == 414 and reply["error"]["message"].startswith("the URL")
    status, _, reply = call(url + "/health", headers={"X-Big": "a" * 40_000})
    assert status == 431 and reply["error"]["message"]  # the app's, or h11's if it came in parts
    # A head that grows past h11's buffer before it ends: refused by the protocol, in JSON.
    line = b"GET /health?" + b"a" * 20_000
    assert raw_exchange(url, [line, line], pause=0.05)[0] == 414
    header = b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 20_000
    assert raw_exchange(url, [header, b"a" * 20_000], pause=0.05)[0] == 431
    status, reply = raw_exchange(url, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400 and reply["error"]["code"] == "invalid_http"
    assert call(url + "/health")[0] == 200


@pytest.mark.slow
def test_slow_request_is_cut_off_while_others_are_served(caplog, capfd):
    counting = Counting(delay=0.001)
    with start_server(counting, ServeConfig(port=0, read_timeout=1.0)) as running:
        host, port = running.url.removeprefix("http://").split(":")
        half_body = socket.create_connection((host, int(port)), timeout=10)
        half_body.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
            + b'{"prompt": "x", '
        )
        half_head = socket.create_connection((host, int(port)), timeout=10)
        half_head.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\n")
        silent = socket.create_connection((host, int(port)), timeout=10)
        started = time.monotonic()
        for _ in range(5):  # the stalled ones hold nothing the others need
            assert call(running.url + "/health")[0] == 200
            body = {"inputs": "x", "parameters": {"max_new_tokens": 2}}
            assert call(running.url + "/generate", "POST", body)[2] == {"generated_text": "xx"}
        for sock in (half_body, half_head, silent):
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            sock.close()
            assert time.monotonic() - started < 4.0  # read_timeout 1 s, and a busy machine
            if sock is not silent:
                assert answer.startswith(b"HTTP/1.1 408 "), answer
                assert b'"request_timeout"' in answer
    no_tracebacks(caplog, capfd)


@pytest.mark.filterwarnings("ignore:The `dict` method is deprecated")
def test_full_queue_answers_429_on_tgi_routes_and_503_on_openai(caplog, capfd):
    counting = Counting(delay=0.01)
    config = ServeConfig(port=0, max_batch=1, max_queue=0, retry_after=3)
    with start_server(counting, config) as running:
        busy = open_request(
            running.url, "/generate_stream", {"inputs": "x", "parameters": {"max_new_tokens": 500}}
        )
        wait_for(lambda: counting.steps >= 2)
        status, head, reply = call(running.url + "/generate", "POST", {"inputs": "x"})
        assert status == 429 and head["Retry-After"] == "3"
        assert reply["error_type"] == "overloaded"
        status, head, reply = call(running.url + "/v1/completions", "POST", {"prompt": "x"})
        assert status == 503 and head["Retry-After"] == "3"
        assert reply["error"]["code"] == "overloaded" and reply["error"]["type"] == "server_error"
        text_generation = pytest.importorskip("text_generation")
        with pytest.raises(text_generation.errors.OverloadedError):
            text_generation.Client(running.url).generate("x")
        openai = pytest.importorskip("openai")
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            client.completions.create(model="x", prompt="x")
        open_request(running.url, "/generate", {"inputs": "x"}).close()  # leaves at once
        assert running.app.metrics.value("generations_rejected") >= 4
        busy.close()
        wait_for(lambda: running.app.metrics.value("generations_cancelled") == 1)
    no_tracebacks(caplog, capfd)


@pytest.mark.slow
def test_cli_serve_flags_and_ctrl_c_stops_it_cleanly(model_dir):
    """`codekiln serve` as a user runs it: the flags reach the server, Ctrl-C ends it (exit
    0, no traceback). Slow: a second Python process loads torch."""
    command = [sys.executable, "-m", "codekiln.cli", "serve", str(model_dir), "--port", "0"]
    flags = ["--max-batch", "2", "--max-queue", "1", "--dtype", "float32", "--no-truncate"]
    process = subprocess.Popen(
        [*command, *flags, "--read-timeout", "5"], stderr=subprocess.PIPE, text=True
    )
    try:
        lines = []
        while not (lines and " serving " in lines[-1]):
            lines.append(process.stderr.readline())
            assert lines[-1], "".join(lines)
        url = re.search(r"on (http://\S+) ", lines[-1]).group(1)
        assert call(url + "/info")[2]["max_concurrent_requests"] == 3
        status, _, reply = call(url + "/v1/completions", "POST", {"prompt": PROMPT * 40})
        assert status == 400 and reply["error"]["code"] == "context_length_exceeded"
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, rest
    assert "Traceback" not in "".join(lines) + rest
