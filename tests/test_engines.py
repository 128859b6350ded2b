"""Engines made for decoding: codekiln's int8 CPU path (greedy agreement with float32 on a
trained model), CTranslate2 (greedy parity with codekiln's engine in float32, the conversion
reused, the folders it cannot convert) and the one-line errors of missing optional engines."""

from __future__ import annotations

import json
import sys
import sysconfig
from contextlib import contextmanager
from pathlib import Path

import pytest
import test_train
import torch
from conftest import GOOD_PY, OTHER_PY, cli_here, small_bpe

from codekiln.errors import UserError
from codekiln.generate import CodekilnBackend, SamplingParams, load_backend
from codekiln.generate.int8 import Int8Linear
from codekiln.model import CodeGPT, ModelConfig, export_hf
from codekiln.model.gpt import KVCache
from codekiln.tokenizer.special import EOS, SPECIAL_TOKENS
from codekiln.train.loop import train

TINY = {"vocab_size": 400, "n_positions": 128, "n_embd": 64, "n_layer": 2, "n_head": 4}
PROMPTS = ["def add(a, b):\n    return", "", "import os\n\n\ndef walk(root):\n"]


def write_tokenizer(folder: Path, texts: list[str], vocab_size: int) -> Path:
    """A byte-level BPE whose config names only an eos_token, as codekiln's tokenizers do."""
    folder.mkdir(parents=True, exist_ok=True)
    small_bpe(texts, SPECIAL_TOKENS, vocab_size=vocab_size).save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@torch.no_grad()
def write_random(root: Path, seed: int = 0, **overrides) -> Path:
    """A random tiny model (noise on every weight, so greedy text varies) exported as HF."""
    tokenizer = write_tokenizer(root / "tokenizer", [GOOD_PY, OTHER_PY] * 20, TINY["vocab_size"])
    torch.manual_seed(seed)
    model = CodeGPT(ModelConfig(**{**TINY, **overrides}))
    generator = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return export_hf(model.eval(), root / "model", tokenizer_dir=tokenizer)


