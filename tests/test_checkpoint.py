"""Sharded checkpoints (torch.distributed.checkpoint) on CPU with gloo: every rank writes its
own shards; a run carried through four layouts (fsdp on 4 ranks -> fsdp+tp 2x2 -> tp on 2 ->
one process) finishes as an uninterrupted one-process run does; a killed save resumes from
the last complete checkpoint; `codekiln export` of a checkpoint equals the run's own export;
bad input is one line."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import test_parallel
import test_train
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import cli_here
from safetensors.torch import load_file
from test_parallel import BASE, MODELS, _assert_same_weights, _free_port
from test_train import TINY

from codekiln.errors import UserError
from codekiln.model.config import ModelConfig
from codekiln.model.gpt import CodeGPT
from codekiln.train.checkpoint import (
    checkpoint_shapes,
    load_checkpoint_weights,
    read_checkpoint_state,
    save_checkpoint,
    shard_reader,
)
from codekiln.train.config import TrainConfig
from codekiln.train.loop import train
from codekiln.train.metrics import read_metrics
from codekiln.train.parallel import Distributed, parallelize
from codekiln.train.state_dicts import (
    full_model_state,
    full_optimizer_state,
    load_sharded_state,
    sharded_state,
)

packed = test_train.packed  # the fixture: a pack and its tokenizer

# Each leg: a torchrun of this script, a fresh run (settings) or a resumed one (changes).
SCRIPT = """
import json, sys
from codekiln.train.config import TrainConfig
from codekiln.train.loop import train
settings = json.loads(sys.argv[3])
if sys.argv[4] == "resume":
    train(sys.argv[1], sys.argv[2], None, resume=True, progress=False, changes=settings)
else:
    train(sys.argv[1], sys.argv[2], TrainConfig(**settings), progress=False)
"""


def _round_trips(rank: int, world_size: int, port: int, folder: str) -> None:
    """On each rank, for every head layout (multi-query's replicated K/V, grouped and
    multi-head sharded K/V): a tensor-parallel model and its AdamW state after a step, saved
    sharded, then loaded into a zeroed model and a fresh optimizer: the same state exactly,
    and in one process without a group (rank 0) the model's whole weights."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        for index, overrides in enumerate(MODELS):
            torch.manual_seed(0)
            reference = CodeGPT(ModelConfig(**BASE, **overrides))
            model = parallelize(
                copy.deepcopy(reference), Distributed(rank, world_size), parallel="tp"
            )
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
            tokens = torch.randint(0, BASE["vocab_size"], (2, 16))
            model(tokens, labels=tokens)[1].backward()
            optimizer.step()
            weights = full_model_state(model)
            moments = full_optimizer_state(model, optimizer)
            path = os.path.join(folder, f"model{index}")
            state = {"version": 2} if rank == 0 else None
            save_checkpoint(
                Path(path), 1, sharded_state(model, optimizer), {"rng.pt": []}, state, 1
            )
            with torch.no_grad():
                for param in model.parameters():
                    param.zero_()
            fresh = torch.optim.AdamW(model.parameters(), lr=1e-2)
            load_sharded_state(model, fresh, shard_reader(Path(path) / "step_1"))
            # The whole state is rank 0's (a gather: every rank takes part).
            loaded_weights = full_model_state(model)
            loaded = full_optimizer_state(model, fresh)
            if rank == 0:
                for name, tensor in loaded_weights.items():
                    assert torch.equal(tensor, weights[name]), name
                assert loaded["state"].keys() == moments["state"].keys()
                for name, entry in moments["state"].items():
                    for key, value in entry.items():
                        assert torch.equal(loaded["state"][name][key], value), (name, key)
                whole = load_checkpoint_weights(Path(path) / "step_1")
                assert whole.keys() == reference.state_dict().keys()
                assert all(torch.equal(whole[k], weights[k]) for k in whole)
        dist.barrier()  # not after a failure: its peer would wait in another collective
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_tensor_parallel_state_round_trips_through_a_sharded_checkpoint(tmp_path):
    mp.spawn(_round_trips, args=(2, _free_port(), str(tmp_path)), nprocs=2)


def _settings(tokenizer, **extra) -> dict:
    return {
        # Grouped-query (2 K/V heads): tp shards K/V too, and fsdp+tp shards every part twice.
        "model_overrides": {**TINY, "n_head": 4, "n_kv_heads": 2, "position": "rotary"},
        "tokenizer": str(tokenizer),
        "seq_len": 32,
        "batch_size": 4,
        "max_steps": 8,
        "warmup_steps": 2,
        "lr": 3e-3,
        "min_lr": 3e-4,
        "log_every": 1,
        "eval_every": 0,
        "eval_batches": 1,
        "checkpoint_every": 2,
        "keep_checkpoints": 10,
        "peak_flops": 1e11,
        "fim_rate": 0.0,
        "dtype": "float32",
        **extra,
    }


