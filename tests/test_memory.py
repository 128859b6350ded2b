"""What a rank holds: the meta-device start (each rank fills only its shards, from the seed or
init_from, and gets exactly one process's weights), FSDP2's gradients across accumulation
micro-steps, and the memory estimate against peaks measured on the CPU."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import cli_here
from test_parallel import _free_port

from codekiln.model.config import ModelConfig
from codekiln.model.gpt import CodeGPT
from codekiln.model.hf import export_hf, import_hf
from codekiln.train.materialise import INIT_FROM, SEED, materialise
from codekiln.train.parallel import Distributed, gradient_sync, parallelize
from codekiln.train.state_dicts import full_model_state

# Multi-query (K/V replicated under tp) with an odd position table (FSDP2 pads its shards),
# multi-head gpt_bigcode (per-head q/k/v in its files), and starcoder2 with grouped-query
# attention (separate q/k/v tensors filling rows of our fused c_attn).
MODELS = [
    {"n_kv_heads": 1, "n_positions": 33},
    {"n_kv_heads": 4},
    {"n_kv_heads": 2, "position": "rotary"},
]
BASE = {"vocab_size": 96, "n_positions": 32, "n_embd": 64, "n_layer": 2, "n_head": 4}


def _config(overrides: dict) -> ModelConfig:
    return ModelConfig(**{**BASE, **overrides})


def _group(rank: int, world_size: int, port: int) -> Distributed:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    return Distributed(rank, world_size)


def _end_group() -> None:
    dist.barrier()  # no rank tears gloo down while its peer still talks to it
    dist.destroy_process_group()


def _sharded(config: ModelConfig, distributed: Distributed, parallel: str, **source):
    """A model built on meta, parallelised, then materialised from `source`."""
    with torch.device("meta"):
        model = CodeGPT(config)
    fill = functools.partial(materialise, model_config=config, device=torch.device("cpu"), **source)
    return parallelize(model, distributed, parallel=parallel, materialise=fill)


def _local_elements(model: torch.nn.Module) -> int:
    return sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in model.parameters())


def _meta_start(rank: int, world_size: int, port: int, folders: list[str]) -> None:
    distributed = _group(rank, world_size, port)
    try:
        for overrides, folder in zip(MODELS, folders, strict=True):
            config = _config(overrides)
            one = CodeGPT(config)
            one.init_weights(seed=7)
            expected = {SEED: one.state_dict(), INIT_FROM: import_hf(folder).state_dict()}
            for parallel in ("fsdp", "tp"):
                for weights, extra in ((SEED, {"seed": 7}), (INIT_FROM, {"init_from": folder})):
                    model = _sharded(config, distributed, parallel, weights=weights, **extra)
                    state = full_model_state(model)
                    what = f"{parallel} from {weights}, {overrides}"
                    if rank == 0:
                        assert list(state) == list(expected[weights]), what
                        for name, tensor in expected[weights].items():
                            assert torch.equal(state[name], tensor), f"{what}: {name}"
                    if parallel == "fsdp":  # each rank holds about half the elements
                        total = sum(t.numel() for t in one.parameters())
                        assert _local_elements(model) <= 0.52 * total, what
    finally:
        _end_group()


@pytest.mark.slow
def test_sharded_start_equals_one_process_init(tmp_path):
    """fsdp and tp on 2 ranks, built on meta and filled shard by shard from the seed or from
    a Hugging Face folder, hold exactly the weights one process gets from init_weights(seed)
    or import_hf."""
    folders = []
    for index, overrides in enumerate(MODELS):
        torch.manual_seed(index)
        folders.append(str(export_hf(CodeGPT(_config(overrides)), tmp_path / f"hf{index}")))
    mp.spawn(_meta_start, args=(2, _free_port(), folders), nprocs=2)


def _held_gradient_elements(model: torch.nn.Module) -> int:
    """Gradient elements this rank holds: its parameters' (local) gradients plus the
    unsharded gradients FSDP2 keeps while it does not reduce them."""
    from torch.distributed.fsdp import FSDPModule

    held = sum(
        (p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad).numel()
        for p in model.parameters()
        if p.grad is not None
    )
    for module in model.modules():
        if not isinstance(module, FSDPModule):
            continue
        for group in module._get_fsdp_state()._fsdp_param_groups:
            for param in group.fsdp_params:
                if param.unsharded_accumulated_grad is not None:
                    held += param.unsharded_accumulated_grad.numel()
                unsharded = getattr(param, "_unsharded_param", None)
                if unsharded is not None and unsharded.grad is not None:
                    held += unsharded.grad.numel()
    return held


def _accumulation(rank: int, world_size: int, port: int) -> None:
    distributed = _group(rank, world_size, port)
    try:
        config = _config({})
        total = sum(p.numel() for p in CodeGPT(config).parameters())
        torch.manual_seed(rank)
        batches = [torch.randint(0, config.vocab_size, (2, 17)) for _ in range(2)]
        grads = {}
        for mode in ("every_microstep", "last_microstep"):
            model = _sharded(config, distributed, "fsdp", weights=SEED, seed=3)
            for index, batch in enumerate(batches):
                with gradient_sync(model, index == len(batches) - 1, mode):
                    _, loss = model(batch[:, :-1], labels=batch[:, 1:])
                    (loss / len(batches)).backward()
                if index == 0:
                    held = _held_gradient_elements(model)
                    if mode == "every_microstep":  # a shard: about half the model each
                        assert 0.45 * total <= held <= 0.52 * total, (held, total)
                    else:  # FSDP2 keeps the whole unsharded gradient until the last
                        assert held >= total, (held, total)
            grads[mode] = {n: p.grad.full_tensor() for n, p in model.named_parameters()}
        # Both reductions give the same gradients after the last micro-step.
        for name, grad in grads["every_microstep"].items():
            torch.testing.assert_close(grads["last_microstep"][name], grad, msg=name)
    finally:
        _end_group()


@pytest.mark.slow
def test_fsdp_gradients_stay_sharded_across_micro_steps():
    """2 ranks under fsdp: after a non-final micro-step each holds about half the model's
    gradient elements by default, the whole with fsdp_grad_sync=last_microstep."""
    mp.spawn(_accumulation, args=(2, _free_port()), nprocs=2)


# One process measures its own peak: the resident memory's high-water mark (VmHWM) less its
# resident memory once kernels are loaded (a tiny model's step first: the first matmuls,
# attention and AdamW step load code and per-thread buffers, tens of MB whatever the model).
MEASURE = """
import json, sys
import torch
from codekiln.model.config import ModelConfig, preset
from codekiln.model.gpt import CodeGPT
from codekiln.train.config import TrainConfig
from codekiln.train.step import optimizer_step
from codekiln.train.materialise import SEED, materialise
from codekiln.train.memory import reuse_freed_memory
from codekiln.train.optim import build_optimizer
from codekiln.train.parallel import init_distributed, parallelize


