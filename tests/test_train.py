"""The train stage on a tiny model and a pack made here: learning, exact resumption, recovery
from a killed write, export, bad inputs, and parity of a two-process torchrun run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import small_bpe

import codekiln.train.memory as memory
from codekiln.errors import UserError
from codekiln.model.gpt import CodeGPT
from codekiln.model.hf import import_hf
from codekiln.pack.pack import PackConfig, pack
from codekiln.tokenizer.special import SPECIAL_TOKENS
from codekiln.train.checkpoint import load_checkpoint_weights
from codekiln.train.config import TrainConfig
from codekiln.train.loop import train
from codekiln.train.metrics import read_metrics
from codekiln.train.optim import lr_at, parameter_groups
from codekiln.train.validation import token_bytes

TINY = {"n_layer": 2, "n_embd": 64, "n_head": 2}

SNIPPETS = [
    "def add(a, b):\n    return a + b\n",
    "def scale(values, factor):\n    return [v * factor for v in values]\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "for i in range(10):\n    print(i, i * i)\n",
    "import os\n\n\ndef names(root):\n    return sorted(os.listdir(root))\n",
]


def _records() -> list[dict]:
    """Repetitive Python files in eight repositories (pack puts some in `valid`)."""
    rows = []
    for i in range(48):
        content = SNIPPETS[i % len(SNIPPETS)] * 6 + SNIPPETS[(i + 2) % len(SNIPPETS)]
        rows.append(
            {
                "id": f"{i:08x}",
                "content": content,
                "repo": f"owner/repo{i % 8}",
                "path": f"pkg/mod{i}.py",
                "lang": "Python",
                "license": "MIT",
                "stars": i,
                "kind": "file",
                "source": "fixture",
                "size": len(content),
                "max_line_length": max(len(line) for line in content.splitlines()),
                "avg_line_length": 20.0,
                "alphanum_fraction": 0.7,
            }
        )
    return rows


def _tokenizer(directory: Path, vocab_size: int) -> Path:
    tokenizer = small_bpe(SNIPPETS * 4, SPECIAL_TOKENS, vocab_size=vocab_size)
    directory.mkdir(parents=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


@pytest.fixture(scope="session")
def packed(tmp_path_factory) -> tuple[Path, Path]:
    """(pack dir, tokenizer dir): ~10k training tokens, a valid split of whole repos."""
    root = tmp_path_factory.mktemp("train-data")
    curated = root / "curated"
    curated.mkdir()
    pq.write_table(pa.Table.from_pylist(_records()), curated / "part-00000.parquet")
    tokenizer = _tokenizer(root / "tokenizer", 400)
    pack(curated, tokenizer, root / "tokens", PackConfig(valid_fraction=0.2), progress=False)
    return root / "tokens", tokenizer


def tiny(tokenizer: Path | None, **settings) -> TrainConfig:
    values = {
        "model_overrides": dict(TINY),
        "tokenizer": str(tokenizer) if tokenizer else None,
        "seq_len": 32,
        "batch_size": 4,
        "max_steps": 6,
        "warmup_steps": 2,
        "lr": 3e-3,
        "min_lr": 3e-4,
        "log_every": 1,
        "eval_every": 3,
        "eval_batches": 2,
        "checkpoint_every": 3,
        "keep_checkpoints": 3,
        "peak_flops": 1e11,  # skip measuring a matmul in every test
        "dtype": "float32",  # exact comparisons; "auto" would pick bf16 on AMX CPUs
        **settings,
    }
    return TrainConfig(**values)


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# -- pure parts -------------------------------------------------------------------------


def test_schedule_warms_up_then_decays_to_min_lr():
    kwargs = {"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 10, "max_steps": 100}
    assert lr_at(1, **kwargs) == pytest.approx(1e-4)
    assert lr_at(5, **kwargs) == pytest.approx(5e-4)
    assert lr_at(10, **kwargs) == pytest.approx(1e-3)
    assert lr_at(55, **kwargs) == pytest.approx(5.5e-4)  # half way down the cosine
    assert lr_at(100, **kwargs) == pytest.approx(1e-4)
    decay = [lr_at(s, **kwargs) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))
    assert lr_at(1, 1.0, 0.0, 0, 4) == pytest.approx(0.5 * (1 + 0.7071067811865476))
    assert lr_at(3, 1.0, 0.5, 5, 4) == pytest.approx(0.6)  # still warming when it stops


def test_weight_decay_on_matrices_and_embeddings_only():
    from codekiln.model.config import preset

    model = CodeGPT(preset("tiny", **TINY, vocab_size=64))
    decay, plain = parameter_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    undecayed = {names[id(p)] for p in plain["params"]}
    assert (decay["weight_decay"], plain["weight_decay"]) == (0.1, 0.0)
    assert {"wte.weight", "wpe.weight", "blocks.0.attn.c_attn.weight"} <= decayed
    assert {"blocks.0.attn.c_attn.bias", "blocks.1.ln_1.weight", "ln_f.bias"} <= undecayed
    assert all(name.endswith("weight") and "ln" not in name for name in decayed)
    assert not decayed & undecayed
    assert len(decayed) + len(undecayed) == len(list(model.parameters()))


def test_token_bytes_count_the_utf8_bytes_of_text(packed):
    from codekiln.tokenizer.special import EOS, load_tokenizer

    tokenizer = load_tokenizer(packed[1])
    sizes = token_bytes(tokenizer, tokenizer.get_vocab_size())
    text = "def café(x):\n    return '日本語 😀' * x\n"
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert sizes[ids].sum() == len(text.encode("utf-8"))
    assert sizes[tokenizer.token_to_id(EOS)] == 0  # special tokens have no bytes


def test_the_mfu_peak_comes_from_the_device_s_exact_name(monkeypatch):
    """No substring matching: "NVIDIA H100" (no such device) is not an H100 SXM; an unknown
    name, or another dtype than bf16, is measured and the run is told why."""
    import codekiln.train.metrics as metrics

    name = ["NVIDIA H100 PCIe"]
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name[0])
    monkeypatch.setattr(metrics, "measured_matmul_flops", lambda *args, **kwargs: 1e12)
    cuda = torch.device("cuda")
    assert metrics.device_peak(cuda, torch.bfloat16) == (756e12, None)
    name[0] = "NVIDIA H100 80GB HBM3"
    assert metrics.device_peak(cuda, torch.bfloat16) == (989e12, None)
    peak, why = metrics.device_peak(cuda, torch.float32)
    assert peak == 1e12 and "float32, not bfloat16" in why
    name[0] = "NVIDIA H100"
    said: list[str] = []
    assert metrics.peak_flops(TrainConfig(), cuda, torch.bfloat16, said.append) == 1e12
    assert len(said) == 1 and "'NVIDIA H100' is not in the datasheet table" in said[0]
    assert metrics.peak_flops(TrainConfig(peak_flops=5e14), cuda, torch.bfloat16) == 5e14


def test_config_rejects_bad_settings():
    with pytest.raises(UserError, match="min_lr"):
        TrainConfig(lr=1e-4, min_lr=1e-3)
    with pytest.raises(UserError, match="dtype"):
        TrainConfig(dtype="float16")
    with pytest.raises(UserError, match="parallel"):
        TrainConfig(parallel="pipeline")
    with pytest.raises(UserError, match="betas"):
        TrainConfig(betas=[0.9])
    assert TrainConfig(betas=[0.9, 0.99]).betas == (0.9, 0.99)  # as TOML gives them


# -- runs -------------------------------------------------------------------------------


def test_loss_decreases_and_the_run_writes_its_outputs(packed, tmp_path):
    data, tokenizer = packed
    config = tiny(
        tokenizer, max_steps=30, eval_every=10, log_every=5, checkpoint_every=10, keep_checkpoints=2
    )
    result = train(data, tmp_path / "run", config, progress=False)
    assert (result.steps, result.tokens) == (30, 30 * 4 * 32)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    logged = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in logged] == [5, 10, 15, 20, 25, 30]
    assert [r["step"] for r in evals] == [10, 20, 30]
    for row in logged:
        assert set(row) == {
            "step",
            "loss",
            "lr",
            "tokens",
            "tokens_per_s",
            "mfu",
            "grad_norm",
            "elapsed",
        }
        assert row["tokens_per_s"] > 0 and 0 < row["mfu"] and row["grad_norm"] > 0
    assert logged[-1]["loss"] < logged[0]["loss"] - 1.0, logged
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert 0 < evals[-1]["val_bpb"] < evals[0]["val_bpb"]
    assert logged[-1]["lr"] == pytest.approx(config.min_lr)
    assert result.final_loss == logged[-1]["loss"]
    assert result.val_loss == evals[-1]["val_loss"]
    out = tmp_path / "run"
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "latest",
        "step_20",
        "step_30",
    ]
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_30"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "train" and manifest["steps"] == 30
    assert (out / "model" / "tokenizer.json").exists()
    again = train(data, out, config, progress=False)
    assert again.skipped and again.steps == 30
    with pytest.raises(UserError, match="--resume") as excinfo:
        train(data, out, tiny(tokenizer, max_steps=31), progress=False)
    one_line(excinfo)


def test_export_loads_back_with_the_same_logits(packed, tmp_path):
    data, tokenizer = packed
    result = train(data, tmp_path / "run", tiny(tokenizer, max_steps=3), progress=False)
    imported = import_hf(result.model_dir)
    state = json.loads((tmp_path / "run/checkpoints/step_3/state.json").read_text())
    from codekiln.model.config import ModelConfig

    trained = CodeGPT(ModelConfig(**state["model_config"]))
    trained.load_state_dict(load_checkpoint_weights(tmp_path / "run/checkpoints/step_3"))
    trained.eval()
    input_ids = torch.randint(0, trained.config.vocab_size, (2, 16))
    with torch.no_grad():
        assert torch.equal(imported(input_ids)[0], trained(input_ids)[0])
    card = (result.model_dir / "README.md").read_text()
    assert "Training" in card and "AdamW" in card


def test_resume_is_exact_and_survives_a_killed_write(packed, tmp_path):
    """8 steps straight, against the same run cut back to its step-4 checkpoint with a
    half-written step_6.tmp/ left behind (as a kill mid-write leaves it), then resumed."""
    data, tokenizer = packed
    overrides = {**TINY, "dropout": 0.1}  # dropout: the RNG state matters after resuming
    # Logging every 3 steps leaves step 4's loss unlogged in the checkpoint: it must carry over.
    config = tiny(tokenizer, max_steps=8, checkpoint_every=4, eval_every=4, log_every=3)
    config.model_overrides = overrides
    straight = tmp_path / "straight"
    train(data, straight, config, progress=False)

    cut = tmp_path / "cut"
    shutil.copytree(straight, cut)
    shutil.rmtree(cut / "checkpoints" / "step_8")
    shutil.rmtree(cut / "model")
    (cut / "manifest.json").unlink()
    (cut / "checkpoints" / "latest").write_text("step_4\n")
    torn = cut / "checkpoints" / "step_6.tmp"
    torn.mkdir()
    (torn / "__0_0.distcp").write_bytes(b"half a shard")
    with open(cut / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 9, "loss": 1.')  # a torn last line
    result = train(data, cut, None, resume=True, progress=False)

    assert result.steps == 8 and not torn.exists()
    timing = ("elapsed", "tokens_per_s", "mfu")

    def losses(run: Path) -> list[dict]:
        rows = read_metrics(run / "metrics.jsonl")
        return [{k: v for k, v in r.items() if k not in timing} for r in rows]

    assert losses(cut) == losses(straight)  # bitwise: JSON floats round-trip exactly
    assert [r["step"] for r in losses(cut) if "loss" in r] == [3, 6, 8]
    final_straight = load_checkpoint_weights(straight / "checkpoints/step_8")
    final_cut = load_checkpoint_weights(cut / "checkpoints/step_8")
    assert all(torch.equal(final_straight[k], final_cut[k]) for k in final_straight)
    assert (cut / "model" / "model.safetensors").exists() and (cut / "manifest.json").exists()


def test_resume_continues_a_finished_run_to_more_steps(packed, tmp_path):
    data, tokenizer = packed
    out = tmp_path / "run"
    train(data, out, tiny(tokenizer, max_steps=3), progress=False)
    result = train(data, out, tiny(tokenizer, max_steps=5), resume=True, progress=True)
    assert result.steps == 5 and not result.skipped
    assert (out / "checkpoints" / "step_5").is_dir()


def test_a_damaged_checkpoint_is_one_line(packed, tmp_path):
    data, tokenizer = packed
    out = tmp_path / "run"
    train(data, out, tiny(tokenizer, max_steps=6), progress=False)
    weights = out / "checkpoints" / "step_6" / "__0_0.distcp"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(UserError, match="step_6 is damaged.*resume from step_3") as excinfo:
        train(data, out, tiny(tokenizer, max_steps=9), resume=True, progress=False)
    one_line(excinfo)
    blob = bytearray((out / "checkpoints" / "step_3" / "__0_0.distcp").read_bytes())
    blob[-30] ^= 0xFF  # same size, flipped bits
    (out / "checkpoints" / "step_3" / "__0_0.distcp").write_bytes(bytes(blob))
    shutil.rmtree(out / "checkpoints" / "step_6")
    with pytest.raises(UserError, match="sha256") as excinfo:
        train(data, out, tiny(tokenizer, max_steps=9), resume=True, progress=False)
    one_line(excinfo)


@pytest.mark.slow
def test_max_minutes_stops_after_one_step_with_checkpoint_and_export(packed, tmp_path):
    data, tokenizer = packed
    out = tmp_path / "run"
    config = tiny(tokenizer, max_steps=4, max_minutes=1e-6)
    result = train(data, out, config, progress=False)
    assert result.steps == 1
    assert (out / "checkpoints" / "step_1" / "state.json").exists()
    assert (out / "model" / "config.json").exists() and (out / "manifest.json").exists()
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r] == [1]
    # The same command again is not a no-op: the run has steps to go (with --resume).
    with pytest.raises(UserError, match="--resume"):
        train(data, out, config, progress=False)
    assert train(data, out, config, resume=True, progress=False).steps == 2
    config.max_minutes = None
    assert train(data, out, config, resume=True, progress=False).steps == 4
    assert train(data, out, config, resume=True, progress=False).skipped


def test_the_pack_s_own_tokenizer_is_found_without_tokenizer(packed, tmp_path):
    """`codekiln train --data TOKENS` needs nothing else: FIM, val_bpb and the export use
    the copy of the tokenizer the pack keeps."""
    data, tokenizer = packed
    result = train(data, tmp_path / "run", tiny(None, max_steps=2), progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert result.steps == 2 and result.val_loss is not None
    assert any("val_bpb" in r for r in rows)
    exported = (tmp_path / "run" / "model" / "tokenizer.json").read_bytes()
    assert exported == (tokenizer / "tokenizer.json").read_bytes()


def losses_of(run: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]


@pytest.mark.slow
def test_gradient_accumulation_matches_one_large_batch(packed, tmp_path):
    """2 micro-batches of 2 take the same 4 sequences as one batch of 4 (the loader hands
    out consecutive batches), so the losses agree to float rounding (no FIM: no padding)."""
    data, tokenizer = packed
    settings = {"fim_rate": 0.0, "max_steps": 4}
    train(data, tmp_path / "big", tiny(tokenizer, batch_size=4, **settings), progress=False)
    accumulated = tiny(tokenizer, batch_size=2, grad_accum=2, **settings)
    result = train(data, tmp_path / "acc", accumulated, progress=False)
    assert result.tokens == 4 * 4 * 32
    assert losses_of(tmp_path / "acc") == pytest.approx(losses_of(tmp_path / "big"), abs=1e-5)


@pytest.mark.slow
def test_checkpointing_compile_and_bf16_train_the_same_model(packed, tmp_path):
    """Activation checkpointing recomputes the same float32 ops: bitwise the same losses.
    Compiled blocks fuse ops (float rounding only); bf16 autocast is a few 1e-3 off."""
    data, tokenizer = packed
    train(data, tmp_path / "plain", tiny(tokenizer, max_steps=3), progress=False)
    train(
        data,
        tmp_path / "ac",
        tiny(tokenizer, max_steps=3, activation_checkpointing=True),
        progress=False,
    )
    assert losses_of(tmp_path / "ac") == losses_of(tmp_path / "plain")
    both = tiny(tokenizer, max_steps=3, activation_checkpointing=True, compile=True)
    train(data, tmp_path / "compiled", both, progress=False)
    assert losses_of(tmp_path / "compiled") == pytest.approx(
        losses_of(tmp_path / "plain"), abs=1e-5
    )
    train(data, tmp_path / "bf16", tiny(tokenizer, max_steps=3, dtype="bfloat16"), progress=False)
    assert losses_of(tmp_path / "bf16") == pytest.approx(losses_of(tmp_path / "plain"), abs=2e-2)


@pytest.mark.slow
def test_init_from_continues_from_an_exported_model(packed, tmp_path):
    data, tokenizer = packed
    first = train(data, tmp_path / "first", tiny(tokenizer, max_steps=20), progress=False)
    tuned = tiny(tokenizer, max_steps=2, init_from=str(first.model_dir), model_overrides={})
    train(data, tmp_path / "tuned", tuned, progress=False)
    fresh = losses_of(tmp_path / "first")[0]
    assert losses_of(tmp_path / "tuned")[0] < fresh - 1.0  # starts where the first ended
    with pytest.raises(UserError, match="model_overrides") as excinfo:
        tuned.model_overrides = {"n_layer": 1}
        train(data, tmp_path / "bad", tuned, progress=False)
    one_line(excinfo)


# -- bad input --------------------------------------------------------------------------


def test_shards_from_another_tokenizer(packed, tmp_path):
    data, _ = packed
    other = _tokenizer(tmp_path / "other", 300)
    with pytest.raises(UserError, match="not the one .* packed with") as excinfo:
        train(data, tmp_path / "run", tiny(other), progress=False)
    one_line(excinfo)


def test_vocabulary_smaller_than_the_shards(packed, tmp_path):
    data, tokenizer = packed
    config = tiny(tokenizer, model_overrides={**TINY, "vocab_size": 100})
    with pytest.raises(UserError, match="vocabulary of 100 ids") as excinfo:
        train(data, tmp_path / "run", config, progress=False)
    one_line(excinfo)
    assert not (tmp_path / "run").exists()


def test_a_model_that_cannot_fit_is_refused_before_allocating(packed, tmp_path, monkeypatch):
    data, tokenizer = packed
    have = memory.available_memory(torch.device("cpu"))
    if have is None or have > 200 << 30:
        pytest.skip("this machine might hold the 15B model's 240 GiB of training state")
    with pytest.raises(UserError, match="'15b'.*GiB.*smaller preset") as excinfo:
        config = tiny(tokenizer, model="15b", model_overrides={})
        train(data, tmp_path / "big", config, progress=False)
    one_line(excinfo)
    monkeypatch.setattr(memory, "available_memory", lambda device: 1 << 20)
    with pytest.raises(UserError, match="1 GiB|0.0 GiB available"):
        train(data, tmp_path / "small", tiny(tokenizer), progress=False)


def test_resume_refuses_another_model(packed, tmp_path):
    data, tokenizer = packed
    out = tmp_path / "run"
    train(data, out, tiny(tokenizer, max_steps=3), progress=False)
    config = tiny(tokenizer, max_steps=5, model_overrides={**TINY, "n_layer": 3})
    with pytest.raises(UserError, match="model_overrides .* cannot change") as excinfo:
        train(data, out, config, resume=True, progress=False)
    one_line(excinfo)


def test_prefetching_changes_no_batch(packed, tmp_path):
    """FIM on: batches made ahead in a thread (3 deep) or in the loop give the same run."""
    data, tokenizer = packed
    for name, depth in (("inline", 0), ("ahead", 3)):
        train(data, tmp_path / name, tiny(tokenizer, prefetch=depth, fim_rate=0.5), progress=False)
    assert losses_of(tmp_path / "ahead") == losses_of(tmp_path / "inline")


def test_a_batch_that_fails_in_the_thread_fails_the_run(packed, tmp_path, monkeypatch):
    from codekiln.pack.loader import TokenLoader

    data, tokenizer = packed
    original = TokenLoader.batch

    def batch(self, epoch, step):
        if step == 4:
            raise UserError("shard 0 of the train split is damaged")
        return original(self, epoch, step)

    monkeypatch.setattr(TokenLoader, "batch", batch)
    with pytest.raises(UserError, match="damaged"):
        train(data, tmp_path / "run", tiny(tokenizer, prefetch=2), progress=False)
    assert not [t for t in threading.enumerate() if t.name == "codekiln-prefetch"]
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]  # failed taking step 5


# -- torchrun ---------------------------------------------------------------------------

SCRIPT = """
import json, sys
from codekiln.train.config import TrainConfig
from codekiln.train.loop import train
train(sys.argv[1], sys.argv[2], TrainConfig(**json.loads(sys.argv[3])), progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one_with_the_same_global_batch(packed, tmp_path, parallel):
    """Two gloo ranks of batch 2 against one process of batch 4: the same sequences per
    step (the loader's global batch depends only on ranks x batch) and the same math, so
    the same losses up to float32 rounding (~1e-7 relative; 1e-5 allowed): each rank
    averages its half, then the halves are averaged (and under FSDP reduce-scattered), in
    another order than one process sums one batch. Without FIM no target is padding, so
    the mean of the two halves' means is the mean of the whole (with FIM's padded rows a
    rank's mean weighs its targets differently, as in Megatron and nanoGPT). The validation
    set of 7 sequences splits 3/4 over the ranks, so the validation loss is also the one
    process's on uneven shares."""
    data, tokenizer = packed
    settings = {
        "model_overrides": TINY,
        "tokenizer": str(tokenizer),
        "seq_len": 32,
        "max_steps": 4,
        "warmup_steps": 1,
        "lr": 3e-3,
        "log_every": 1,
        "eval_every": 4,
        "eval_sequences": 7,  # the validation set is per config: the same in both runs
        "checkpoint_every": 0,
        "peak_flops": 1e11,
        "parallel": parallel,
        "fim_rate": 0.0,
        "dtype": "float32",
    }
    single = train(data, tmp_path / "one", TrainConfig(**settings, batch_size=4), progress=False)
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(data),
            str(tmp_path / "two"),
            json.dumps({**settings, "batch_size": 2}),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    one = [r for r in read_metrics(tmp_path / "one" / "metrics.jsonl") if "loss" in r]
    two = [r for r in read_metrics(tmp_path / "two" / "metrics.jsonl") if "loss" in r]
    assert [r["tokens"] for r in two] == [r["tokens"] for r in one]
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
    val_one, val_two = (
        [r["val_loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl") if "val_loss" in r]
        for run in ("one", "two")
    )
    assert len(val_one) == 1 and val_two == pytest.approx(val_one, abs=1e-5)
    assert single.steps == 4
    exported = import_hf(tmp_path / "two" / "model")
    assert exported.config.n_layer == TINY["n_layer"]


def torchrun(script: Path, processes: int, *args: str, timeout: int = 240):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(processes), str(script), *args]
    run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.slow
