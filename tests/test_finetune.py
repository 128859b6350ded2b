"""Fine-tuning the open code models, end to end and offline: transformers-made StarCoder2 and
GPT-BigCode folders (random weights, tokenizers with each family's real special tokens) in
every weight layout -> pack with the model's own tokenizer -> full and LoRA fine-tuning ->
export -> transformers and peft load the results with our logits. Also: mismatched packs,
resume semantics, instruction tuning's loss mask, the license on the card, bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    cli_here,
    hf_gpt_bigcode,
    hf_starcoder2,
    save_hf_tokenizer,
    small_bpe,
    write_curated,
)

from codekiln.errors import UserError
from codekiln.model.hf import import_hf
from codekiln.model.lora import load_adapter
from codekiln.pack.pack import PackConfig, pack
from codekiln.tokenizer.special import SPECIAL_TOKENS, STARCODER2_SPECIAL_TOKENS
from codekiln.train.checkpoint import load_checkpoint_weights
from codekiln.train.config import TrainConfig
from codekiln.train.loop import train
from codekiln.train.metrics import read_metrics

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

SNIPPETS = [
    "def add(a, b):\n    return a + b\n",
    "def scale(values, factor):\n    return [v * factor for v in values]\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "for i in range(10):\n    print(i, i * i)\n",
    "import os\n\n\ndef names(root):\n    return sorted(os.listdir(root))\n",
]
FAMILY_TOKENS = {"gpt_bigcode": SPECIAL_TOKENS, "starcoder2": STARCODER2_SPECIAL_TOKENS}
SMALL = {"seq_len": 32, "batch_size": 2, "eval_every": 0, "eval_batches": 2, "log_every": 1}
SMALL |= {"checkpoint_every": 0, "peak_flops": 1e11, "seed": 3}


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def curated(folder: Path) -> Path:
    """A curated folder: 40 Python files in 8 repositories."""
    records = [
        {
            "id": f"{i:08x}",
            "content": SNIPPETS[i % 5] * 4 + SNIPPETS[(i + 2) % 5],
            "repo": f"owner/repo{i % 8}",
            "path": f"pkg/mod{i}.py",
            "lang": "Python",
            "stars": i,
        }
        for i in range(40)
    ]
    return write_curated(folder, records)


def tokenizer_folder(folder: Path, kind: str, vocab_size: int = 400, seed_text: str = "") -> Path:
    """A byte-level BPE with the family's real special tokens, saved as transformers saves a
    model's tokenizer."""
    tokenizer = small_bpe([seed_text + s for s in SNIPPETS * 4], FAMILY_TOKENS[kind], vocab_size)
    return save_hf_tokenizer(tokenizer, folder)


def base_model(folder: Path, kind: str, layout: str, vocab_size: int) -> Path:
    """A random transformers model of the family in `layout`, with its tokenizer and a card
    that names BigCode OpenRAIL-M."""
    if kind == "starcoder2":
        dropouts = ("attention_dropout", "residual_dropout", "embedding_dropout")
        model = hf_starcoder2(
            vocab_size=vocab_size,
            sliding_window=16,
            rope_theta=999999.4420358813,
            **dict.fromkeys(dropouts, 0.1),
        )
    else:
        model = hf_gpt_bigcode(vocab_size=vocab_size)
    if layout == "single":
        model.save_pretrained(folder)
    elif layout == "sharded":
        model.save_pretrained(folder, max_shard_size="100KB")
        assert (folder / "model.safetensors.index.json").exists()
    else:
        model.config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "README.md").write_text("---\nlicense: bigcode-openrail-m\n---\n# base\n")
    tokenizer_folder(folder, kind)
    return folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finetune")
    curated(root / "curated")
    return root


def model_and_pack(workspace: Path, kind: str, layout: str) -> tuple[Path, Path]:
    """(model folder, pack made with its tokenizer), made once per kind and layout."""
    model_dir = workspace / f"{kind}-{layout}"
    tokens = workspace / f"{kind}-{layout}-tokens"
    if not tokens.exists():
        from codekiln.tokenizer.family import load_any_tokenizer

        probe = tokenizer_folder(workspace / f"probe-{kind}-{layout}", kind)
        vocab = load_any_tokenizer(probe).get_vocab_size()
        base_model(model_dir, kind, layout, vocab)
        pack(
            workspace / "curated", model_dir, tokens, PackConfig(valid_fraction=0.2), progress=False
        )
    return model_dir, tokens


