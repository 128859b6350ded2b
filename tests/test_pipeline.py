"""Pipeline parallelism on CPU with gloo: `codekiln train` in pipeline stages (pp2 with
tensor or data parallelism on four ranks, pp2 alone on two) against one process with the
same global batch, the stage split under the model's own names, and the settings it
refuses before anything is allocated."""

from __future__ import annotations

import shutil

import pytest
import test_train
from test_parallel import _assert_same_run, _assert_same_weights, _cut_back, _settings, _torchrun

from codekiln.errors import UserError
from codekiln.model.config import ModelConfig
from codekiln.model.gpt import CodeGPT
from codekiln.model.hf import import_hf
from codekiln.train.checkpoint import load_checkpoint_weights
from codekiln.train.config import TrainConfig
from codekiln.train.loop import train
from codekiln.train.parallel import check_layout, mesh_shape
from codekiln.train.pipeline import split, stage_layers

packed = test_train.packed  # the fixture: a pack and its tokenizer
# Four layers, so that two pipeline ranks hold two blocks each (one each, interleaved).
FOUR_LAYERS = {**test_train.TINY, "n_head": 4, "n_layer": 4}


def _pipeline_settings(tokenizer, **extra) -> dict:
    """20 optimizer steps of 2 micro-batches; the one-process run accumulates the same."""
    return _settings(
        tokenizer,
        model_overrides=FOUR_LAYERS,
        max_steps=20,
        grad_accum=2,
        eval_every=10,
        checkpoint_every=0,
        **extra,
    )


@pytest.fixture(scope="module")
def one_process(packed, tmp_path_factory):
    """The reference: one process, batch 4, two micro-batches a step."""
    data, tokenizer = packed
    out = tmp_path_factory.mktemp("pp") / "one"
    train(data, out, TrainConfig(**_pipeline_settings(tokenizer)), progress=False)
    return out


def _check_against(one_process, run) -> None:
    """Same losses and norms per step; the same weights but for the key biases."""
    _assert_same_run(one_process, run)
    expected, actual = (import_hf(r / "model") for r in (one_process, run))
    config = expected.config
    _assert_same_weights(
        _without_key_bias(expected.state_dict(), config),
        _without_key_bias(actual.state_dict(), config),
    )


def _without_key_bias(state: dict, config) -> dict:
    """`state` with the key rows of each c_attn bias zeroed. Their true
    gradient is 0 (softmax ignores a constant added to every key), so AdamW moves them by
    about lr x the sign of rounding noise each step, and over 20 steps runs that sum in
    another order part by more than the 1e-3 allowed elsewhere."""
    keys = slice(config.n_embd, config.n_embd + config.kv_dim)
    for name, tensor in state.items():
        if name.endswith("attn.c_attn.bias"):
            tensor[keys] = 0
    return state


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("pp2xtp2", {"parallel": "fsdp+tp", "tp_size": 2}),  # dp 1: one replica of batch 4
        ("pp2xdp2", {"parallel": "fsdp", "batch_size": 2}),  # two replicas of batch 2
        ("pp2xdp2-ddp", {"parallel": "ddp", "batch_size": 2}),
        # Two stages a rank, each its own FSDP2 root; the rank's part holds both.
        (
            "pp2xdp2-interleaved",
            {"parallel": "fsdp", "batch_size": 2, "pp_schedule": "interleaved1f1b"},
        ),
        # Four stages: two in the middle, and the tied head summed over a pair of ranks.
        ("pp4", {"pp_size": 4, "pp_schedule": "gpipe"}),
    ],
)
def test_four_ranks_in_stages_match_one_process(packed, tmp_path, one_process, name, extra):
    """Four ranks as two pipeline stages (1F1B, 2 micro-batches) times two tensor- or
    data-parallel ranks, or as four stages: the same losses, gradient norms and validation
    losses per step as one process over 20 steps, and the same exported weights."""
    data, tokenizer = packed
    settings = {**_pipeline_settings(tokenizer), "pp_size": 2, **extra}
    _torchrun(4, data, tmp_path / name, settings, tmp_path)
    _check_against(one_process, tmp_path / name)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["gpipe", "interleaved1f1b"])
def test_two_stages_match_one_process(packed, tmp_path, one_process, schedule):
    """Two ranks, each a pipeline stage (GPipe) or two (interleaved 1F1B: stages 0 and 2 on
    rank 0, 1 and 3 on rank 1), with DDP's default and a checkpoint at the end."""
    data, tokenizer = packed
    settings = {**_pipeline_settings(tokenizer), "pp_size": 2, "pp_schedule": schedule}
    _torchrun(2, data, tmp_path / schedule, settings, tmp_path)
    _check_against(one_process, tmp_path / schedule)
    saved, expected = (
        load_checkpoint_weights(run / "checkpoints/step_20")
        for run in (tmp_path / schedule, one_process)
    )
    config = import_hf(one_process / "model").config
    _assert_same_weights(_without_key_bias(expected, config), _without_key_bias(saved, config))