@contextmanager
def one_thread():
    """Tiny matrices run fastest on one thread, and a busy machine does not stall it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def stdlib_sources() -> list[str]:
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    return [f.read_text(encoding="utf-8", errors="replace") for f in files[:60]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A tiny model trained for 200 steps on 50 standard-library modules (seconds on one
    thread), exported with its tokenizer, and ten held-out modules' tokens."""
    root = tmp_path_factory.mktemp("trained")
    sources = stdlib_sources()
    train_text, held_out = "\n".join(sources[:50]), "\n".join(sources[50:])
    tokenizer_dir = write_tokenizer(root / "tokenizer", [train_text[:300_000]], 512)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    ids = torch.tensor(tokenizer.encode(train_text).ids)
    config = ModelConfig(vocab_size=512, n_positions=128, n_embd=64, n_layer=2, n_head=4)
    with one_thread():
        torch.manual_seed(0)
        model = CodeGPT(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        steps, length, batch = 200, 64, 16
        for step in range(steps):
            starts = torch.randint(0, len(ids) - length - 1, (batch,)).tolist()
            inputs = torch.stack([ids[s : s + length] for s in starts])
            labels = torch.stack([ids[s + 1 : s + length + 1] for s in starts])
            _, loss = model(inputs, labels=labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            for group in optimizer.param_groups:
                group["lr"] = 3e-3 * (1 - step / steps)
    folder = export_hf(model.eval(), root / "model", tokenizer_dir=tokenizer_dir)
    return {"folder": folder, "held_out": tokenizer.encode(held_out).ids, "loss": loss.item()}


def next_token_choices(model: CodeGPT, ids: list[int]) -> list[int]:
    """The greedy choice after each prefix of ids, one token at a time through the KV cache,
    as decoding feeds them (teacher forcing: the true token goes in, whatever was chosen)."""
    cache = KVCache(model.config.n_layer, capacity=len(ids))
    with torch.inference_mode():
        return [
            int(model(torch.tensor([[token]]), kv_cache=cache)[0][0, -1].argmax()) for token in ids
        ]


@pytest.mark.slow
@one_thread()
def test_int8_greedy_choices_agree_with_float32_on_held_out_code(trained):
    full = CodekilnBackend.from_folder(trained["folder"], device="cpu")
    int8 = CodekilnBackend.from_folder(trained["folder"], dtype="int8")
    assert trained["loss"] < 4.5, "the model did not learn; the agreement would mean little"
    held_out = trained["held_out"]
    windows = [held_out[i * 2000 : i * 2000 + 96] for i in range(6)]  # 576 positions
    same = total = 0
    for window in windows:
        ours, reference = (
            next_token_choices(int8.model, window),
            next_token_choices(full.model, window),
        )
        same += sum(a == b for a, b in zip(ours, reference, strict=True))
        total += len(window)
    teacher_forced = same / total
    # Free-running: each engine continues 12 held-out prompts greedily for 24 tokens; a
    # position agrees while both texts are still the same (one early split counts all the
    # rest as different).
    params = SamplingParams(greedy=True, max_new_tokens=24, ignore_eos=True)
    prompts = [full.tokenizer.decode(held_out[i * 900 : i * 900 + 32]) for i in range(12)]
    agreed = 0
    for a, b in zip(int8.complete(prompts, params), full.complete(prompts, params), strict=True):
        x, y = a[0].token_ids, b[0].token_ids
        agreed += next((i for i, (s, t) in enumerate(zip(x, y, strict=True)) if s != t), len(x))
    free_running = agreed / (12 * 24)
    print(f"int8 vs float32: teacher-forced {teacher_forced:.3f}, free-running {free_running:.3f}")
    assert teacher_forced >= 0.95
    assert free_running >= 0.5


@pytest.mark.slow
def test_int8_replaces_every_linear_and_the_tied_head(trained):
    backend = load_backend(trained["folder"], dtype="int8")
    model = backend.model
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert isinstance(model.output_head, Int8Linear)
    assert model.output_head.out_features == model.config.vocab_size
    [[sample]] = backend.complete(["def "], SamplingParams(greedy=True, max_new_tokens=8))
    assert sample.tokens > 0 and sample.finish_reason in ("length", "eos")


def test_int8_is_for_the_cpu_and_a_bad_dtype_is_one_line(tmp_path):
    folder = write_random(tmp_path)
    with pytest.raises(UserError, match="int8 is for decoding on the CPU"):
        CodekilnBackend.from_folder(folder, device="cuda", dtype="int8")
    with pytest.raises(UserError, match="dtype must be one of float32, bfloat16, int8"):
        load_backend(folder, dtype="int4")


# CTranslate2.


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return write_random(tmp_path_factory.mktemp("ct2"), seed=3)


@pytest.fixture(scope="module")
def ct2(tiny_folder):
    pytest.importorskip("ctranslate2")
    return load_backend(tiny_folder, engine="ctranslate2", dtype="float32", threads=1)


def test_ctranslate2_float32_greedy_tokens_equal_codekiln_s(tiny_folder, ct2):
    ours = load_backend(tiny_folder)
    params = SamplingParams(greedy=True, max_new_tokens=40)
    for prompt in PROMPTS:
        [[a]], [[b]] = ours.complete([prompt], params), ct2.complete([prompt], params)
        assert b.token_ids == a.token_ids and (b.text, b.finish_reason) == (a.text, a.finish_reason)
    [[first]] = ours.complete([PROMPTS[0]], params)
    stop = SamplingParams(greedy=True, max_new_tokens=40, stop=[first.text[5:8]])
    [[a]], [[b]] = ours.complete([PROMPTS[0]], stop), ct2.complete([PROMPTS[0]], stop)
    assert b.finish_reason == a.finish_reason == "stop" and b.text == a.text
    [[a]] = ours.infill(["def f(x):\n    "], ["\n    return x\n"], params)
    [[b]] = ct2.infill(["def f(x):\n    "], ["\n    return x\n"], params)
    assert b.token_ids == a.token_ids
    stream = ct2.stream(PROMPTS[0], params)
    assert (
        "".join(stream) == stream.completion.text == ours.complete([PROMPTS[0]], params)[0][0].text
    )
    assert ct2.context_length == ours.context_length and ct2.supports_fim
    assert ct2.count_tokens(PROMPTS[2]) == ours.count_tokens(PROMPTS[2])


def test_ctranslate2_samples_n_and_honours_the_budget(ct2):
    params = SamplingParams(n=3, temperature=1.0, max_new_tokens=6, ignore_eos=True)
    [samples] = ct2.complete([PROMPTS[0]], params)
    assert len(samples) == 3 and all(s.tokens == 6 and s.finish_reason == "length" for s in samples)


def test_ctranslate2_conversion_is_reused_until_the_weights_change(tiny_folder, ct2):
    from codekiln.generate.ct2 import convert_ctranslate2

    converted = tiny_folder / "ctranslate2-float32"
    written = (converted / "model.bin").stat().st_mtime_ns
    assert convert_ctranslate2(tiny_folder, quantization="float32") == converted
    assert (converted / "model.bin").stat().st_mtime_ns == written
    config = json.loads((converted / "config.json").read_text())
    assert config["bos_token"] == config["unk_token"] == EOS  # the tokenizer names neither
    weights = tiny_folder / "model.safetensors"
    weights.touch()
    convert_ctranslate2(tiny_folder, quantization="float32")
    assert (converted / "model.bin").stat().st_mtime_ns != written


def test_ctranslate2_refuses_what_its_converter_gets_wrong(tmp_path):
    pytest.importorskip("ctranslate2")
    from codekiln.generate.ct2 import convert_ctranslate2

    rotary = write_random(tmp_path / "rotary", position="rotary", n_kv_heads=2)
    with pytest.raises(UserError, match="no support for starcoder2"):
        convert_ctranslate2(rotary)
    heads = write_random(tmp_path / "mha", n_kv_heads=4)
    with pytest.raises(UserError, match="multi-head attention"):
        convert_ctranslate2(heads)
    with pytest.raises(UserError, match="quantization must be one of"):
        convert_ctranslate2(heads, quantization="int4")


def test_missing_optional_engines_are_one_line_naming_the_extra(tiny_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import fails as if absent
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(UserError, match=r"pip install 'codekiln\[ctranslate2\]'"):
        load_backend(tiny_folder, engine="ctranslate2")
    with pytest.raises(UserError, match=r"pip install 'codekiln\[vllm\]'"):
        load_backend(tiny_folder, engine="vllm")


def test_export_checks_the_ctranslate2_quantization_before_exporting(tmp_path):
    pytest.importorskip("ctranslate2")
    result = cli_here("export", str(tmp_path), "--ctranslate2", "--quantization", "int4")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "quantization must be one of" in lines[0]


packed = test_train.packed  # the fixture: a pack and its tokenizer


@pytest.mark.slow  # a training run, then `codekiln export`
def test_export_converts_a_run_for_the_ctranslate2_engine(packed, tmp_path):
    pytest.importorskip("ctranslate2")
    data, tokenizer = packed
    run = tmp_path / "run"
    train(data, run, test_train.tiny(tokenizer, max_steps=2, eval_every=0), progress=False)
    options = ["--ctranslate2", "--quantization", "int8", "-o", str(tmp_path / "exported")]
    done = cli_here("export", str(run), *options)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "exported" / "ctranslate2-int8" / "model.bin").is_file()
    backend = load_backend(tmp_path / "exported", engine="ctranslate2", dtype="int8", threads=1)
    [[sample]] = backend.complete(["def f("], SamplingParams(greedy=True, max_new_tokens=4))
    assert sample.tokens >= 1 or sample.finish_reason == "eos"


@pytest.mark.parametrize(
    "overrides",
    [{}, {"position": "rotary", "n_kv_heads": 2, "bias": False, "tie_embeddings": False}],
)
def test_decode_step_logits_are_forwards_bitwise_float32_and_int8(overrides):
    # The decode loops' lean forward must compute what CodeGPT.forward computes, bit for
    # bit, for one cached sequence and for a running batch of different lengths.
    from codekiln.generate.int8 import quantize_int8
    from codekiln.generate.step import DecodeStep
    from codekiln.serve.batching import RaggedKVCache

    torch.manual_seed(0)
    config = ModelConfig(**{**TINY, **overrides})
    for model in (CodeGPT(config).eval(), quantize_int8(CodeGPT(config))):
        step = DecodeStep(model)
        ids = torch.randint(0, config.vocab_size, (3, 9))
        with torch.inference_mode():
            caches = KVCache(config.n_layer, 16), KVCache(config.n_layer, 16)
            for cache in caches:
                model(ids, kv_cache=cache)
            batches = [RaggedKVCache(config.n_layer, 4, config.n_positions) for _ in range(2)]
            for length in (4, 7):
                prompt = KVCache(config.n_layer)
                model(ids[:1, :length], kv_cache=prompt)
                for batch in batches:
                    batch.insert(prompt, 2)
            tokens, rows = ids[:, -1:], ids[[0, 1, 2, 0], -1:]  # rows: 4 in the batch
            for _ in range(3):
                logits = model(tokens, kv_cache=caches[0])[0][:, -1]
                assert torch.equal(step(tokens, caches[1]), logits)
                tokens = logits.argmax(-1, keepdim=True)
                positions, mask = batches[0].begin_step(None)
                logits = model(rows, kv_cache=batches[0], position_ids=positions, attn_mask=mask)
                positions, mask = batches[1].begin_step(None)
                assert torch.equal(step(rows, batches[1], positions, mask), logits[0][:, -1])
                for batch in batches:
                    batch.advance()
                rows = logits[0][:, -1].argmax(-1, keepdim=True)