def _torchrun(nproc: int, data, out, settings: dict, tmp_path, mode: str = "new") -> None:
    test_parallel._torchrun(nproc, data, out, settings, tmp_path, mode, script=SCRIPT)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return cli_here(*args)


def _loss_rows(run) -> list[dict]:
    return [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]


@pytest.fixture(scope="module")
def layouts(packed, tmp_path_factory):
    """(one process straight, the run carried through four layouts, a copy of it as the
    tp leg left it, the fsdp leg's shard sizes): 8 steps each, global batch 4. Each leg but
    the last stops after one step by the clock (max_minutes), so the schedule, which ends at
    max_steps, is the straight run's throughout."""
    data, tokenizer = packed
    root = tmp_path_factory.mktemp("layouts")
    settings = _settings(tokenizer)
    straight = root / "straight"
    train(data, straight, TrainConfig(**settings), progress=False)
    moved = root / "moved"
    stop = {"max_minutes": 1e-6}
    _torchrun(4, data, moved, {**settings, **stop, "parallel": "fsdp", "batch_size": 1}, root)
    fsdp_files = {
        p.name: p.stat().st_size for p in (moved / "checkpoints" / "step_1").glob("*.distcp")
    }
    mixed = {**stop, "parallel": "fsdp+tp", "tp_size": 2, "batch_size": 2}
    _torchrun(4, data, moved, mixed, root, "resume")
    _torchrun(2, data, moved, {**stop, "parallel": "tp", "batch_size": 4}, root, "resume")
    after_tp = root / "after_tp"
    shutil.copytree(moved, after_tp)
    changes = {"parallel": "ddp", "tp_size": None, "batch_size": 4}
    train(data, moved, None, resume=True, progress=False, changes=changes)
    return straight, moved, after_tp, fsdp_files


@pytest.mark.slow
def test_every_rank_writes_its_own_shards(layouts):
    """fsdp on 4 ranks: four shard files, each about a quarter of the checkpoint (nothing was
    gathered to rank 0), all listed with their sizes in state.json."""
    _, moved, _, files = layouts
    assert sorted(files) == [f"__{rank}_0.distcp" for rank in range(4)]
    total = sum(files.values())
    for name, size in files.items():
        assert 0.15 < size / total < 0.35, (name, size, total)


@pytest.mark.slow
def test_a_run_moves_across_layouts_and_finishes_as_one_process_would(layouts):
    """fsdp x4 -> fsdp+tp 2x2 -> tp x2 -> one process (a step each, then the rest), against
    one process straight: the same tokens, learning rates, losses and gradient norms at every
    step (the data position and the schedule carried over; losses within float32 rounding,
    as the layouts sum in other orders) and the same final weights."""
    straight, moved, _, _ = layouts
    one, many = _loss_rows(straight), _loss_rows(moved)
    assert [r["step"] for r in many] == list(range(1, 9))
    for a, b in zip(one, many, strict=True):
        assert (b["tokens"], b["lr"]) == (a["tokens"], a["lr"])
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    expected = load_checkpoint_weights(straight / "checkpoints" / "step_8")
    _assert_same_weights(expected, load_checkpoint_weights(moved / "checkpoints" / "step_8"))
    for step in (1, 2, 3):  # every layout's checkpoint has the model's own names and shapes
        shapes = checkpoint_shapes(moved / "checkpoints" / f"step_{step}")
        assert shapes == {k: tuple(v.shape) for k, v in expected.items()}
    state = read_checkpoint_state(moved / "checkpoints" / "step_3")
    assert state["config"]["parallel"] == "tp" and state["world_size"] == 2


@pytest.mark.slow
def test_export_of_a_tp_checkpoint_equals_the_run_s_own_export(layouts, tmp_path):
    """`codekiln export` of the tp leg's last checkpoint, offline in one process, writes
    the folder the tp run wrote when it finished: the same weights, bit for bit, and files."""
    _, _, after_tp, _ = layouts
    out = tmp_path / "exported"
    done = _cli("export", str(after_tp), "--step", "3", "-o", str(out))
    assert done.returncode == 0, done.stderr
    own = after_tp / "model"
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in own.iterdir())
    ours, theirs = load_file(out / "model.safetensors"), load_file(own / "model.safetensors")
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    for name in ("config.json", "tokenizer.json", "README.md"):
        assert (out / name).read_text() == (own / name).read_text(), name
    # The default output folder, then the bad inputs: one line each, exit status 2.
    done = _cli("export", str(after_tp))
    assert done.returncode == 0 and (after_tp / "export" / "step_3" / "config.json").is_file()
    for args, fragment in (
        ([str(tmp_path)], "has no checkpoints"),
        ([str(after_tp), "--step", "4"], "no checkpoint of step 4; it has steps 1, 2, 3"),
        ([str(after_tp), "-o", str(out)], "not empty"),
    ):
        done = _cli("export", *args)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1 and fragment in lines[0], done.stderr


