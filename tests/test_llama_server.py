"""`codekiln lsp --endpoint URL` against llama.cpp's server: a fake `llama-server` (its
routes and field names as tools/server/README.md gives them) records what the language
server sends. FIM goes through `/infill` (prefix and suffix around the cursor), plain
completion through `/v1/completions`; `endpoint_api` picks or auto-detects the kind. With a
real `llama-server` on PATH and the GGUF exporter present, one test runs against it."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager

import pytest
from test_lsp import SOURCE, URI, Client, position

from codekiln.errors import UserError
from codekiln.serve.config import LspConfig
from codekiln.serve.llama_server import LlamaServerBackend, connect
from codekiln.serve.lsp import Completer, Endpoint

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

GREEDY = LspConfig(temperature=0, max_new_tokens=12)
MIDDLE = SOURCE.index("a + b\n")  # code follows the cursor: one line, FIM
END = len(SOURCE)  # nothing follows: several lines, plain completion
INFILL_TEXT = "a + b\n    print('more')"
MODEL_PATH = "/models/model-q8_0.gguf"


class FakeLlamaServer:
    """The routes the language server uses, answering as llama-server does."""

    def __init__(self, llama: bool = True, fim: bool = True) -> None:
        self.llama, self.fim = llama, fim
        self.requests: list[tuple[str, dict]] = []

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, StreamingResponse
        from starlette.routing import Route

        async def health(request):
            return JSONResponse({"status": "ok"})

        async def props(request):
            if not self.llama:
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            settings = {"id": 0, "n_ctx": 512, "params": {"n_predict": -1, "top_k": 40}}
            return JSONResponse(
                {
                    "default_generation_settings": settings,
                    "total_slots": 1,
                    "model_path": MODEL_PATH,
                    "chat_template": "",
                    "build_info": "b0-fake",
                }
            )

        async def models(request):
            entry = {"id": MODEL_PATH, "object": "model", "owned_by": "llamacpp"}
            entry["meta"] = {"vocab_type": 2, "n_vocab": 64, "n_ctx_train": 1024}
            return JSONResponse({"object": "list", "data": [entry]})

        async def infill(request):
            body = await request.json()
            self.requests.append(("/infill", body))
            if not self.fim:
                message = "Infill is not supported by this model: prefix token is missing. "
                error = {"code": 501, "message": message, "type": "not_supported_error"}
                return JSONResponse({"error": error}, status_code=501)
            for name in ("input_prefix", "input_suffix"):
                if not isinstance(body.get(name), str):
                    error = {"code": 400, "message": f'"{name}" is required'}
                    return JSONResponse({"error": error}, status_code=400)
            assert isinstance(body.get("input_extra", []), list)
            assert isinstance(body.get("prompt", ""), str)
            pieces = [INFILL_TEXT[:5], INFILL_TEXT[5:]]
            if not body.get("stream"):
                return JSONResponse({"content": INFILL_TEXT, "stop": True, "stop_type": "limit"})
            events = [{"content": piece, "stop": False} for piece in pieces]
            events.append({"content": "", "stop": True, "stop_type": "limit"})
            return StreamingResponse(
                (f"data: {json.dumps(event)}\n\n" for event in events),
                media_type="text/event-stream",
            )

        async def completions(request):
            body = await request.json()
            self.requests.append(("/v1/completions", body))
            choice = {"index": 0, "text": "pass", "finish_reason": "length"}
            event = {"choices": [choice], "object": "text_completion"}
            stream = f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n"
            return StreamingResponse(iter([stream]), media_type="text/event-stream")

        return Starlette(
            routes=[
                Route("/health", health),
                Route("/props", props),
                Route("/v1/models", models),
                Route("/infill", infill, methods=["POST"]),
                Route("/v1/completions", completions, methods=["POST"]),
            ]
        )


@contextmanager
def running(fake: FakeLlamaServer):
    """`fake` served on a free port in a thread; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(fake.app(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the fake did not start"
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def endpoint_completer(url: str, api: str = "auto") -> Completer:
    backend = Endpoint(url, api)
    assert backend.ready()
    return Completer(backend, LspConfig(temperature=0, max_new_tokens=12, endpoint_api=api))


def test_fim_goes_through_infill_with_prefix_and_suffix():
    fake = FakeLlamaServer()
    with running(fake) as url:
        completer = endpoint_completer(url)
        assert isinstance(completer.backend.backend, LlamaServerBackend)
        assert completer.backend.context_length == 512  # the server's n_ctx, from /props
        assert completer.complete(SOURCE, MIDDLE) == "a + b"  # one line: the rest is cut
    [(route, body)] = fake.requests
    assert route == "/infill"
    assert body["input_prefix"] == SOURCE[:MIDDLE]
    assert body["input_suffix"] == SOURCE[MIDDLE:]
    assert body["input_extra"] == [] and body["prompt"] == ""
    assert body["n_predict"] == 12 and body["temperature"] == 0.0 and body["stream"] is True
    assert "\n" in body["stop"]
    assert body["top_k"] == 0 and body["min_p"] == 0.0 and body["repeat_penalty"] == 1.0


def test_plain_completion_goes_through_the_openai_route():
    fake = FakeLlamaServer()
    with running(fake) as url:
        completer = endpoint_completer(url, "llama.cpp")
        assert completer.complete(SOURCE, END) == "pass"
    [(route, body)] = fake.requests
    assert route == "/v1/completions"
    assert body["prompt"] == SOURCE and "suffix" not in body
    assert body["model"] == MODEL_PATH and body["max_tokens"] == 12


def test_openai_setting_keeps_the_openai_behaviour():
    """endpoint_api=openai: FIM as OpenAI's `suffix` on /v1/completions, as before."""
    fake = FakeLlamaServer()
    with running(fake) as url:
        completer = endpoint_completer(url, "openai")
        assert not isinstance(completer.backend.backend, LlamaServerBackend)
        assert completer.complete(SOURCE, MIDDLE) == "pass"
    [(route, body)] = fake.requests
    assert route == "/v1/completions" and body["suffix"] == SOURCE[MIDDLE:]


def test_auto_takes_a_server_without_props_as_openai_and_llama_cpp_refuses_it():
    fake = FakeLlamaServer(llama=False)
    with running(fake) as url:
        assert not isinstance(connect(url, "auto"), LlamaServerBackend)
        with pytest.raises(UserError, match="not a llama.cpp server.*endpoint_api=openai"):
            connect(url, "llama.cpp")


def test_model_without_fim_tokens_falls_back_to_plain_completion():
    fake = FakeLlamaServer(fim=False)
    with running(fake) as url:
        completer = endpoint_completer(url)
        assert completer.complete(SOURCE, MIDDLE) == ""  # refused: logged, no completion
        assert completer.complete(SOURCE, MIDDLE) == "pass"
    assert [route for route, _ in fake.requests] == ["/infill", "/v1/completions"]


def test_bad_endpoint_api_setting_is_one_line():
    with pytest.raises(UserError, match="endpoint_api must be auto, openai or llama.cpp"):
        LspConfig(endpoint_api="ollama")


@pytest.mark.slow
def test_language_server_completes_through_llama_server():
    """`python -m codekiln.serve.lsp --endpoint URL` as an editor starts it, against the fake:
    inline completion at the cursor comes from /infill."""
    fake = FakeLlamaServer()
    command = [
        sys.executable,
        "-m",
        "codekiln.serve.lsp",
        "--endpoint",
        "URL",
        "--temperature",
        "0",
    ]
    with running(fake) as url:
        command[4] = url
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        with subprocess.Popen(command, **pipes) as process:  # closes the pipes and waits
            try:
                client = Client(process.stdin, process.stdout)
                client.initialize()
                client.open(SOURCE)
                params = {"textDocument": {"uri": URI}, "position": position(SOURCE, MIDDLE)}
                params["context"] = {"triggerKind": 2}
                reply = client.request("textDocument/inlineCompletion", params)
                client.shutdown()
                process.wait(timeout=10)
            finally:
                if process.poll() is None:
                    process.kill()
            log = process.stderr.read().decode()
    assert [item["insertText"] for item in reply["result"]["items"]] == ["a + b"]
    [(route, body)] = fake.requests
    assert route == "/infill" and body["input_prefix"] == SOURCE[:MIDDLE]
    assert "llama.cpp API" in log and "Traceback" not in log


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("llama-server") is None, reason="llama-server is not on PATH")
def test_real_llama_server_infills_our_gguf(tmp_path):
    """Our exported GGUF in a real llama-server: /infill and /v1/completions answer, and
    greedy completions through them equal codekiln's own engine on the same weights (f32)."""
    gguf = pytest.importorskip("codekiln.model.gguf")
    from test_serve import write_model

    from codekiln.generate import load_backend

    model_dir = write_model(tmp_path)
    path = gguf.export_gguf(model_dir, tmp_path / "model-f32.gguf", quant="f32")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["llama-server", "-m", str(path), "--port", str(port), "-c", "256", "-np", "1"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (
                "llama-server did not start"
            )
            time.sleep(0.2)
        remote = endpoint_completer(url)
        local = Completer(load_backend(model_dir), GREEDY)
        assert isinstance(remote.backend.backend, LlamaServerBackend)
        for offset in (MIDDLE, END):  # /infill, then /v1/completions
            ours, theirs = local.complete(SOURCE, offset), remote.complete(SOURCE, offset)
            # a random model may end on a partial UTF-8 character (we decode it as U+FFFD,
            # llama.cpp holds it back) or sample <fim_pad>, where llama.cpp stops and we go on
            theirs, ours = theirs.replace("\ufffd", ""), ours.replace("\ufffd", "")
            assert theirs and ours.startswith(theirs)
    finally:
        server.terminate()
        server.wait(timeout=10)