def test_validation_loss_is_the_same_in_one_and_four_processes(packed, tmp_path):
    """The same weights (the seed's initialisation: one step at lr 1e-30 changes no float32
    weight) evaluated on one fixed set of 7 sequences: in 1 process, and in 4 ddp ranks
    (shares of 1/2/2/2 rows in batches of 2, so ranks run padding passes), and 4 fsdp ranks,
    whose padding passes must still join each block's all-gather. The same val_loss and
    val_bpb up to float rounding (rows are summed in another order). Two ranks' shares of
    3/4 are checked by the two-process test, which trains on them too."""
    data, tokenizer = packed
    settings = {
        "model_overrides": TINY,
        "tokenizer": str(tokenizer),
        "seq_len": 32,
        "batch_size": 2,
        "max_steps": 1,
        "warmup_steps": 1,
        "lr": 1e-30,
        "min_lr": 0.0,
        "eval_sequences": 7,
        "checkpoint_every": 0,
        "peak_flops": 1e11,
        "fim_rate": 0.0,
        "dtype": "float32",
    }
    train(data, tmp_path / "p1", TrainConfig(**settings), progress=False)
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    runs = {"p4": (4, "ddp"), "p4fsdp": (4, "fsdp")}
    for name, (processes, parallel) in runs.items():
        config = json.dumps({**settings, "parallel": parallel})
        torchrun(script, processes, str(data), str(tmp_path / name), config)

    def validation(name: str) -> dict:
        (row,) = [r for r in read_metrics(tmp_path / name / "metrics.jsonl") if "val_loss" in r]
        return row

    one = validation("p1")
    assert one["val_loss"] > 1.0 and one["val_bpb"] > 0
    for name in runs:
        row = validation(name)
        assert row["val_loss"] == pytest.approx(one["val_loss"], rel=1e-6), name
        assert row["val_bpb"] == pytest.approx(one["val_bpb"], rel=1e-6), name
