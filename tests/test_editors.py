"""`codekiln editor-settings` and the shipped editor settings: the context window is the
model's context minus the completion's tokens (llm-ls leaves no room for the answer), read
from a model folder or from a running server; the shipped files hold the default model's."""

from __future__ import annotations

import http.server
import json
import re
import threading
from pathlib import Path

import pytest
from test_cli import assert_one_line_error, cli

from codekiln.errors import UserError
from codekiln.model.config import PRESETS
from codekiln.serve.editors import ModelFacts, context_window, model_facts, render

EDITORS = Path(__file__).resolve().parent.parent / "editors"
DEMO = "/ABSOLUTE/PATH/TO/runs/demo/model"  # the shipped files' placeholder
DEFAULT_MODEL = ModelFacts(
    source=DEMO,
    name="codekiln",
    context_tokens=PRESETS["tiny"].n_positions,  # what `codekiln run` trains: 512
    fim=True,
    tokenizer=DEMO + "/tokenizer.json",
)


def write_folder(root: Path, config: dict, fim: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(config))
    names = ["<|endoftext|>"] + (["<fim_prefix>", "<fim_middle>", "<fim_suffix>"] if fim else [])
    tokens = [{"id": i, "content": name, "special": True} for i, name in enumerate(names)]
    (root / "tokenizer.json").write_text(json.dumps({"added_tokens": tokens}))
    return root


def test_context_window_leaves_room_for_the_completion():
    assert context_window(512, 60) == 452
    assert context_window(8192, 64) == 8128
    for bad in (0, 512, 600):
        with pytest.raises(UserError, match="--max-new-tokens must be between 1 and 511"):
            context_window(512, bad)


def test_settings_from_a_model_folder(tmp_path):
    folder = write_folder(tmp_path / "demo" / "model", {"n_positions": 512, "n_embd": 64})
    facts = model_facts(str(folder))
    assert (facts.context_tokens, facts.fim, facts.name) == (512, True, "demo")
    vscode = json.loads(render("vscode", "tgi", facts, max_new_tokens=60))
    assert vscode["llm.contextWindow"] == 452
    assert vscode["llm.requestBody"]["parameters"]["max_new_tokens"] == 60
    assert vscode["llm.url"] == "http://127.0.0.1:8000/generate"
    assert vscode["llm.tokenizer"] == {"path": str(folder.resolve() / "tokenizer.json")}
    assert vscode["llm.attributionEndpoint"] == "http://127.0.0.1:8000/overlap?offsets=utf-16"
    openai = json.loads(render("vscode", "openai", facts, 100, server="http://h:9/v1"))
    assert openai["llm.contextWindow"] == 412 and openai["llm.requestBody"]["max_tokens"] == 100
    assert openai["llm.url"] == "http://h:9/v1/completions"
    lua = render("neovim", "lsp", facts, max_new_tokens=48)
    assert "context_window = 464," in lua and "max_new_tokens = 48," in lua
    assert f'CODEKILN_MODEL = "{folder.resolve()}"' in lua
    assert 'CODEKILN_LSP_ARGS = "--max-new-tokens 48"' in lua
    emacs = render("emacs", None, facts, max_new_tokens=48)
    assert f'"--model" "{folder.resolve()}" "--max-new-tokens" "48"' in emacs
    llama = write_folder(tmp_path / "llama", {"max_position_embeddings": 4096}, fim=False)
    no_fim = json.loads(render("vscode", None, model_facts(str(llama))))
    assert no_fim["llm.contextWindow"] == 4036 and no_fim["llm.fillInTheMiddle.enabled"] is False
    with pytest.raises(UserError, match="emacs talks to codekiln lsp"):
        render("emacs", "tgi", facts)
    with pytest.raises(UserError, match="does not report its context length"):
        model_facts(str(write_folder(tmp_path / "bare", {"n_embd": 8})))


