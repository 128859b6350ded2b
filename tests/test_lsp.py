"""`codekiln lsp`: JSON-RPC over pipes (initialize, didOpen, didChange, inline completion,
completion, llm-ls's getCompletions as llm.nvim sends it, cancellation and supersession),
the prompt context, the IPython extension, and a real editor: headless Neovim starts the
server, opens a Python file and receives a completion."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_serve import Counting, write_model

from codekiln.generate import SamplingParams, load_backend
from codekiln.serve.config import LspConfig
from codekiln.serve.context import cursor_context
from codekiln.serve.editors import model_facts, render
from codekiln.serve.lsp import Completer, Settings, build_lsp_server, llm_ls_settings

pytest.importorskip("pygls")

SOURCE = "import os\n\n\ndef add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n"
URI = "file:///tmp/codekiln_lsp_test/example.py"
GREEDY = LspConfig(temperature=0, max_new_tokens=12)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("lsp"))


@pytest.fixture(scope="module")
def completer(model_dir) -> Completer:
    return Completer(load_backend(model_dir), GREEDY)


class Client:
    """A JSON-RPC client over a pair of byte streams (LSP's Content-Length framing)."""

    def __init__(self, write, read) -> None:
        self._write, self._read = write, read
        self._next_id = 0
        self.notifications: list[dict] = []

    def send(self, method: str, params, request: bool = True) -> int | None:
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        ident = None
        if request:
            self._next_id += 1
            ident = message["id"] = self._next_id
        body = json.dumps(message).encode()
        self._write.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self._write.flush()
        return ident

    def receive(self) -> dict:
        length = 0
        while True:
            line = self._read.readline()
            assert line, "the server closed its output"
            line = line.strip()
            if not line:
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return json.loads(self._read.read(length))

    def response(self, ident: int) -> dict:
        """The response to request `ident`; notifications (logs) on the way are kept."""
        while True:
            message = self.receive()
            if message.get("id") == ident and "method" not in message:
                return message
            if "method" in message and "id" in message:  # a server request: acknowledge
                reply = {"jsonrpc": "2.0", "id": message["id"], "result": None}
                body = json.dumps(reply).encode()
                self._write.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
                self._write.flush()
            else:
                self.notifications.append(message)

    def request(self, method: str, params) -> dict:
        return self.response(self.send(method, params))

    def initialize(self) -> dict:
        reply = self.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
        self.send("initialized", {}, request=False)
        return reply["result"]

    def shutdown(self) -> None:
        """shutdown, then exit: how an editor ends the server."""
        self.request("shutdown", None)
        self.send("exit", None, request=False)

    def open(self, text: str, uri: str = URI) -> None:
        document = {"uri": uri, "languageId": "python", "version": 1, "text": text}
        self.send("textDocument/didOpen", {"textDocument": document}, request=False)


@pytest.fixture(scope="module")
def lsp(model_dir):
    """`python -m codekiln.serve.lsp --model DIR` as an editor starts it."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "codekiln.serve.lsp",
            "--model",
            str(model_dir),
            "--temperature",
            "0",
            "--max-new-tokens",
            "12",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    client = Client(process.stdin, process.stdout)
    client.capabilities = client.initialize()["capabilities"]
    yield client
    client.request("shutdown", None)
    client.send("exit", None, request=False)
    process.wait(timeout=10)
    process.stderr.close()
    process.stdout.close()
    process.stdin.close()


def position(text: str, offset: int) -> dict:
    line = text.count("\n", 0, offset)
    return {"line": line, "character": offset - (text.rfind("\n", 0, offset) + 1)}


@pytest.mark.slow
def test_initialize_advertises_completion_providers(lsp):
    caps = lsp.capabilities
    assert "inlineCompletionProvider" in caps and "completionProvider" in caps
    assert caps["textDocumentSync"]["change"] == 2  # incremental


@pytest.mark.slow
def test_inline_completion_equals_the_completer(lsp, completer):
    lsp.open(SOURCE)
    offset = SOURCE.index("    return") + len("    return")  # end of a line: multi-line
    params = {
        "textDocument": {"uri": URI},
        "position": position(SOURCE, offset),
        "context": {"triggerKind": 2},
    }
    reply = lsp.request("textDocument/inlineCompletion", params)["result"]
    expected = completer.complete(SOURCE, offset)
    assert expected  # the random model writes something here
    [item] = reply["items"]
    assert item["insertText"] == expected
    assert item["range"]["start"] == params["position"]


@pytest.mark.slow
def test_did_change_then_completion(lsp, completer):
    uri = URI.replace("example", "changed")
    lsp.open(SOURCE, uri)
    insert_at = position(SOURCE, SOURCE.index("print"))
    change = {"range": {"start": insert_at, "end": insert_at}, "text": "result = ad"}
    lsp.send(
        "textDocument/didChange",
        {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [change]},
        request=False,
    )
    text = SOURCE.replace("print", "result = adprint", 1)
    offset = text.index("result = ad") + len("result = ad")  # code follows: single line
    reply = lsp.request(
        "textDocument/completion",
        {"textDocument": {"uri": uri}, "position": position(text, offset)},
    )
    expected = completer.complete(text, offset)
    assert expected and "\n" not in expected
    [item] = reply["result"]["items"]
    assert item["textEdit"]["newText"] == "ad" + expected  # the typed word, then the model's
    assert item["textEdit"]["range"]["start"]["character"] == len("result = ")
    assert item["filterText"].startswith("ad")


@pytest.mark.slow
def test_llm_ls_get_completions_as_llm_nvim_sends_it(lsp, completer):
    uri = URI.replace("example", "llm")
    lsp.open(SOURCE, uri)
    offset = SOURCE.index("    return") + len("    return")
    llm_nvim = {
        "model": "bigcode/starcoder",
        "backend": "huggingface",
        "url": None,
        "requestBody": {"parameters": {"max_new_tokens": 12, "temperature": 0, "top_p": 0.95}},
        "tokensToClear": ["<|endoftext|>"],
        "apiToken": None,
        "fim": {
            "enabled": True,
            "prefix": "<fim_prefix>",
            "middle": "<fim_middle>",
            "suffix": "<fim_suffix>",
        },
        "tokenizerConfig": None,
        "contextWindow": 1024,
        "tlsSkipVerifyInsecure": False,
        "ide": "neovim",
        "disableUrlPathCompletion": False,
    }
    where = {"textDocument": {"uri": uri}, "position": position(SOURCE, offset)}
    expected = completer.complete(SOURCE, offset)
    assert expected
    for params in ({**llm_nvim, **where}, {**llm_nvim, "1": where}):  # flat, and nested
        reply = lsp.request("llm-ls/getCompletions", params)["result"]
        assert set(reply) == {"request_id", "completions"}
        assert reply["completions"] == [{"generated_text": expected}]
    lsp.send(
        "llm-ls/acceptCompletion",
        {"requestId": reply["request_id"], "acceptedCompletion": 0, "shownCompletions": [0]},
    )


@pytest.mark.slow
def test_unopened_document_gets_an_empty_result(lsp):
    """Every request kind for a document never opened (or closed) answers nothing, not an
    internal error: editors ask before their didOpen arrives."""
    uri = URI.replace("example", "never_opened")
    where = {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 0}}
    for _ in range(2):  # never opened; then opened and closed
        inline = lsp.request(
            "textDocument/inlineCompletion", {**where, "context": {"triggerKind": 1}}
        )
        assert inline["result"] == {"items": []}, inline
        completion = lsp.request("textDocument/completion", where)
        assert completion["result"] == {"isIncomplete": True, "items": []}, completion
        llm = lsp.request("llm-ls/getCompletions", {**where, "requestBody": {"max_tokens": 4}})
        assert llm["result"]["completions"] == [], llm
        lsp.open(SOURCE, uri)
        lsp.send("textDocument/didClose", {"textDocument": {"uri": uri}}, request=False)


@pytest.mark.slow
def test_positions_count_utf16_units(lsp, completer):
    """LSP positions are UTF-16 code units: 😀 and 𝔘 before the cursor count two each."""
    uri = URI.replace("example", "astral")
    text = "import os\n\n\ndef add(a, b):\n    s = '😀𝔘'; return a + b\n"
    lsp.open(text, uri)
    offset = text.index("; return") + len("; return")
    line_start = text.rfind("\n", 0, offset) + 1
    character = len(text[line_start:offset].encode("utf-16-le")) // 2
    assert character == offset - line_start + 2
    reply = lsp.request(
        "llm-ls/getCompletions",
        {
            "textDocument": {"uri": uri},
            "position": {"line": 4, "character": character},
            "requestBody": {"parameters": {"max_new_tokens": 12, "temperature": 0}},
        },
    )
    expected = completer.complete(text, offset)
    assert reply["result"]["completions"] == [{"generated_text": expected}]


def test_settings_from_llm_ls_request_body():
    base = Settings(SamplingParams(max_new_tokens=64), True, 0)
    from codekiln.serve.lsp import llm_ls_settings

    openai_style = llm_ls_settings({"requestBody": {"max_tokens": 7, "stop": "\n"}}, base)
    assert openai_style.params.max_new_tokens == 7 and openai_style.params.stop == ("\n",)
    greedy = llm_ls_settings({"requestBody": {"parameters": {"do_sample": False}}}, base)
    assert greedy.params.is_greedy
    window = llm_ls_settings({"contextWindow": 300, "tokensToClear": ["<eos>"]}, base)
    assert window.context_tokens == 300 and window.tokens_to_clear == ("<eos>",)


@pytest.mark.slow
def test_context_budget_keeps_lines_near_the_cursor(completer):
    lines = [f"value_{i} = {i}\n" for i in range(400)]
    text = "".join(lines)
    offset = len("".join(lines[:200]))
    count = completer.backend.count_tokens
    context = cursor_context(text, offset, 100, count)
    assert count(context.prefix) + count(context.suffix) <= 100
    assert context.prefix.endswith(lines[199]) and context.suffix.startswith(lines[200])
    assert context.prefix.startswith("value_") and not context.multiline  # code follows
    assert 60 <= count(context.prefix) <= 100  # three quarters of the budget, about
    # The completer's budget leaves room for the completion within a short context window.
    settings = Settings(SamplingParams(max_new_tokens=12, greedy=True), True, 64)
    assert completer.complete(text, offset, settings) is not None


class InProcess:
    """The language server on pipes in this process, with any backend (a slow one here)."""

    def __init__(self, backend) -> None:
        self.server = build_lsp_server(Completer(backend, LspConfig(max_new_tokens=2000)))
        to_server_r, to_server_w = os.pipe()
        from_server_r, from_server_w = os.pipe()
        self._server_in = os.fdopen(to_server_r, "rb")
        self._server_out = os.fdopen(from_server_w, "wb")
        self.thread = threading.Thread(
            target=self.server.start_io, args=(self._server_in, self._server_out), daemon=True
        )
        self.thread.start()
        self.client = Client(os.fdopen(to_server_w, "wb"), os.fdopen(from_server_r, "rb"))
        self.client.initialize()

    def close(self) -> None:
        self.client.request("shutdown", None)
        self.client.send("exit", None, request=False)
        self.thread.join(timeout=10)


@pytest.fixture
def slow():
    backend = Counting(delay=0.01)
    served = InProcess(backend)
    served.backend = backend
    yield served
    served.close()


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.slow
def test_cancel_request_stops_generation(slow):
    client = slow.client
    client.open(SOURCE)
    ident = client.send(
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": URI},
            "position": {"line": 4, "character": 16},
            "context": {"triggerKind": 1},
        },
    )
    wait_for(lambda: slow.backend.steps >= 3)
    client.send("$/cancelRequest", {"id": ident}, request=False)
    reply = client.response(ident)
    assert reply["error"]["code"] == -32800  # RequestCancelled
    steps = slow.backend.steps
    time.sleep(0.1)
    assert slow.backend.steps - steps <= 1 and steps < 200  # of 2000


@pytest.mark.slow
def test_newer_request_supersedes_older_for_the_same_document(slow):
    client = slow.client
    client.open(SOURCE)
    where = {"textDocument": {"uri": URI}, "position": {"line": 4, "character": 16}}
    first = client.send("llm-ls/getCompletions", {**where, "requestBody": {"max_tokens": 2000}})
    wait_for(lambda: slow.backend.steps >= 3)
    second = client.send("llm-ls/getCompletions", {**where, "requestBody": {"max_tokens": 5}})
    assert client.response(first)["result"]["completions"] == []  # stopped, nothing shown
    assert client.response(second)["result"]["completions"] == [{"generated_text": "xxxxx"}]
    assert slow.backend.steps < 200


@pytest.mark.slow
def test_ipython_extension_offers_the_completion(completer):
    pytest.importorskip("IPython")
    from IPython.core.completer import provisionalcompleter
    from IPython.core.interactiveshell import InteractiveShell

    from codekiln.serve.jupyter import NotebookCompleter, register

    shell = InteractiveShell.instance()
    notebook = NotebookCompleter(completer=completer)
    register(shell, notebook)
    cell = "def add(a, b):\n    return a"
    expected = completer.complete(cell, len(cell))
    with provisionalcompleter():
        completions = list(shell.Completer.completions(cell, len(cell)))
    ours = [c for c in completions if c.type == "codekiln"]
    assert expected.strip()
    [completion] = ours
    assert completion.text == "a" + expected
    shell.run_line_magic("codekiln_model", "http://127.0.0.1:9")
    assert notebook.spec == "http://127.0.0.1:9"


EDITORS = Path(__file__).resolve().parent.parent / "editors"

# Loads editors/neovim/codekiln.lua as a user would, asks for a completion the classic way,
# then asks llm-ls/getCompletions with the params llm.nvim builds (table.insert included).
NVIM_SCRIPT = """
local out = assert(os.getenv("CODEKILN_OUT"))
vim.cmd("filetype on")
local codekiln = dofile(os.getenv("CODEKILN_EDITORS") .. "/neovim/codekiln.lua")
codekiln.setup({ cmd = { os.getenv("CODEKILN_EDITORS") .. "/neovim/codekiln-lsp" } })
vim.cmd("edit " .. os.getenv("CODEKILN_FILE"))
vim.wait(30000, function()
  local client = codekiln.client_id and vim.lsp.get_client_by_id(codekiln.client_id)
  return client ~= nil and client.initialized
end, 50)
vim.api.nvim_win_set_cursor(0, { 5, 10 })
local params = vim.lsp.util.make_position_params()
local completion = vim.lsp.buf_request_sync(0, "textDocument/completion", params, 60000)
local llm = {}
table.insert(llm, vim.lsp.util.make_position_params())
llm.model = "codekiln"
llm.backend = "tgi"
llm.url = "http://127.0.0.1:1"
llm.requestBody = { parameters = { max_new_tokens = 12, temperature = 0 } }
llm.tokensToClear = { "<|endoftext|>" }
llm.fim = { enabled = true, prefix = "<fim_prefix>", middle = "<fim_middle>",
  suffix = "<fim_suffix>" }
llm.contextWindow = 1024
llm.ide = "neovim"
local generated = vim.lsp.buf_request_sync(0, "llm-ls/getCompletions", llm, 60000)
-- A file far longer than the context (over 2 KB), with the context window that
-- `codekiln editor-settings` writes: the prompt is trimmed and the completion answered.
vim.cmd("edit " .. os.getenv("CODEKILN_BIG_FILE"))
local line = tonumber(os.getenv("CODEKILN_BIG_LINE"))
vim.api.nvim_win_set_cursor(0, { line, 10 })
local big = vim.lsp.buf_request_sync(0, "textDocument/completion",
  vim.lsp.util.make_position_params(), 60000)
llm[1] = nil
llm.textDocument = vim.lsp.util.make_text_document_params()
llm.position = vim.lsp.util.make_position_params().position
llm.contextWindow = tonumber(os.getenv("CODEKILN_CONTEXT_WINDOW"))
local big_llm = vim.lsp.buf_request_sync(0, "llm-ls/getCompletions", llm, 60000)
-- A document this editor never opened: an empty answer, not an error.
local client = vim.lsp.get_client_by_id(codekiln.client_id)
local unopened = client.request_sync("textDocument/completion", {
  textDocument = { uri = "file:///nowhere/never_opened.py" },
  position = { line = 0, character = 0 },
}, 30000, 0)
local file = io.open(out, "w")
file:write(vim.fn.json_encode({ completion = completion, llm = generated, big = big,
  big_llm = big_llm, unopened = unopened }))
file:close()
vim.cmd("qa!")
"""

# Longer than the test model's 128-token context many times over.
BIG_SOURCE = "".join(f"def f_{i}(a, b):\n    return a + {i}\n\n\n" for i in range(120))


def only_result(results) -> dict:
    """The one client's result in buf_request_sync's {client_id: {result}} table."""
    [response] = results.values() if isinstance(results, dict) else results
    return response["result"]


@pytest.mark.slow
def test_headless_neovim_receives_a_completion(tmp_path, model_dir, completer):
    nvim = shutil.which("nvim")
    if nvim is None:
        pytest.skip("nvim is not installed (apt-get install neovim)")
    source = tmp_path / "example.py"
    source.write_text(SOURCE)
    script = tmp_path / "complete.lua"
    script.write_text(NVIM_SCRIPT)
    big_file = tmp_path / "big.py"
    big_file.write_text(BIG_SOURCE)
    big_offset = BIG_SOURCE.index("def f_70(") + len("def f_70(a, b):\n    return")
    big_line = BIG_SOURCE.count("\n", 0, big_offset) + 1
    settings = render("neovim", "tgi", model_facts(str(model_dir)), max_new_tokens=12)
    window = int(re.search(r"context_window = (\d+),", settings).group(1))
    assert window == 128 - 12  # the test model's n_positions - max_new_tokens
    assert len(BIG_SOURCE) > 2048 and completer.backend.count_tokens(BIG_SOURCE) > 5 * 128
    out = tmp_path / "result.json"
    env = {
        **os.environ,
        "CODEKILN_OUT": str(out),
        "CODEKILN_EDITORS": str(EDITORS),
        "CODEKILN_FILE": str(source),
        "CODEKILN_PYTHON": sys.executable,
        "CODEKILN_MODEL": str(model_dir),
        "CODEKILN_LSP_ARGS": "--temperature 0 --max-new-tokens 12",
        "CODEKILN_BIG_FILE": str(big_file),
        "CODEKILN_BIG_LINE": str(big_line),
        "CODEKILN_CONTEXT_WINDOW": str(window),
    }
    subprocess.run(
        [nvim, "--headless", "--clean", "-u", "NONE", "-c", f"luafile {script}"],
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=True,
        capture_output=True,
    )
    results = json.loads(out.read_text())
    offset = SOURCE.index("    return") + len("    return")  # line 5, column 10
    expected = completer.complete(SOURCE, offset)
    assert expected
    items = only_result(results["completion"])["items"]
    assert [item["textEdit"]["newText"] for item in items] == ["return" + expected]
    llm = only_result(results["llm"])
    assert llm["completions"] == [{"generated_text": expected}]
    big_expected = completer.complete(BIG_SOURCE, big_offset)
    assert big_expected
    [item] = only_result(results["big"])["items"]
    assert item["textEdit"]["newText"] == "return" + big_expected
    llm_settings = llm_ls_settings(
        {
            "requestBody": {"parameters": {"max_new_tokens": 12, "temperature": 0}},
            "contextWindow": window,
            "tokensToClear": ["<|endoftext|>"],
        },
        completer.default_settings(),
    )
    big_llm = completer.complete(BIG_SOURCE, big_offset, llm_settings)
    assert only_result(results["big_llm"])["completions"] == [{"generated_text": big_llm}]
    assert results["unopened"]["result"]["items"] == []


@pytest.mark.slow
def test_endpoint_mode_through_codekiln_serve_gives_the_same_completion(completer):
    """`codekiln lsp --endpoint URL` against `codekiln serve`: FIM and stops travel over HTTP."""
    from codekiln.serve import ServeConfig
    from codekiln.serve.http import start_server

    with start_server(completer.backend, ServeConfig(port=0)) as running:
        remote = Completer(load_backend(running.url), GREEDY)
        assert remote.backend.context_length == completer.backend.context_length
        for offset in (SOURCE.index("    return") + len("    return"), SOURCE.index("(1, 2)")):
            assert remote.complete(SOURCE, offset) == completer.complete(SOURCE, offset)


class FakeEndpoint(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible server that answers every completion with "pass" (streamed)."""

    def do_GET(self):
        models = {"data": [{"id": "fake", "max_model_len": 256}]}
        self._send(json.dumps(models).encode(), "application/json")

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert body["stream"] is True
        event = {"choices": [{"index": 0, "text": "pass", "finish_reason": "length"}]}
        self._send(f"data: {json.dumps(event)}\n\ndata: [DONE]\n\n".encode(), "text/event-stream")

    def _send(self, data: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_endpoint_not_up_at_start_is_retried(tmp_path):
    """`codekiln lsp --endpoint URL` starts before its server: completions are empty (one log
    line each) until the server answers, then they work; the process never exits."""
    with socket.socket() as probe:  # a free port, nothing listening on it yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_file = (tmp_path / "lsp.log").open("w+b")
    process = subprocess.Popen(
        [sys.executable, "-m", "codekiln.serve.lsp", "--endpoint", f"http://127.0.0.1:{port}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log_file,
    )
    server = None
    try:
        client = Client(process.stdin, process.stdout)
        client.initialize()
        client.open(SOURCE)
        where = {"textDocument": {"uri": URI}, "position": {"line": 4, "character": 16}}
        down = client.request("llm-ls/getCompletions", where)
        assert down["result"]["completions"] == []
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), FakeEndpoint)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        deadline = time.monotonic() + 15
        while True:  # the first retry comes after half a second's backoff
            completions = client.request("llm-ls/getCompletions", where)["result"]["completions"]
            if completions or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert completions == [{"generated_text": "pass"}]
        assert process.poll() is None
        client.request("shutdown", None)
        client.send("exit", None, request=False)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if server is not None:
            server.shutdown()
            server.server_close()
        for stream in (process.stdin, process.stdout):
            stream.close()
    log_file.seek(0)
    log = log_file.read().decode()
    log_file.close()
    assert "endpoint not ready" in log and f"endpoint http://127.0.0.1:{port} up: model fake" in log
    assert "Traceback" not in log


EMACS_SCRIPT = """
(add-to-list 'package-directory-list "/usr/share/emacs/site-lisp/elpa")
(package-initialize)
(setq lsp-auto-guess-root t lsp-session-file (getenv "CODEKILN_SESSION") lsp-restart 'ignore
      lsp-enable-file-watchers nil lsp-headerline-breadcrumb-enable nil)
(setq codekiln-lsp-command (list (concat (getenv "CODEKILN_EDITORS") "/neovim/codekiln-lsp")))
(load (concat (getenv "CODEKILN_EDITORS") "/emacs/codekiln-lsp.el"))
(setq lsp-disabled-clients '(pyls pylsp mspyls pyright jedi semgrep-ls ruff-lsp))
(find-file (getenv "CODEKILN_FILE"))
(python-mode)
(lsp)
(let ((deadline (+ (float-time) 60)))
  (while (and (< (float-time) deadline)
              (not (and lsp--buffer-workspaces
                        (eq (lsp--workspace-status (car lsp--buffer-workspaces))
                            'initialized))))
    (accept-process-output nil 0.1)))
(goto-char (point-min))
(forward-line 4)
(move-to-column 10)
(let ((result (lsp-request "textDocument/completion" (lsp--text-document-position-params))))
  (with-temp-file (getenv "CODEKILN_OUT") (insert (lsp--json-serialize result))))
(kill-emacs 0)
"""


@pytest.mark.slow
def test_emacs_lsp_mode_receives_a_completion(tmp_path, model_dir, completer):
    """editors/emacs/codekiln-lsp.el registered with lsp-mode (Debian's elpa-lsp-mode)."""
    emacs = shutil.which("emacs")
    if emacs is None or not Path("/usr/share/emacs/site-lisp/elpa").exists():
        pytest.skip(
            "emacs with lsp-mode is not installed (apt-get install emacs-nox elpa-lsp-mode)"
        )
    source = tmp_path / "example.py"
    source.write_text(SOURCE)
    script = tmp_path / "complete.el"
    script.write_text(EMACS_SCRIPT)
    out = tmp_path / "result.json"
    env = {
        **os.environ,
        "CODEKILN_OUT": str(out),
        "CODEKILN_EDITORS": str(EDITORS),
        "CODEKILN_FILE": str(source),
        "CODEKILN_SESSION": str(tmp_path / "lsp-session"),
        "CODEKILN_PYTHON": sys.executable,
        "CODEKILN_MODEL": str(model_dir),
        "CODEKILN_LSP_ARGS": "--temperature 0 --max-new-tokens 12",
        "HOME": str(tmp_path),
    }
    run = subprocess.run(
        [emacs, "--batch", "-Q", "-l", str(script)],
        env=env,
        cwd=tmp_path,
        timeout=120,
        capture_output=True,
        text=True,
    )
    if not out.exists() and "Cannot open load file" in run.stderr:
        pytest.skip("lsp-mode does not load in this Emacs")
    assert out.exists(), run.stderr[-2000:]
    items = json.loads(out.read_text())["items"]
    offset = SOURCE.index("    return") + len("    return")
    assert [item["textEdit"]["newText"] for item in items] == [
        "return" + completer.complete(SOURCE, offset)
    ]
