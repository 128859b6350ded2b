"""Open checkpoints in and out: transformers-made StarCoder2 and GPT-BigCode folders in every
weight layout (one safetensors file, sharded safetensors with an index, pytorch_model.bin,
sharded .bin), streamed into the model; a 16K StarCoder2 with a sliding window keeps both;
export(import(X)) has X's logits and config; bad folders are one line each."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import hf_gpt_bigcode, hf_starcoder2

from codekiln.errors import UserError
from codekiln.model.gpt import CodeGPT, attention_mask
from codekiln.model.hf import export_hf, import_hf

transformers = pytest.importorskip("transformers")

VOCAB = 300


def starcoder2(**overrides):
    settings = {"rope_theta": 999999.4420358813, "vocab_size": VOCAB, **overrides}
    dropouts = ("attention_dropout", "residual_dropout", "embedding_dropout")
    return hf_starcoder2(noise=0.05, **dict.fromkeys(dropouts, 0.1), **settings)


def bigcode(**overrides):
    return hf_gpt_bigcode(noise=0.05, **{"vocab_size": VOCAB, "n_positions": 64, **overrides})


def save(model, folder, layout: str):
    """The model in one of the layouts models ship in."""
    if layout == "single":
        model.save_pretrained(folder)
    elif layout == "sharded":
        model.save_pretrained(folder, max_shard_size="60KB")
        assert (folder / "model.safetensors.index.json").exists()
    else:  # .bin, as older checkpoints (SantaCoder, StarCoder) ship
        model.config.save_pretrained(folder)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        if layout == "bin":
            torch.save(state, folder / "pytorch_model.bin")
        else:
            names = sorted(state)
            half = len(names) // 2
            weight_map = {}
            for index, part in enumerate((names[:half], names[half:])):
                shard = f"pytorch_model-0000{index + 1}-of-00002.bin"
                torch.save({n: state[n] for n in part}, folder / shard)
                weight_map.update(dict.fromkeys(part, shard))
            (folder / "pytorch_model.bin.index.json").write_text(
                json.dumps({"metadata": {}, "weight_map": weight_map})
            )
    return folder


def ids(length: int = 40) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, length), generator=torch.Generator().manual_seed(3))


def logits(model, tokens) -> torch.Tensor:
    with torch.no_grad():
        if isinstance(model, CodeGPT):
            return model(tokens)[0]
        return model(tokens).logits


@pytest.mark.parametrize("layout", ["single", "sharded", "bin", "sharded-bin"])
def test_starcoder2_in_every_layout_has_transformers_logits_past_the_window(tmp_path, layout):
    reference = starcoder2()
    folder = save(reference, tmp_path / "base", layout)
    ours = import_hf(folder)
    assert ours.config.n_positions == 16384 and ours.config.sliding_window == 8
    tokens = ids(40)  # five windows long: the sliding window decides these logits
    torch.testing.assert_close(logits(ours, tokens), logits(reference, tokens), atol=1e-5, rtol=0)


@pytest.mark.parametrize("layout", ["single", "bin"])
@pytest.mark.parametrize("multi_query", [True, False])
def test_gpt_bigcode_layouts(tmp_path, layout, multi_query):
    reference = bigcode(multi_query=multi_query)
    ours = import_hf(save(reference, tmp_path / "base", layout))
    tokens = ids(30)
    torch.testing.assert_close(logits(ours, tokens), logits(reference, tokens), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: starcoder2(),
        lambda: starcoder2(tie_word_embeddings=False, use_bias=False),
        lambda: bigcode(tie_word_embeddings=False, multi_query=False),
    ],
    ids=["starcoder2", "starcoder2-untied-nobias", "gpt_bigcode-untied"],
)
def test_export_of_an_import_keeps_config_and_logits(tmp_path, make):
    reference = make()
    folder = save(reference, tmp_path / "base", "sharded")
    base_config = json.loads((folder / "config.json").read_text())
    out = export_hf(import_hf(folder), tmp_path / "out", base_config=base_config)
    exported = json.loads((out / "config.json").read_text())
    for key, value in base_config.items():
        if key not in ("torch_dtype", "dtype", "transformers_version", "architectures"):
            assert exported.get(key) == value, key
    back = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(back) is type(reference)
    tokens = ids(40)
    torch.testing.assert_close(logits(back, tokens), logits(reference, tokens), atol=1e-5, rtol=0)


def test_decoding_with_a_cache_past_the_window_equals_the_full_forward(tmp_path):
    model = import_hf(save(starcoder2(), tmp_path / "base", "single"))
    from codekiln.model.gpt import KVCache

    tokens = ids(20)[:1]
    full = logits(model, tokens)
    cache = KVCache(model.config.n_layer)
    with torch.no_grad():
        steps = [model(tokens[:, :5], kv_cache=cache)[0]]
        for t in range(5, 20):
            steps.append(model(tokens[:, t : t + 1], kv_cache=cache)[0])
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


def test_sliding_window_mask_counts_the_query_itself():
    mask = attention_mask(5, 0, 3, None, torch.device("cpu"))
    assert mask.int().tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 1, 1],
    ]
    assert attention_mask(5, 0, 8, None, torch.device("cpu")) is None  # shorter than the window


@pytest.mark.slow
def test_import_streams_the_weights_without_a_second_copy(tmp_path):
    """The peak memory of importing a ~30 MB float32 checkpoint in 60 KB shards grows by about
    the model's own size: the checkpoint is never held whole beside it (that would be 2x)."""
    small = save(starcoder2(), tmp_path / "warm-up", "single")
    folder = save(
        starcoder2(hidden_size=512, intermediate_size=2048, vocab_size=4096),
        tmp_path / "base",
        "sharded",
    )
    size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    code = f"""
import re
from codekiln.model.hf import import_hf
def status(key):
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))
import_hf({str(small)!r})  # torch's lazy set-up, outside the measurement
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
before = status("VmRSS")
model = import_hf({str(folder)!r})
print((status("VmHWM") - before) * 1024)
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if run.returncode and "clear_refs" in run.stderr:
        pytest.skip("this kernel does not let a process reset its peak memory")
    assert run.returncode == 0, run.stderr
    grown = int(run.stdout.split()[-1])
    assert 0.9 * size < grown < 1.5 * size, (grown, size)


def test_bad_model_folders_are_one_line(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        import_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UserError, match="codekiln loads and trains gpt_bigcode and starcoder2"):
        import_hf(tmp_path)

    folder = save(starcoder2(), tmp_path / "sharded", "sharded")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[-1]
    (folder / shard).rename(folder / "elsewhere")
    with pytest.raises(UserError, match=f"names shard {shard}, which is not in"):
        import_hf(folder)
    (folder / "elsewhere").rename(folder / shard)
    data = (folder / shard).read_bytes()
    (folder / shard).write_bytes(data[: len(data) - 100])
    with pytest.raises(UserError, match="truncated or corrupt"):
        import_hf(folder)

    folder = save(starcoder2(), tmp_path / "bin", "bin")
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        import_hf(folder)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(UserError, match="no weights in"):
        import_hf(folder)