def resident(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024


def step(model, optimizer, tokens):
    optimizer_step(model, optimizer, [(tokens[:, :-1], tokens[:, 1:])], 1e-4, 1.0)


torch.set_num_threads(1)
reuse_freed_memory()  # as `codekiln train` does on a CPU
distributed = init_distributed()  # one process, or a rank under torchrun
config = TrainConfig(**json.loads(sys.argv[1])).resolved("none")
warm = CodeGPT(ModelConfig(vocab_size=64, n_positions=16, n_embd=32, n_layer=1, n_head=2))
step(warm, build_optimizer(warm, config, torch.device("cpu")), torch.randint(0, 64, (1, 17)))
del warm
model_config = preset(config.model)
shape = (config.batch_size, config.seq_len + 1)
tokens = torch.randint(0, model_config.vocab_size, shape)
base = resident("VmRSS")
with torch.device("meta"):
    model = CodeGPT(model_config)
fill = lambda m: materialise(m, model_config, torch.device("cpu"), SEED, config.seed)
model = parallelize(
    model,
    distributed,
    activation_checkpointing=config.activation_checkpointing,
    parallel=config.parallel,
    materialise=fill,
)
optimizer = build_optimizer(model, config, torch.device("cpu"))
for _ in range(2):  # the second step holds AdamW's moments from the start
    step(model, optimizer, tokens)
print(resident("VmHWM") - base, flush=True)
if distributed.active:
    import torch.distributed as dist

    dist.barrier()
    dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings",
    [
        {"model": "tiny", "seq_len": 512, "batch_size": 4},
        {"model": "small", "seq_len": 256, "batch_size": 2},
        {"model": "small", "seq_len": 256, "batch_size": 2, "activation_checkpointing": True},
        {"model": "small", "seq_len": 256, "batch_size": 2, "parallel": "fsdp"},
    ],
    ids=["tiny", "small", "small-checkpointing", "small-fsdp-2-ranks"],
)
def test_estimate_is_within_20_percent_of_the_measured_peak(settings, tmp_path):
    """float32, two optimizer steps, in one process or (fsdp) on two gloo ranks: the estimate
    of weights, gradients, AdamW's moments and activations (with and without activation
    checkpointing; FSDP2's gathered blocks and collective buffers) against the peak resident
    memory the steps added, on the rank that added most."""
    from codekiln.model.config import preset
    from codekiln.train.config import TrainConfig
    from codekiln.train.memory import estimate_memory

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    ranks = 2 if settings.get("parallel") == "fsdp" else 1
    if ranks > 1:
        # What the ranks hold, not what glibc keeps: FSDP2's many differently sized buffers
        # fragment a heap that never returns memory (reuse_freed_memory), and the peak then
        # creeps up by a few hundred MB a step on top of what is live.
        env["CODEKILN_KEEP_FREED_MEMORY"] = "0"
        script = tmp_path / "measure.py"
        script.write_text(MEASURE)
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command += ["--nproc_per_node", str(ranks), str(script)]
    else:
        command = [sys.executable, "-c", MEASURE]

    def measure() -> int:
        run = subprocess.run(
            [*command, json.dumps(settings)], capture_output=True, text=True, timeout=600, env=env
        )
        assert run.returncode == 0, run.stderr[-3000:]
        return max(int(line) for line in run.stdout.split() if line.isdigit())  # any rank

    config = TrainConfig(**settings).resolved("none")
    need = estimate_memory(preset(config.model), config, torch.float32, ranks, None, "cpu")
    estimate = need["states"] + need["activations"]
    measured = measure()
    if estimate < 0.8 * measured:
        # The allocator can only add to a peak (a fragmented heap, a thread pool's arenas),
        # never take from what is live: one CI run measured the tiny case 20% high where
        # repeats give 5-10%. The lower of two peaks is the better measurement.
        measured = min(measured, measure())
    print(f"estimate / measured: {estimate / measured:.2f}")
    assert 0.8 * measured <= estimate <= 1.2 * measured, (estimate, measured, need)


