"""Tensor parallelism on CPU with gloo: two ranks against one process, for the model (loss,
gradients, clipping, an AdamW step, the full state dict) and for `codekiln train` (losses,
resume, export), plus the head counts it refuses."""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest
import test_train
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_train import SCRIPT, TINY

from codekiln.errors import UserError
from codekiln.model.config import ModelConfig
from codekiln.model.gpt import CodeGPT
from codekiln.model.hf import import_hf
from codekiln.train.checkpoint import load_checkpoint_weights
from codekiln.train.config import TrainConfig
from codekiln.train.loop import train
from codekiln.train.metrics import read_metrics
from codekiln.train.parallel import Distributed, mesh_shape, parallelize
from codekiln.train.state_dicts import full_model_state, full_optimizer_state, load_full_state
from codekiln.train.tensor_parallel import check_tensor_parallel

# n_kv_heads 1 replicates the K/V head on both ranks; 2 and 4 shard K/V heads.
MODELS = [
    {"n_kv_heads": 1, "position": "learned"},
    {"n_kv_heads": 1, "position": "rotary"},
    {"n_kv_heads": 2, "position": "rotary"},
    {"n_kv_heads": 4, "position": "learned"},
]
packed = test_train.packed  # the fixture: a pack and its tokenizer
BASE = {"vocab_size": 96, "n_positions": 32, "n_embd": 64, "n_layer": 2, "n_head": 4}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _model_parity(rank: int, world_size: int, port: int) -> None:
    """On each rank: one model trained a step whole and a copy trained the same step tensor
    parallel must agree on loss, gradients, gradient norm, weights and optimizer state."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        distributed = Distributed(rank, world_size)
        for index, overrides in enumerate(MODELS):
            # Half of them recompute each block in the backward pass, collectives included.
            _check_one_model(ModelConfig(**BASE, **overrides), distributed, index % 2 == 1)
    finally:
        dist.barrier()  # no rank tears gloo down while its peer still talks to it
        dist.destroy_process_group()


def _check_one_model(config: ModelConfig, distributed: Distributed, checkpointing: bool) -> None:
    torch.manual_seed(0)
    reference = CodeGPT(config)
    model = copy.deepcopy(reference)
    input_ids = torch.randint(0, config.vocab_size, (2, 16))
    labels = torch.randint(0, config.vocab_size, (2, 16))

    parallelize(model, distributed, parallel="tp", activation_checkpointing=checkpointing)
    losses, norms, optimizers = [], [], []
    for net in (reference, model):
        _, loss = net(input_ids, labels=labels)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(net.parameters()), 0.5)
        losses.append(loss)
        norms.append(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        # A large eps: Adam's first step is ~lr x sign(gradient), which for the key bias (whose
        # true gradient is 0: softmax ignores a constant added to every key) is the sign of
        # rounding noise; eps keeps the step proportional to the gradient.
        optimizers.append(torch.optim.AdamW(net.parameters(), lr=1e-2, eps=1e-3, fused=True))
    assert type(losses[1]) is torch.Tensor, "outputs leave the model as plain tensors"
    torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(norms[1], norms[0], atol=1e-5, rtol=1e-5)
    grads = _full_grads(model)
    assert grads.keys() == dict(reference.named_parameters()).keys()
    for name, param in reference.named_parameters():
        torch.testing.assert_close(grads[name], param.grad, atol=1e-5, rtol=1e-5, msg=name)

    for optimizer in optimizers:
        optimizer.step()
    weights = full_model_state(model)
    moments = full_optimizer_state(model, optimizers[1])
    if distributed.rank == 0:
        expected = reference.state_dict()
        assert list(weights) == list(expected), "the model's own names, in its own order"
        for name, tensor in expected.items():
            torch.testing.assert_close(weights[name], tensor, atol=1e-6, rtol=1e-5, msg=name)
        adam = optimizers[0].state[reference.blocks[0].attn.c_attn.weight]
        fused = moments["state"]["blocks.0.attn.c_attn.weight"]
        torch.testing.assert_close(fused["exp_avg"], adam["exp_avg"], atol=1e-5, rtol=1e-5)
    # Every rank loads the full state back into the sharded model: a round trip.
    weights, moments = _broadcast((weights, moments))
    load_full_state(model, {k: torch.zeros_like(v) for k, v in weights.items()})
    load_full_state(model, weights, optimizers[1], moments)
    for name, tensor in full_model_state(model).items():
        assert torch.equal(tensor, weights[name]), name


def _full_grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The sharded model's gradients gathered whole, under the unsharded names."""
    from codekiln.train.state_dicts import _fused
    from codekiln.train.tensor_parallel import qkv_modules

    grads = {
        name: p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
        for name, p in model.named_parameters()
    }
    return _fused(grads, qkv_modules(model))