def test_stages_keep_the_model_names():
    """Each stage holds exactly its layers under the model's own names; the last stage of a
    tied model holds the head as `wte.weight`, the first stage's name for it."""
    config = ModelConfig(vocab_size=96, n_positions=32, n_embd=32, n_layer=4, n_head=2)
    model = CodeGPT(config)
    names = list(model.state_dict())
    first, *_ = split(model, 0, 2, "1f1b")
    last, *_ = split(model, 1, 2, "1f1b")
    assert list(first.state_dict()) == [
        n for n in names if not n.startswith(("ln_f", "blocks.2", "blocks.3"))
    ]
    assert list(last.state_dict()) == [
        n for n in names if n.startswith(("wte", "blocks.2", "blocks.3", "ln_f"))
    ]
    part, stages, indices = split(model, 1, 2, "interleaved1f1b")
    assert indices == [1, 3]
    assert [list(s.blocks) for s in stages] == [["1"], ["3"]]
    assert {n.split(".")[0] for n in part.state_dict()} == {"wte", "blocks", "ln_f"}
    assert sorted({n.split(".")[1] for n in part.state_dict() if n[0] == "b"}) == ["1", "3"]
    untied = CodeGPT(ModelConfig(**{**config.__dict__, "tie_embeddings": False}))
    head, *_ = split(untied, 1, 2, "1f1b")
    assert "lm_head.weight" in head.state_dict() and "wte.weight" not in head.state_dict()


def test_refuses_what_does_not_split():
    """One line each, from the config or before the model is allocated."""
    config = ModelConfig(vocab_size=96, n_positions=32, n_embd=32, n_layer=4, n_head=2)
    errors = []
    with pytest.raises(UserError, match="divisible by 2, got 3") as excinfo:
        mesh_shape("ddp", 3, pp_size=2)
    errors.append(excinfo)
    with pytest.raises(UserError, match="n_layer divisible by its 8 stages") as excinfo:
        check_layout(config, TrainConfig(pp_size=8, grad_accum=8), 8)
    errors.append(excinfo)
    with pytest.raises(UserError, match="n_layer divisible by its 8 stages") as excinfo:
        check_layout(config, TrainConfig(pp_size=4, grad_accum=4, pp_schedule="interleaved1f1b"), 4)
    errors.append(excinfo)
    with pytest.raises(UserError, match="set grad_accum >= 4") as excinfo:
        TrainConfig(pp_size=4, grad_accum=2)
    errors.append(excinfo)
    with pytest.raises(UserError, match=r"pp_size \(4\) or below 8, got 9") as excinfo:
        TrainConfig(pp_size=4, grad_accum=9, pp_schedule="interleaved1f1b")
    errors.append(excinfo)
    with pytest.raises(UserError, match="pp_schedule must be one of") as excinfo:
        TrainConfig(pp_schedule="zero-bubble")
    errors.append(excinfo)
    with pytest.raises(UserError, match="tp_size that divides the 2 processes of a") as excinfo:
        mesh_shape("fsdp+tp", 4, tp_size=4, pp_size=2)
    errors.append(excinfo)
    assert all("\n" not in str(e.value) for e in errors)
    TrainConfig(pp_size=4, grad_accum=1, pp_schedule="gpipe")  # GPipe takes any number
    check_layout(config, TrainConfig(pp_size=2, grad_accum=2, parallel="fsdp+tp", tp_size=2), 8)
    assert mesh_shape("fsdp+tp", 8, tp_size=2, pp_size=2) == (2, 2, 2)
    assert stage_layers(4, 2) == [range(0, 2), range(2, 4)]


@pytest.mark.slow
def test_a_pipeline_checkpoint_resumes_in_one_process(packed, tmp_path):
    """A 1F1B run on two ranks, cut after its step-2 checkpoint (gathered from both stages)
    and resumed in one process (which ignores the layout): the same run to the end."""
    data, tokenizer = packed
    settings = _settings(
        tokenizer, model_overrides=FOUR_LAYERS, grad_accum=2, pp_size=2, checkpoint_every=2
    )
    two = tmp_path / "two"
    _torchrun(2, data, two, settings, tmp_path)
    cut = _cut_back(two, tmp_path / "cut", 2, 4)
    staged = tmp_path / "staged"
    shutil.copytree(cut, staged)
    assert train(data, cut, None, resume=True, progress=False).steps == 4
    _assert_same_run(two, cut)
    _assert_same_weights(
        import_hf(two / "model").state_dict(), import_hf(cut / "model").state_dict()
    )
    # And in two stages again: each loads its own entries (the tied head included).
    _torchrun(2, data, staged, {}, tmp_path, script=RESUME)
    _assert_same_run(two, staged)
    _assert_same_weights(
        import_hf(two / "model").state_dict(), import_hf(staged / "model").state_dict()
    )
    plain = CodeGPT(import_hf(two / "model").config).state_dict()
    saved = load_checkpoint_weights(two / "checkpoints/step_2")
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in plain.items()}


RESUME = """
import sys
from codekiln.train.loop import train
train(sys.argv[1], sys.argv[2], None, resume=True, progress=False)
"""
