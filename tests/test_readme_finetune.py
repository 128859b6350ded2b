"""The README's "Fine-tune StarCoder2 on your code" commands, run as written on a
transformers-created StarCoder2 folder with sharded safetensors (random weights, a tokenizer
with StarCoder2's special tokens). Only the run length (max_steps), the number of problems
evaluated and the port change; every other word of each command is the README's."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import MIT_LICENSE, hf_starcoder2, save_hf_tokenizer, small_bpe

from codekiln.tokenizer.special import STARCODER2_SPECIAL_TOKENS

pytestmark = pytest.mark.slow

transformers = pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Fine-tune StarCoder2 on your code"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    block = re.search(r"```console\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("codekiln ")]


def project(folder: Path) -> Path:
    """A small MIT-licensed repository of distinct Python modules: `~/src/myproject`."""
    for i in range(30):
        path = folder / f"pkg{i % 3}" / f"module_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        names = [f"value_{i}_{k}" for k in range(6)]
        body = "".join(
            f"def scale_{name}(items, factor={k + i}):\n"
            f'    """Multiply each of items by {k + i} and keep those over {i * k}."""\n'
            f"    return [x * factor for x in items if x * factor > {i * k}]\n\n\n"
            for k, name in enumerate(names)
        )
        path.write_text(f'"""Module {i}: scaling helpers, set {i % 7}."""\n\n\n{body}')
    (folder / "LICENSE").write_text(MIT_LICENSE)
    return folder


def starcoder2_folder(folder: Path) -> Path:
    """What `starcoder2-3b` stands for: a StarCoder2 folder with sharded safetensors, its
    tokenizer (StarCoder2's special tokens) and a card naming its license."""
    texts = [p.read_text() for p in (ROOT / "codekiln" / "model").glob("*.py")]
    tokenizer = small_bpe(texts, STARCODER2_SPECIAL_TOKENS, vocab_size=800)
    model = hf_starcoder2(vocab_size=tokenizer.get_vocab_size(), sliding_window=4096)
    model.save_pretrained(folder, max_shard_size="200KB")
    save_hf_tokenizer(tokenizer, folder)
    (folder / "README.md").write_text("---\nlicense: bigcode-openrail-m\n---\n# StarCoder2\n")
    assert (folder / "model.safetensors.index.json").exists()
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_readme_fine_tuning_commands_work_as_written(tmp_path):
    commands = readme_commands()
    assert [c.split()[1] for c in commands] == ["curate", "pack", "train", "eval", "serve"]
    starcoder2_folder(tmp_path / "starcoder2-3b")
    source = project(tmp_path / "myproject")
    env = {**os.environ, "COLUMNS": "200"}
    for command in commands:
        line = command.replace("~/src/myproject", str(source))
        line = line.replace("max_steps=1000", "max_steps=2")
        words = shlex.split(line)
        if words[1] == "eval":
            words += ["--limit", "2", "--max-new-tokens", "16"]
        if words[1] == "serve":
            port = free_port()
            words[words.index("--port") + 1] = str(port)
            server = subprocess.Popen(
                [sys.executable, "-m", "codekiln", *words[1:]],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health") as reply:
                            assert reply.status == 200
                            break
                    except OSError:
                        assert server.poll() is None, server.stderr.read()
                        assert time.monotonic() < deadline, "the server did not come up"
                        time.sleep(0.5)
                body = json.dumps({"prompt": "def add(", "max_tokens": 4}).encode()
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/v1/completions",
                    body,
                    {"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request) as reply:
                    assert json.loads(reply.read())["choices"][0]["text"] is not None
            finally:
                server.terminate()
                server.wait(timeout=30)
            continue
        done = subprocess.run(
            [sys.executable, "-m", "codekiln", *words[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
    meta = json.loads((tmp_path / "tokens" / "meta.json").read_text())
    assert meta["format"]["family"] == "starcoder2" and meta["format"]["fim"] == "file"
    adapter = tmp_path / "ft" / "adapter"
    assert (adapter / "adapter_model.safetensors").exists()
    card = (adapter / "README.md").read_text()
    assert "bigcode-openrail-m" in card
    results = json.loads((tmp_path / "eval" / "ft" / "humaneval" / "results.json").read_text())
    assert results["problems"] == 2