def _broadcast(value):
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@pytest.mark.slow
def test_tensor_parallel_model_matches_one_process():
    """MQA (replicated K/V) with learned and rotary positions, GQA and MHA (sharded K/V)."""
    mp.spawn(_model_parity, args=(2, _free_port()), nprocs=2)


def test_refuses_head_counts_that_do_not_split():
    mqa = ModelConfig(**BASE, n_kv_heads=1)
    check_tensor_parallel(mqa, 4)  # one K/V head: replicated on every rank
    check_tensor_parallel(ModelConfig(**BASE, n_kv_heads=4), 4)
    with pytest.raises(UserError, match="n_kv_heads of 1 .* or a multiple of 4") as excinfo:
        check_tensor_parallel(ModelConfig(**BASE, n_kv_heads=2), 4)
    with pytest.raises(UserError, match="n_head divisible by 2") as other:
        check_tensor_parallel(ModelConfig(**{**BASE, "n_head": 1}), 2)
    assert "\n" not in str(excinfo.value) + str(other.value)
    with pytest.raises(UserError, match="tp_size that divides the 4"):
        mesh_shape("fsdp+tp", 4, tp_size=3)
    with pytest.raises(UserError, match="needs tp_size"):
        TrainConfig(parallel="fsdp+tp")
    assert mesh_shape("fsdp+tp", 4, tp_size=2) == (1, 2, 2)


def _torchrun(
    nproc: int, data, out, settings: dict, tmp_path, *extra: str, script: str = SCRIPT
) -> None:
    """`script` (DATA OUT SETTINGS_JSON EXTRA...) under torchrun on `nproc` gloo ranks."""
    path = tmp_path / f"script_{abs(hash(script))}.py"
    path.write_text(textwrap.dedent(script))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(nproc), str(path), str(data), str(out)]
    run = subprocess.run(
        [*command, json.dumps(settings), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]


def _cut_back(run, to, step: int, last: int):
    """A copy of `run` at `to` as if it had stopped after the checkpoint of `step`: the later
    checkpoint `last`, the export and the manifest gone."""
    shutil.copytree(run, to)
    shutil.rmtree(to / "checkpoints" / f"step_{last}")
    shutil.rmtree(to / "model")
    (to / "manifest.json").unlink()
    (to / "checkpoints" / "latest").write_text(f"step_{step}\n")
    return to


def _rows(run, key: str) -> list[dict]:
    return [r for r in read_metrics(run / "metrics.jsonl") if key in r]


def _assert_same_run(one, two) -> None:
    """Same tokens, losses and gradient norms per step, and the same validation loss. Sums
    taken in another order differ in the last float32 bits, and over 20 steps of AdamW
    that grows to ~1e-5 of a gradient norm: the bounds allow rounding, not a wrong sum (a
    missing tied-embedding gradient changes the norm by percents)."""
    assert [r["tokens"] for r in _rows(two, "loss")] == [r["tokens"] for r in _rows(one, "loss")]
    for a, b in zip(_rows(one, "loss"), _rows(two, "loss"), strict=True):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=5e-5)
    val_one, val_two = ([r["val_loss"] for r in _rows(run, "val_loss")] for run in (one, two))
    assert val_two == pytest.approx(val_one, abs=1e-5)


