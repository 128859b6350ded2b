import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

# One OpenMP thread here and in every process the tests start, unless the caller chose: the
# tests' models are tiny and gain nothing from a second thread, while on a busy 2-core
# machine (a server, a sandbox or another test's ranks beside them) each op of a two-thread
# team can wait a scheduler tick for its partner, up to 100x slower. Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

GOOD_PY = '''"""A small module."""


def add(a, b):
    """Return the sum of a and b."""
    return a + b


class Counter:
    def __init__(self):
        self.count = 0

    def tick(self):
        self.count += 1
        return self.count
'''


OTHER_PY = '''import os


def walk_sizes(root):
    """Yield (path, size) for every regular file under root."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            yield full, os.path.getsize(full)
'''

MIT_LICENSE = """MIT License

Copyright (c) 2026 The Fixture Authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT.
"""


def small_bpe(texts, special_tokens, vocab_size: int = 600):
    """A byte-level BPE as StarCoder's (no prefix space), the special tokens first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def write_curated(
    directory: Path, records: list[dict], per_file: int = 40, row_group_size: int | None = None
) -> Path:
    """Curated shards (the curate stage's RECORD_SCHEMA) holding `records` (id, content,
    repo, path, lang, stars at least), `per_file` rows to a part file; any part files
    already there are replaced."""
    from codekiln.curate.pipeline import RECORD_SCHEMA

    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("part-*.parquet"):
        old.unlink()
    rows = [
        {
            "license": "MIT",
            "kind": "file",
            "source": "test",
            "size": len((r["content"] or "").encode()),
            "max_line_length": 0,
            "avg_line_length": 0.0,
            "alphanum_fraction": 0.5,
            **r,
        }
        for r in records
    ]
    for n, start in enumerate(range(0, max(len(rows), 1), per_file)):
        table = pa.Table.from_pylist(rows[start : start + per_file], schema=RECORD_SCHEMA)
        pq.write_table(table, directory / f"part-{n:05d}.parquet", row_group_size=row_group_size)
    return directory


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        [
            "git",
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "init.defaultBranch=main",
            "-C",
            str(repo),
            *args,
        ],
        check=True,
        capture_output=True,
    )
    return out.stdout.decode()


def read_ledger(out_dir: Path) -> list[dict]:
    return ds.dataset(str(out_dir / "ledger"), format="parquet").to_table().to_pylist()


def read_records(out_dir: Path) -> list[dict]:
    rows = []
    for path in sorted(out_dir.glob("part-*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def by_path(rows: list[dict]) -> dict[str, dict]:
    return {r["path"]: r for r in rows}


# Each file name says what the pipeline must decide for it (None: kept).
EXPECTED = {
    "LICENSE": "unknown_language",
    "src/good.py": None,
    "src/copy_a.py": None,
    "src/copy_b.py": "exact_duplicate",
    "src/util.h": None,
    "README.md": None,
    "docs/wide.md": None,
    "config/settings.json": None,
    "config/ci.yaml": None,
    "Dockerfile": None,
    "Makefile": None,
    "site/index.html": None,
    "node_modules/lib/index.js": "vendored",
    "third_party/zlib/zlib.c": "vendored",
    "package-lock.json": "lock_file",
    "big/huge.py": "too_large",
    "assets/logo.bin.py": "binary",
    "legacy/latin1.py": "encoding",
    "notes.txt": "unknown_language",
    "data/table.xyz": "unknown_language",
    "src/empty.py": "empty",
    "gen/api_pb2.py": "autogenerated",
    "web/app.min.js": "minified",
    "conf/pom.xml": "xml",
    "conf/tiny.json": "char_count",
    "conf/numbers.json": "alpha_fraction",
    "big/many_lines.py": "too_many_lines",
    "src/long_line.py": "max_line_length",
    "src/wide_lines.py": "avg_line_length",
    "src/ascii_art.py": "alphanum_fraction",
    "site/app.html": "html_visible_text",
    "links/alias.py": "symlink",
    "links/broken.py": "symlink",
    "links/dirlink": "symlink",
    "pipes/fifo.py": "special_file",
}


def write_fixture_repo(root: Path) -> Path:
    """A repository with one file for every drop reason and every kind of kept file."""
    files = {
        "src/good.py": GOOD_PY,
        "LICENSE": MIT_LICENSE,
        "src/copy_a.py": OTHER_PY,
        "src/copy_b.py": OTHER_PY,
        "src/util.h": "#ifndef UTIL_H\n#define UTIL_H\nint add(int a, int b);\n#endif\n",
        "README.md": "# Fixture\n\nA repository used by the tests.\n",
        "docs/wide.md": "Prose " + "word " * 300 + "\n",
        "config/settings.json": '{"name": "fixture", "description": "settings for the tests"}\n',
        "config/ci.yaml": "name: ci\non: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n",
        "Dockerfile": "FROM python:3.11\nRUN pip install codekiln\n",
        "Makefile": "all:\n\techo building the fixture\n",
        "site/index.html": "<html><body>\n"
        + "<p>Readable words for people to read.</p>\n" * 6
        + "</body></html>\n",
        "node_modules/lib/index.js": "module.exports = function () { return 1; };\n",
        "third_party/zlib/zlib.c": "int inflate(void) { return 0; }\n",
        "package-lock.json": '{"lockfileVersion": 3, "name": "fixture"}\n',
        "big/huge.py": "x = 1\n" * 200_000,
        "notes.txt": "Just some notes.\n",
        "data/table.xyz": "a b c\n",
        "src/empty.py": "",
        "gen/api_pb2.py": "# Generated by the protocol buffer compiler.  DO NOT EDIT!\nimport x\n",
        "web/app.min.js": "function a(){return 1}\n",
        "conf/pom.xml": '<?xml version="1.0"?>\n<project><name>fixture project</name></project>\n',
        "conf/tiny.json": '{"a": "b"}\n',
        "conf/numbers.json": "[" + ", ".join(str(i) for i in range(40)) + "]\n",
        "big/many_lines.py": "a = 1\n" * 100_001,
        "src/long_line.py": "x = '" + "a" * 1200 + "'\n",
        "src/wide_lines.py": ("y = '" + "w " * 70 + "'\n") * 10,
        "src/ascii_art.py": "# " + "=-" * 30 + "\n" + "#" + " -" * 40 + "\n",
        "site/app.html": "<html><script>\n" + "var x = 1;\n" * 80 + "</script><p>hi</p></html>\n",
        "links/target.py": "def target():\n    return 'value'\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "assets").mkdir()
    (root / "assets/logo.bin.py").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (root / "legacy").mkdir()
    (root / "legacy/latin1.py").write_bytes("name = 'caf\xe9'\n".encode("latin-1"))
    (root / "big/huge.py").write_text("x = 1\n" * 200_000)
    os.symlink("target.py", root / "links/alias.py")
    os.symlink("/nonexistent/file.py", root / "links/broken.py")
    os.symlink("/etc", root / "links/dirlink")
    (root / "pipes").mkdir()
    os.mkfifo(root / "pipes/fifo.py")
    return root


@pytest.fixture
def fixture_repo(tmp_path: Path) -> Path:
    return write_fixture_repo(tmp_path / "fixture")


# -- transformers models made here (random weights), for import, fine-tuning and export ----

TINY_STARCODER2 = {
    "vocab_size": 300,
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 16384,
    "sliding_window": 8,
    "bos_token_id": 0,
    "eos_token_id": 0,
}
TINY_GPT_BIGCODE = {
    "vocab_size": 300,
    "n_embd": 64,
    "n_layer": 2,
    "n_head": 4,
    "n_positions": 128,
    "bos_token_id": 0,
    "eos_token_id": 0,
}


def hf_starcoder2(seed: int = 0, noise: float = 0.0, **overrides):
    """A small transformers Starcoder2ForCausalLM in eval mode, StarCoder2's shape in small
    (grouped-query attention, a 16K context, a sliding window); `noise` perturbs every
    weight so zero biases and unit norms are tested too."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.Starcoder2Config(**{**TINY_STARCODER2, **overrides})
    return _perturbed(transformers.Starcoder2ForCausalLM(config), seed, noise)