def logits(model, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        if hasattr(model, "config") and hasattr(model, "blocks"):
            return model.eval()(tokens)[0]
        return model.eval()(tokens).logits


def sample(vocab: int, length: int = 40) -> torch.Tensor:
    return torch.randint(0, vocab, (2, length), generator=torch.Generator().manual_seed(11))


CASES = [("starcoder2", "sharded"), ("gpt_bigcode", "bin"), ("gpt_bigcode", "single")]


@pytest.mark.parametrize("kind,layout", CASES)
def test_full_fine_tuning_exports_a_model_transformers_loads_with_our_logits(
    workspace, tmp_path, kind, layout
):
    model_dir, tokens = model_and_pack(workspace, kind, layout)
    meta = json.loads((tokens / "meta.json").read_text())
    family = {"gpt_bigcode": "starcoder", "starcoder2": "starcoder2"}[kind]
    assert meta["format"]["family"] == family
    result = train(
        tokens,
        tmp_path / "run",
        TrainConfig(init_from=str(model_dir), max_steps=3, **SMALL),
        progress=False,
    )
    assert result.steps == 3 and result.model_dir is not None
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert all(loss == loss for loss in losses)
    exported = json.loads((result.model_dir / "config.json").read_text())
    base = json.loads((model_dir / "config.json").read_text())
    if kind == "starcoder2":
        assert exported["max_position_embeddings"] == 16384
        assert exported["sliding_window"] == 16
        assert exported["rope_theta"] == base["rope_parameters"]["rope_theta"]
        # Trained without dropout (a fine-tuning default), exported with the base's.
        assert exported["residual_dropout"] == exported["attention_dropout"] == 0.1
    reference = transformers.AutoModelForCausalLM.from_pretrained(result.model_dir)
    ours = import_hf(result.model_dir)
    tokens_in = sample(exported["vocab_size"])
    torch.testing.assert_close(
        logits(ours, tokens_in), logits(reference, tokens_in), atol=1e-5, rtol=0
    )
    # It learned: the weights moved away from the base's.
    assert not torch.allclose(logits(ours, tokens_in), logits(import_hf(model_dir), tokens_in))
    card = (result.model_dir / "README.md").read_text()
    assert 'license: "bigcode-openrail-m"' in card and str(model_dir) in card


def test_model_overrides_may_set_the_dropouts_of_an_imported_model(workspace, tmp_path):
    model_dir, tokens = model_and_pack(workspace, "starcoder2", "sharded")
    config = TrainConfig(
        init_from=str(model_dir), model_overrides={"dropout": 0.05}, max_steps=1, **SMALL
    )
    state = json.loads(
        (
            train(tokens, tmp_path / "run", config, progress=False).out_dir / "manifest.json"
        ).read_text()
    )["model_config"]
    assert (state["dropout"], state["attn_dropout"], state["embd_dropout"]) == (0.05, None, None)
    exported = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    # `dropout` is every dropout that is not set on its own (ModelConfig), trained and exported.
    assert exported["residual_dropout"] == exported["attention_dropout"] == 0.05
    assert exported["embedding_dropout"] == 0.05


@pytest.mark.parametrize("kind,layout", [("starcoder2", "sharded"), ("gpt_bigcode", "single")])
def test_lora_adapter_loads_in_peft_and_merges(workspace, tmp_path, kind, layout):
    model_dir, tokens = model_and_pack(workspace, kind, layout)
    config = TrainConfig(
        init_from=str(model_dir), lora=True, lora_rank=4, merge=True, max_steps=4, **SMALL
    )
    result = train(tokens, tmp_path / "run", config, progress=False)
    adapter = result.adapter_dir
    assert (adapter / "adapter_config.json").exists()
    assert (adapter / "adapter_model.safetensors").exists()
    base = transformers.AutoModelForCausalLM.from_pretrained(model_dir)
    reference = peft.PeftModel.from_pretrained(base, adapter)
    ours = import_hf(model_dir).float()
    load_adapter(ours, kind, adapter)
    tokens_in = sample(base.config.vocab_size)
    theirs = logits(reference, tokens_in)
    torch.testing.assert_close(logits(ours, tokens_in), theirs, atol=1e-5, rtol=0)
    assert not torch.allclose(theirs, logits(import_hf(model_dir), tokens_in))  # it learned
    merged = transformers.AutoModelForCausalLM.from_pretrained(result.model_dir)
    torch.testing.assert_close(logits(merged, tokens_in), theirs, atol=1e-4, rtol=0)
    checkpoint = next((tmp_path / "run" / "checkpoints").glob("step_*"))
    saved = load_checkpoint_weights(checkpoint)
    assert saved and all(".lora_" in name for name in saved)  # adapters only
    # eval and serve take the adapter folder: it is merged onto its base as it loads.
    from codekiln.generate import load_backend

    backend = load_backend(adapter, engine="auto")
    torch.testing.assert_close(logits(backend.model, tokens_in), theirs, atol=1e-4, rtol=0)


def test_an_adapter_for_another_base_is_one_line(workspace, tmp_path):
    model_dir, tokens = model_and_pack(workspace, "starcoder2", "sharded")
    other, _ = model_and_pack(workspace, "gpt_bigcode", "single")
    config = TrainConfig(init_from=str(model_dir), lora=True, max_steps=1, **SMALL)
    adapter = train(tokens, tmp_path / "run", config, progress=False).adapter_dir
    settings = json.loads((adapter / "adapter_config.json").read_text())
    settings["base_model_name_or_path"] = str(other)
    (adapter / "adapter_config.json").write_text(json.dumps(settings))
    eval_args = ["--tasks", "humaneval", "--limit", "1", "--generate-only"]
    done = cli_here("eval", str(adapter), *eval_args, "-o", str(tmp_path / "eval"))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "another base model" in lines[0], done.stderr


@pytest.mark.slow
def test_lora_resumes_exactly(workspace, tmp_path):
    """A LoRA run stopped by the clock after one step and resumed gives the losses of a run
    that never stopped (the base is read from init_from again, the adapters and the optimizer
    from the checkpoint)."""
    model_dir, tokens = model_and_pack(workspace, "starcoder2", "sharded")
    settings = {**SMALL, "lora_dropout": 0.1}  # the RNG state must resume too
    config = TrainConfig(init_from=str(model_dir), lora=True, max_steps=4, **settings)
    train(tokens, tmp_path / "whole", config, progress=False)
    stopped = TrainConfig(
        init_from=str(model_dir), lora=True, max_steps=4, max_minutes=1e-6, **settings
    )
    assert train(tokens, tmp_path / "parts", stopped, progress=False).steps == 1
    train(tokens, tmp_path / "parts", None, resume=True, progress=False)

    def losses(run):
        return [r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]

    assert len(losses(tmp_path / "whole")) == 4
    assert losses(tmp_path / "parts") == losses(tmp_path / "whole")
    # `codekiln export` of the LoRA checkpoint: the run's own adapter, and with merge the
    # base with it merged in (the run itself did not merge).
    from safetensors.torch import load_file

    from codekiln.train.export import export_run

    exported = export_run(tmp_path / "parts", output=tmp_path / "exported", merge=True)
    assert exported.adapter_dir == tmp_path / "exported" / "adapter"
    ours = load_file(exported.adapter_dir / "adapter_model.safetensors")
    theirs = load_file(tmp_path / "parts" / "adapter" / "adapter_model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert (exported.model_dir / "config.json").is_file()
    assert not (tmp_path / "parts" / "model").exists()


def test_bfloat16_base_trains_adapters_in_float32(workspace, tmp_path):
    model_dir, tokens = model_and_pack(workspace, "gpt_bigcode", "single")
    config = TrainConfig(
        init_from=str(model_dir),
        lora=True,
        base_dtype="bfloat16",
        activation_checkpointing=True,
        max_steps=2,
        **SMALL,
    )
    result = train(tokens, tmp_path / "run", config, progress=False)
    reference = peft.PeftModel.from_pretrained(
        transformers.AutoModelForCausalLM.from_pretrained(model_dir), result.adapter_dir
    )
    assert reference is not None
    with pytest.raises(UserError, match="bfloat16 base .* computes in bfloat16"):
        bad = TrainConfig(
            init_from=str(model_dir), lora=True, base_dtype="bfloat16", dtype="float32", **SMALL
        )
        train(tokens, tmp_path / "bad", bad, progress=False)


def test_a_pack_made_with_another_tokenizer_is_refused(workspace, tmp_path):
    model_dir, _ = model_and_pack(workspace, "starcoder2", "sharded")
    # Another tokenizer of the same family and the same vocabulary size: other ids.
    other = tokenizer_folder(tmp_path / "other", "starcoder2", seed_text="# other corpus\n")
    tokens = tmp_path / "tokens"
    pack(workspace / "curated", other, tokens, PackConfig(valid_fraction=0.2), progress=False)
    config = TrainConfig(init_from=str(model_dir), max_steps=2, **SMALL)
    with pytest.raises(UserError) as excinfo:
        train(tokens, tmp_path / "run", config, progress=False)
    message = one_line(excinfo)
    assert str(model_dir) in message and str(tokens) in message and "pack" in message


@pytest.mark.slow
def test_resume_keeps_the_checkpoint_settings(workspace, tmp_path):
    model_dir, tokens = model_and_pack(workspace, "gpt_bigcode", "single")
    out = tmp_path / "run"
    config = TrainConfig(init_from=str(model_dir), lr=1e-3, max_steps=3, max_minutes=1e-6, **SMALL)
    first = train(tokens, out, config, progress=False)
    assert first.steps == 1  # stopped by the clock
    with pytest.raises(UserError, match=r"lr \(0.001 -> 0.0005\) cannot change") as excinfo:
        train(tokens, out, None, resume=True, progress=False, changes={"lr": 5e-4})
    one_line(excinfo)
    # The earlier --max-minutes is not applied again; max_steps may grow.
    result = train(tokens, out, None, resume=True, progress=False, changes={"max_steps": 5})
    assert result.steps == 5 and result.resumed_changes == {"max_steps": (3, 5)}
    state = json.loads((out / "checkpoints" / "step_5" / "state.json").read_text())
    assert state["config"]["lr"] == 1e-3 and state["config"]["max_minutes"] is None


@pytest.mark.slow
def test_cli_fine_tunes_with_lora_and_resume_prints_what_changed(workspace, tmp_path):
    model_dir, tokens = model_and_pack(workspace, "starcoder2", "sharded")
    out = tmp_path / "run"

    def cli(*args):
        return cli_here("train", *args, columns=200)

    sets = [f"--set={k}={v}" for k, v in SMALL.items()]
    done = cli(
        "--data",
        str(tokens),
        "--init-from",
        str(model_dir),
        "--lora",
        "-o",
        str(out),
        "--set=max_steps=2",
        "-q",
        *sets,
    )
    assert done.returncode == 0, done.stderr
    assert "adapter (peft)" in done.stdout
    again = cli("--data", str(tokens), "-o", str(out), "--resume", "--set=max_steps=3")
    assert again.returncode == 0, again.stderr
    assert "max_steps 2 -> 3" in again.stderr
    refused = cli("--data", str(tokens), "-o", str(out), "--resume", "--set=lora_rank=16")
    assert refused.returncode == 2 and "lora_rank (8 -> 16) cannot change" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_instruction_tuning_trains_on_completions(workspace, tmp_path):
    model_dir, _ = model_and_pack(workspace, "starcoder2", "sharded")
    pairs = tmp_path / "pairs.jsonl"
    with pairs.open("w") as handle:
        for i in range(40):
            prompt = f"Write a function that adds {i} to x.\n"
            handle.write(json.dumps({"prompt": prompt, "completion": SNIPPETS[i % 5]}) + "\n")
    config = TrainConfig(init_from=str(model_dir), sft=True, max_steps=3, **SMALL)
    result = train(pairs, tmp_path / "run", config, progress=False)
    assert result.steps == 3 and result.model_dir is not None
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["fim_rate"] == 0.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    with pytest.raises(UserError, match="line 1") as excinfo:
        train(bad, tmp_path / "bad", config, progress=False)
    one_line(excinfo)


def test_the_completion_only_loss_ignores_prompt_labels(workspace):
    """Packed pairs: the labels the loader gives are the next tokens on completion positions
    only; whatever the prompt positions' labels were, the loss's gradient is the same, while
    changing one completion label changes it; and no pair attends to another (a pair's
    logits are the same packed with others as alone)."""
    from codekiln.tokenizer.family import load_any_tokenizer
    from codekiln.train.sft import SftLoader, SftLoaderConfig
    from codekiln.train.sft_layout import encode_pairs
    from codekiln.train.sft_pairs import Pair

    model_dir, _ = model_and_pack(workspace, "starcoder2", "sharded")
    tokenizer = load_any_tokenizer(model_dir)
    pairs = [Pair(f"Question {i}: add?\n", SNIPPETS[i % 5]) for i in range(8)]
    encoded = encode_pairs(pairs, tokenizer)
    config = SftLoaderConfig(seq_len=96, batch_size=1, seed=0, valid_fraction=0.0)
    batch = SftLoader(encoded, 0, config).batch(0, 0)
    segments = batch.segment_ids[0]
    assert len(set(segments.tolist()) - {-1}) >= 2  # several pairs in the row
    model = import_hf(model_dir).float().eval()  # eval: no dropout, comparable gradients
    inputs = {
        "input_ids": torch.from_numpy(batch.input_ids),
        "segment_ids": torch.from_numpy(batch.segment_ids),
        "position_ids": torch.from_numpy(batch.position_ids),
    }

    def gradient(labels) -> torch.Tensor:
        model.zero_grad()
        _, loss = model(**inputs, labels=torch.from_numpy(labels))
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    completion = batch.labels != -100  # the loader's mask: completion positions only
    following = batch.input_ids[:, 1:]
    assert (batch.labels[:, :-1][completion[:, :-1]] == following[completion[:, :-1]]).all()
    prompt = ~completion & (batch.segment_ids >= 0)
    assert prompt.any() and completion.any()

    def completion_only(labels: np.ndarray) -> torch.Tensor:
        return gradient(np.where(completion, labels, -100))

    base = gradient(batch.labels)
    for seed in range(2):  # whatever the prompt positions' labels are
        other = np.random.default_rng(seed).integers(0, 100, batch.labels.shape)
        torch.testing.assert_close(completion_only(np.where(prompt, other, batch.labels)), base)
    moved = batch.labels.copy()
    row, column = (int(i[0]) for i in completion.nonzero())
    moved[row, column] = (moved[row, column] + 1) % 100
    assert not torch.allclose(completion_only(moved), base)

    with torch.no_grad():
        packed = model(**inputs)[0][0]
        second = segments == 1
        alone = model(torch.from_numpy(batch.input_ids[0][second])[None])[0][0]
    torch.testing.assert_close(packed[torch.from_numpy(second)], alone, atol=1e-5, rtol=0)


def test_bad_model_folders_and_architectures_are_one_line(workspace, tmp_path):
    _, tokens = model_and_pack(workspace, "starcoder2", "sharded")
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    for folder, fragment in [
        (not_a_model, "no config.json"),
        (tmp_path / "missing", "no config.json"),
    ]:
        with pytest.raises(UserError, match=fragment) as excinfo:
            train(tokens, tmp_path / "run", TrainConfig(init_from=str(folder), **SMALL))
        one_line(excinfo)
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UserError, match="gpt_bigcode and starcoder2") as excinfo:
        train(tokens, tmp_path / "run", TrainConfig(init_from=str(llama), **SMALL))
    one_line(excinfo)
    assert not (tmp_path / "run").exists()  # nothing half-written
    with pytest.raises(UserError, match="LoRA adapts an existing model"):
        TrainConfig(lora=True)


SCRIPT = """
import json, sys
from codekiln.train.config import TrainConfig
from codekiln.train.loop import train
train(sys.argv[1], sys.argv[2], TrainConfig(**json.loads(sys.argv[3])), progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_lora_on_two_processes_matches_one(workspace, tmp_path, parallel):
    """Two gloo ranks of batch 1 train the same adapters as one process of batch 2 (the same
    sequences per step, the frozen base replicated under DDP and sharded under FSDP2)."""
    model_dir, tokens = model_and_pack(workspace, "starcoder2", "sharded")
    settings = {
        **SMALL,
        "init_from": str(model_dir),
        "lora": True,
        "lora_dropout": 0.0,
        "max_steps": 3,
        "dtype": "float32",
        "parallel": parallel,
    }
    single = train(
        tokens, tmp_path / "one", TrainConfig(**{**settings, "batch_size": 2}), progress=False
    )
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        + [str(script), str(tokens), str(tmp_path / "two")]
        + [json.dumps({**settings, "batch_size": 1})],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    def losses(folder):
        return [r["loss"] for r in read_metrics(folder / "metrics.jsonl") if "loss" in r]

    assert len(losses(tmp_path / "two")) == single.steps == 3
    torch.testing.assert_close(
        losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=1e-5, atol=0
    )
    assert (tmp_path / "two" / "adapter" / "adapter_model.safetensors").exists()