def _assert_same_weights(expected: dict, actual: dict) -> None:
    """Same names and shapes, and values within 1e-3 after a few AdamW steps: AdamW
    moves each element by about lr x sign(gradient), and where the gradient is rounding noise
    (the key bias's true gradient is 0: softmax ignores a constant added to every key) the
    sign is too, so runs that sum in another order part by up to ~lr there. A misplaced row
    would be off by the weights' scale (~0.1)."""
    assert sorted(actual) == sorted(expected)
    for name, tensor in expected.items():
        assert actual[name].shape == tensor.shape, name
        torch.testing.assert_close(actual[name], tensor, atol=1e-3, rtol=0, msg=name)


def _settings(tokenizer, **extra) -> dict:
    return {
        "model_overrides": {**TINY, "n_head": 4},  # multi-query: one K/V head, replicated
        "tokenizer": str(tokenizer),
        "seq_len": 32,
        "batch_size": 4,
        "max_steps": 4,
        "warmup_steps": 1,
        "lr": 3e-3,
        "log_every": 1,
        "eval_every": 4,
        "eval_sequences": 8,  # one validation set for every layout and batch size
        "checkpoint_every": 2,
        "keep_checkpoints": 2,
        "peak_flops": 1e11,
        "fim_rate": 0.0,
        "dtype": "float32",
        **extra,
    }


@pytest.mark.slow
def test_tensor_parallel_training_matches_one_process_and_resumes(packed, tmp_path):
    """`codekiln train` with parallel=tp on two ranks (both read the same batch of 4) against
    one process with batch 4: the same losses, a checkpoint and an export in the model's own
    layout, and a resume of the TP checkpoint (here in one process) that finishes the run."""
    data, tokenizer = packed
    settings = _settings(tokenizer)
    train(data, tmp_path / "one", TrainConfig(**settings), progress=False)
    _torchrun(2, data, tmp_path / "two", {**settings, "parallel": "tp"}, tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    _assert_same_run(one, two)
    load = lambda run, step: load_checkpoint_weights(run / f"checkpoints/step_{step}")  # noqa: E731
    _assert_same_weights(load(one, 4), load(two, 4))
    plain = CodeGPT(import_hf(one / "model").config).state_dict()
    _assert_same_weights(
        import_hf(one / "model").state_dict(), import_hf(two / "model").state_dict()
    )
    assert {k: v.shape for k, v in load(two, 2).items()} == {k: v.shape for k, v in plain.items()}

    cut = _cut_back(two, tmp_path / "cut", 2, 4)
    result = train(data, cut, None, resume=True, progress=False)
    assert result.steps == 4
    _assert_same_run(two, cut)
    _assert_same_weights(load(two, 4), load(cut, 4))


@pytest.mark.slow
def test_fsdp_with_tensor_parallel_on_a_2x2_mesh(packed, tmp_path):
    """Four ranks: two data-parallel replicas of batch 2, each split over two tensor-parallel
    ranks, against one process with batch 4."""
    data, tokenizer = packed
    settings = _settings(tokenizer, checkpoint_every=0)
    train(data, tmp_path / "one", TrainConfig(**settings), progress=False)
    mixed = {**settings, "batch_size": 2, "parallel": "fsdp+tp", "tp_size": 2}
    _torchrun(4, data, tmp_path / "four", mixed, tmp_path)
    _assert_same_run(tmp_path / "one", tmp_path / "four")
    _assert_same_weights(
        import_hf(tmp_path / "one" / "model").state_dict(),
        import_hf(tmp_path / "four" / "model").state_dict(),
    )