def hf_gpt_bigcode(seed: int = 0, noise: float = 0.0, **overrides):
    """A small transformers GPTBigCodeForCausalLM (multi-query unless multi_query=False)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.GPTBigCodeConfig(**{**TINY_GPT_BIGCODE, **overrides})
    return _perturbed(transformers.GPTBigCodeForCausalLM(config), seed, noise)


def _perturbed(model, seed: int, noise: float):
    import torch

    if noise:
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn(param.shape, generator=generator) * noise)
    return model.eval()


def save_hf_tokenizer(tokenizer, folder: Path) -> Path:
    """A `tokenizers` tokenizer saved as transformers saves a model's (tokenizer.json and
    tokenizer_config.json with <|endoftext|> as bos, eos and unk)."""
    import transformers

    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.save_pretrained(folder)
    return folder


def cli_here(*args: str, columns: int = 200) -> subprocess.CompletedProcess:
    """`codekiln ARGS` through the CLI's own entry point (`cli.main`: user errors become one
    line and exit status 2), run in this process: the command's code and output are the
    same as `python -m codekiln`'s, without a fresh interpreter importing torch (seconds per
    call). For commands that leave no process-wide state behind; the entry point itself is
    test_cli's."""
    import contextlib
    import io
    import sys

    from rich.console import Console

    from codekiln import cli

    out, err = io.StringIO(), io.StringIO()
    saved = cli.console, cli.err_console, sys.argv
    cli.console = Console(file=out, width=columns)
    cli.err_console = Console(file=err, width=columns)
    sys.argv = ["codekiln", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        cli.console, cli.err_console, sys.argv = saved
    return subprocess.CompletedProcess(["codekiln", *args], code, out.getvalue(), err.getvalue())