@pytest.mark.slow
def test_a_killed_save_resumes_from_the_last_complete_checkpoint(packed, tmp_path):
    """A save killed before its state.json (step_6.tmp/ with a truncated shard) is ignored
    and removed: the run resumes from step_3 and ends bit for bit as the straight one."""
    data, tokenizer = packed
    config = test_train.tiny(tokenizer, max_steps=6, checkpoint_every=3, eval_every=0)
    straight = tmp_path / "straight"
    train(data, straight, config, progress=False)

    cut = tmp_path / "cut"
    shutil.copytree(straight, cut)
    shutil.rmtree(cut / "model")
    (cut / "manifest.json").unlink()
    torn = cut / "checkpoints" / "step_6.tmp"
    (cut / "checkpoints" / "step_6").rename(torn)
    (torn / "state.json").unlink()
    shard = torn / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:1000])
    (cut / "checkpoints" / "latest").write_text("step_3\n")
    result = train(data, cut, None, resume=True, progress=False)
    assert result.steps == 6 and not torn.exists()
    assert [r["loss"] for r in _loss_rows(cut)] == [r["loss"] for r in _loss_rows(straight)]
    final = load_checkpoint_weights(cut / "checkpoints" / "step_6")
    expected = load_checkpoint_weights(straight / "checkpoints" / "step_6")
    assert all(torch.equal(final[k], expected[k]) for k in expected)


def test_bad_checkpoints_are_one_line(packed, tmp_path):
    """A shard that does not belong to the model state.json describes, and a checkpoint of
    the old format, are refused before anything is allocated, in one line."""
    data, tokenizer = packed
    out = tmp_path / "run"
    train(data, out, test_train.tiny(tokenizer, max_steps=2, eval_every=0), progress=False)
    step = out / "checkpoints" / "step_2"
    state = json.loads((step / "state.json").read_text())
    state["model_config"]["n_embd"] = 128
    state["export"]["export_config"]["n_embd"] = 128
    (step / "state.json").write_text(json.dumps(state))
    config = test_train.tiny(tokenizer, max_steps=4)
    with pytest.raises(UserError, match="holds another model .* wte.weight is") as excinfo:
        train(data, out, config, resume=True, progress=False)
    test_train.one_line(excinfo)
    done = _cli("export", str(out))
    assert done.returncode == 2 and "holds another model" in done.stderr
    (step / "state.json").write_text(json.dumps({"version": 1, "step": 2}))
    with pytest.raises(UserError, match="old format") as excinfo:
        train(data, out, config, resume=True, progress=False)
    test_train.one_line(excinfo)


@pytest.mark.slow
def test_a_sharded_resume_in_the_same_layout_is_bit_exact(packed, tmp_path):
    """fsdp on 2 ranks with dropout, cut back to its step-2 checkpoint and resumed on 2
    ranks again, against the same run straight: the same losses bit for bit (each rank's
    shards and generator states come back as they were) and the same final weights. (A
    stop by the clock is the layouts' legs'; here a copy saves a third torchrun.)"""
    data, tokenizer = packed
    settings = _settings(tokenizer, max_steps=3, parallel="fsdp", batch_size=2)
    settings["model_overrides"] = {**settings["model_overrides"], "dropout": 0.1}
    _torchrun(2, data, tmp_path / "straight", settings, tmp_path)
    test_parallel._cut_back(tmp_path / "straight", tmp_path / "parts", 2, 3)
    _torchrun(2, data, tmp_path / "parts", {}, tmp_path, "resume")
    timing = ("elapsed", "tokens_per_s", "mfu")

    def rows(run):
        return [{k: v for k, v in r.items() if k not in timing} for r in _loss_rows(run)]

    assert len(rows(tmp_path / "straight")) == 3
    assert rows(tmp_path / "parts") == rows(tmp_path / "straight")
    final = load_checkpoint_weights(tmp_path / "parts" / "checkpoints" / "step_3")
    expected = load_checkpoint_weights(tmp_path / "straight" / "checkpoints" / "step_3")
    assert all(torch.equal(final[k], expected[k]) for k in expected)
