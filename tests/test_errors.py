"""One error policy: every command, given a bad value, prints one line that starts with
`error:` and exits with status 2, never a traceback (cli.main, in this process)."""

from pathlib import Path

import pytest
from conftest import cli_here


def bad_inputs(tmp: Path) -> dict[str, list[str]]:
    """A bad value for each command, by case name (`code.py` and `serve.toml` in `tmp`)."""
    code, serve_toml = tmp / "code.py", tmp / "serve.toml"
    missing = str(tmp / "missing")
    out = str(tmp / "out")
    return {
        "curate": ["curate", missing, "-o", out],
        "curate --set": ["curate", str(tmp), "-o", out, "--set", "bogus=1"],
        "run": ["run", "--set", "bogus=1", "-w", out],
        "tokenizer train": ["tokenizer", "train", str(tmp), "-o", out, "--vocab-size", "0"],
        "pack": ["pack", str(tmp), "--tokenizer", str(tmp), "-o", out, "--set", "bogus=1"],
        "train": ["train", "-o", out],
        "memory": ["memory", "--set", "bogus=1"],
        "export": ["export", missing],
        "eval": ["eval", "M", "--max-new-tokens", "5", "--max-length-generation", "5"],
        "eval --set": ["eval", "M", "--set", "n_samples=0"],
        "eval -o another stage's folder": [
            "eval",
            "M",
            "--generate-only",
            "-o",
            str(tmp / "packed"),
        ],
        "leaderboard": ["leaderboard", missing, "-o", out],
        "attribution build": ["attribution", "build", missing, "-o", out],
        "attribution query": ["attribution", "query", str(code), "--index", missing],
        "serve --api-key": ["serve", "M", "--api-key", ""],
        "serve --set": ["serve", "M", "--set", "max_batch=0"],
        "serve --config": ["serve", "M", "--config", str(serve_toml)],
        "serve --port": ["serve", "M", "--port", "99999"],
        "lsp": ["lsp"],
        "lsp --set": ["lsp", "--model", "M", "--set", "top_p=2"],
        "editor-settings": ["editor-settings", "M", "--editor", "notepad"],
        "data lookup": ["data", "lookup", missing, "x"],
        "no such command": ["bogus"],
        "missing argument": ["curate"],
    }


NAMES = list(bad_inputs(Path("tmp")))


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_one_line_and_exit_2(name, tmp_path):
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "serve.toml").write_text("[serve]\nmax_queue = -1\n")
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "manifest.json").write_text('{"stage": "pack"}')
    args = bad_inputs(tmp_path)[name]
    result = cli_here(*args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (args, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout


def test_every_command_is_driven():
    """A new command gets a bad-input case here too."""
    import typer.main

    from codekiln.cli import app

    root = typer.main.get_command(app)
    commands = set()
    for name, command in root.commands.items():
        sub = getattr(command, "commands", None)
        commands |= {f"{name} {s}" for s in sub} if sub else {name}
    assert commands <= {case.split(" --")[0] for case in NAMES}


def test_serve_flags_and_config_file_meet_in_one_config(tmp_path):
    from codekiln.commands.common import stage_config
    from codekiln.serve import ServeConfig

    settings = tmp_path / "serve.toml"
    settings.write_text("[serve]\nport = 9000\nmax_queue = 3\nprefill_chunk = 64\n")
    cfg = stage_config(
        ServeConfig, "serve", settings, ["max_queue=5"], port=None, max_batch=2, truncate=None
    )
    assert (cfg.port, cfg.max_queue, cfg.max_batch, cfg.prefill_chunk) == (9000, 5, 2, 64)
    assert cfg.host == "127.0.0.1" and cfg.truncate is True


def test_eval_never_writes_into_another_stages_folder(tmp_path):
    packed = tmp_path / "packed"
    packed.mkdir()
    (packed / "manifest.json").write_text('{"stage": "pack"}')
    result = cli_here("eval", "M", "--generate-only", "-o", str(packed))
    assert result.returncode == 2
    assert "holds the output of `codekiln pack`" in result.stderr
    assert sorted(p.name for p in packed.iterdir()) == ["manifest.json"]