class ModelServer(http.server.BaseHTTPRequestHandler):
    """vLLM's or codekiln serve's /v1/models (max_model_len), or TGI's /info alone."""

    routes: dict[str, dict] = {}

    def do_GET(self):
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize(
    "routes",
    [
        {"/v1/models": {"data": [{"id": "served", "max_model_len": 1024}]}},
        {"/info": {"model_id": "served", "max_total_tokens": 1024, "supports_fim": True}},
    ],
    ids=["v1-models", "tgi-info"],
)
def test_settings_from_a_running_server(routes):
    handler = type("Handler", (ModelServer,), {"routes": routes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        facts = model_facts(url + "/v1")
        settings = json.loads(render("vscode", "openai", facts, max_new_tokens=24))
        lua = render("neovim", "lsp", facts, max_new_tokens=24)
    finally:
        server.shutdown()
        server.server_close()
    assert facts.context_tokens == 1024 and facts.source == url
    assert settings["llm.contextWindow"] == 1000
    assert settings["llm.url"] == url + "/v1/completions"
    assert f'CODEKILN_ENDPOINT = "{url}"' in lua and "context_window = 1000," in lua
    with pytest.raises(UserError, match="answers neither /v1/models nor /info"):
        model_facts(url)  # the server is gone


def test_shipped_settings_are_the_default_models():
    """editors/ holds what `codekiln editor-settings` writes for the demo model (512 tokens,
    60 new), placeholders for the paths."""
    for name, backend in (("tgi", "tgi"), ("openai", "openai"), ("codekiln-lsp", "lsp")):
        shipped = json.loads((EDITORS / "vscode" / f"settings.{name}.json").read_text())
        generated = json.loads(render("vscode", backend, DEFAULT_MODEL, max_new_tokens=60))
        if backend == "lsp":
            assert shipped.pop("llm.lsp.binaryPath").endswith("/editors/neovim/codekiln-lsp")
            generated.pop("llm.lsp.binaryPath")
        assert shipped == generated, name
        assert shipped["llm.contextWindow"] == 512 - 60
    for lua in sorted((EDITORS / "neovim").glob("llm-nvim-*.lua")):
        text = lua.read_text()
        window = int(re.search(r"context_window = (\d+),", text).group(1))
        max_new = int(re.search(r"max_new_tokens = (\d+)", text).group(1))
        assert window == 512 - max_new, lua.name


@pytest.mark.slow
def test_editor_settings_command(tmp_path):
    folder = write_folder(tmp_path / "model", {"n_positions": 256})
    out = tmp_path / "settings.json"
    result = cli(
        "editor-settings",
        str(folder),
        "--editor",
        "vscode",
        "--max-new-tokens",
        "56",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["llm.contextWindow"] == 200
    too_many = cli("editor-settings", str(folder), "--editor", "neovim", "--max-new-tokens", "256")
    assert_one_line_error(too_many, "--max-new-tokens must be between 1 and 255")


def test_llama_cpp_ollama_and_tabby_files_are_well_formed():
    """The llama.cpp-side set-ups parse, use codekiln's FIM tokens in the order training
    lays them out (prefix, suffix, middle), and point at the llama-server the README starts."""
    import tomllib

    from codekiln.tokenizer.special import EOS, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

    psm = f"{FIM_PREFIX}{{prefix}}{FIM_SUFFIX}{{suffix}}{FIM_MIDDLE}"
    server = "http://127.0.0.1:8012"
    readme = (EDITORS / "README.md").read_text()
    assert "llama-server -m runs/demo/model/model-q8_0.gguf --port 8012" in readme
    tabby = tomllib.loads((EDITORS / "tabby" / "config.toml").read_text())
    completion = tabby["model"]["completion"]["http"]
    assert completion["kind"] == "llama.cpp/completion" and completion["api_endpoint"] == server
    assert completion["prompt_template"] == psm
    assert json.loads((EDITORS / "tabby" / "tabby.json").read_text())["prompt_template"] == psm
    vscode = json.loads((EDITORS / "llama.cpp" / "llama-vscode.settings.json").read_text())
    assert vscode["llama-vscode.endpoint"] == server  # the extension appends /infill
    vim = (EDITORS / "llama.cpp" / "llama.vim").read_text()
    assert f"'endpoint_fim':    '{server}/infill'" in vim
    lines = (EDITORS / "ollama" / "Modelfile").read_text().splitlines()
    commands = [line for line in lines if line and not line.startswith("#")]
    assert commands[0] == "FROM ./model-q8_0.gguf"  # codekiln export's default file name
    template = next(line for line in commands if line.startswith("TEMPLATE "))
    fim = "{{ .Prompt }}".join((FIM_PREFIX, FIM_SUFFIX)) + "{{ .Suffix }}" + FIM_MIDDLE
    assert fim in template
    stops = {line.split(" ", 2)[2].strip('"') for line in commands if "PARAMETER stop" in line}
    assert {EOS, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE} <= stops
    keywords = {"FROM", "TEMPLATE", "PARAMETER", "SYSTEM", "ADAPTER", "LICENSE", "MESSAGE"}
    assert {line.split(" ", 1)[0] for line in commands} <= keywords