def test_the_estimate_counts_each_layout_s_share():
    """What each mode holds per rank, by the estimator's own terms: FSDP divides weights,
    gradients and AdamW state over the data-parallel ranks (unless last_microstep keeps the
    whole gradient), tensor parallelism divides the blocks, a pipeline stage holds its
    blocks, and start-up needs the shards plus one parameter, never the whole model."""
    from codekiln.model.config import preset
    from codekiln.train.config import TrainConfig
    from codekiln.train.memory import estimate_memory

    model = preset("1b")
    one = estimate_memory(model, TrainConfig(model="1b"), torch.float32)
    assert one["weights"] == one["gradients"] == one["optimizer"] // 2 == one["params"] * 4
    ddp = estimate_memory(model, TrainConfig(model="1b"), torch.float32, world_size=4)
    assert ddp["gradients"] == 2 * one["gradients"]  # DDP's buckets
    fsdp = estimate_memory(model, TrainConfig(model="1b", parallel="fsdp"), torch.float32, 4)
    assert fsdp["optimizer"] == one["optimizer"] // 4
    # A quarter, plus the gathered blocks, the unsharded root (embeddings) and its all-gather
    # buffer: at 1b the root is 9% of the model.
    assert one["weights"] / 4 < fsdp["weights"] < 0.6 * one["weights"]
    assert fsdp["startup"] < one["weights"] / 2  # shards + the embedding, not the model
    whole = TrainConfig(model="1b", parallel="fsdp", grad_accum=4, fsdp_grad_sync="last_microstep")
    kept = estimate_memory(model, whole, torch.float32, 4)
    assert kept["gradients"] - fsdp["gradients"] == one["gradients"]
    tp = estimate_memory(model, TrainConfig(model="1b", parallel="tp"), torch.float32, 4)
    assert one["weights"] / 4 < tp["weights"] < one["weights"] / 2  # embeddings replicated
    assert tp["activations"] < one["activations"]
    checkpointed = TrainConfig(model="1b", activation_checkpointing=True)
    assert estimate_memory(model, checkpointed, torch.float32)["activations"] < (
        one["activations"] / 2
    )


def _memory_command(*args: str) -> subprocess.CompletedProcess:
    return cli_here("memory", *args, columns=200)


def test_memory_command_prints_one_rank_of_the_starcoder_layout():
    """`codekiln memory` for StarCoder's TP 4 x PP 4 x DP 32 at 8K: the layout, every term,
    and whether it fits an 80 GB GPU; checkpointing halves the activations' share there."""
    recipe = [
        "--nproc", "512", "--set", "model=15b", "--set", "seq_len=8192",
        "--set", "batch_size=1", "--set", "grad_accum=16", "--set", "pp_size=4",
        "--set", "parallel=fsdp+tp", "--set", "tp_size=4", "--device-gib", "80",
    ]  # fmt: skip
    plain = _memory_command(*recipe)
    assert plain.returncode == 0, plain.stderr
    assert "pp 4 x dp 32 (fsdp) x tp 4" in plain.stdout
    assert "fits a 80 GiB device" in plain.stdout

    def peak(out: str) -> float:
        row = [line for line in out.splitlines() if line.count("│") == 7][-1]
        return float(row.split("│")[-2].replace(",", ""))

    checkpointed = _memory_command(*recipe, "--set", "activation_checkpointing=true")
    assert peak(checkpointed.stdout) < peak(plain.stdout) < 80
    gpipe = _memory_command(*recipe, "--set", "pp_schedule=gpipe", "--device-gib", "40")
    assert "does not fit a 40 GiB device" in gpipe.stdout and "1f1b" in gpipe.stdout


@pytest.mark.parametrize(
    "sets, message",
    [
        (["parallel=fsdp+tp", "tp_size=3"], "tp_size that divides"),
        (["pp_size=3", "grad_accum=3"], "divisible by 3"),
        (["pp_size=8", "grad_accum=8", "model=small"], "n_layer divisible by its 8 stages"),
    ],
)
def test_memory_command_refuses_a_layout_that_does_not_split(sets, message):
    args = [item for pair in (("--set", s) for s in sets) for item in pair]
    result = _memory_command("--nproc", "8", *args)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
