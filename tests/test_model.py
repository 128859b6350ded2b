"""The model: parity with transformers' GPTBigCode and Starcoder2 in both directions (logits
and greedy generation), the KV cache, the loss, tied weights, parameter counts, init, errors."""

import dataclasses
import json
import math
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from codekiln.errors import UserError
from codekiln.model import (
    PRESETS,
    CodeGPT,
    KVCache,
    ModelConfig,
    export_hf,
    flops_per_token,
    import_hf,
    num_parameters,
    preset,
)
from codekiln.model.convert import config_from_hf, from_hf_state_dict, to_hf_state_dict
from codekiln.model.loss import linear_cross_entropy
from codekiln.tokenizer.special import EOS

ATOL = 1e-5
VOCAB = 300
TINY = {"vocab_size": VOCAB, "n_positions": 128, "n_embd": 64, "n_layer": 2, "n_head": 4}


def tiny(**overrides) -> ModelConfig:
    return ModelConfig(**{**TINY, **overrides})


@torch.no_grad()
def perturb(module: torch.nn.Module, seed: int = 0) -> None:
    """Random noise on every parameter, so zero biases and unit norms are tested too."""
    gen = torch.Generator().manual_seed(seed)
    for param in module.parameters():
        param.add_(torch.randn(param.shape, generator=gen) * 0.1)


def random_model(config: ModelConfig, seed: int = 0) -> CodeGPT:
    torch.manual_seed(seed)
    model = CodeGPT(config)
    perturb(model, seed)
    return model.eval()


def token_ids(batch: int = 2, length: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def greedy(model: CodeGPT, prompt: torch.Tensor, steps: int, eos: int = 0) -> torch.Tensor:
    """Greedy decoding of one sequence with the KV cache, stopping after eos."""
    cache = KVCache(model.config.n_layer)
    logits, _ = model(prompt, kv_cache=cache)
    out = prompt
    for _ in range(steps):
        token = logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
        out = torch.cat([out, token], dim=1)
        if token.item() == eos:
            break
        logits, _ = model(token, kv_cache=cache)
    return out


def assert_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    diff = (ours - theirs).abs().max().item()
    assert diff <= ATOL, diff
    print(f" max |diff| {diff:.1e}", end="")


# Parity with transformers: their random model -> import_hf -> our logits.


def small_bigcode_config(transformers, **overrides):
    """A two-layer GPTBigCode config for parity tests, with the given settings on top."""
    values = dict(
        vocab_size=VOCAB,
        n_positions=128,
        n_embd=64,
        n_layer=2,
        n_head=4,
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPTBigCodeConfig(**{**values, **overrides})


@pytest.mark.parametrize("multi_query", [True, False])
def test_import_gpt_bigcode_matches_transformers(tmp_path, multi_query):
    transformers = pytest.importorskip("transformers")
    hf_config = small_bigcode_config(
        transformers,
        n_inner=None if multi_query else 200,
        multi_query=multi_query,
        attn_implementation="eager",  # their plain matmul attention against our SDPA
    )
    torch.manual_seed(0)
    theirs = transformers.GPTBigCodeForCausalLM(hf_config).eval()
    perturb(theirs)
    theirs.save_pretrained(tmp_path)

    ours = import_hf(tmp_path)
    assert ours.config.n_kv_heads == (1 if multi_query else 4)
    assert ours.config.inner_dim == (256 if multi_query else 200)
    ids = token_ids()
    with torch.no_grad():
        assert_close(ours(ids)[0], theirs(ids).logits)


def test_import_gpt_bigcode_with_exact_gelu_matches_transformers(tmp_path):
    # bigcode/starcoder's config.json names the exact (erf) GELU, "gelu".
    transformers = pytest.importorskip("transformers")
    hf_config = small_bigcode_config(
        transformers, activation_function="gelu", attn_implementation="eager"
    )
    torch.manual_seed(0)
    theirs = transformers.GPTBigCodeForCausalLM(hf_config).eval()
    perturb(theirs)
    theirs.save_pretrained(tmp_path)

    ours = import_hf(tmp_path)
    assert ours.config.activation == "gelu"
    ids = token_ids()
    with torch.no_grad():
        assert_close(ours(ids)[0], theirs(ids).logits)
        # The tanh approximation differs measurably, so the test tells the two apart.
        tanh = CodeGPT(dataclasses.replace(ours.config, activation="gelu_tanh")).eval()
        tanh.load_state_dict(ours.state_dict())
        assert (tanh(ids)[0] - theirs(ids).logits).abs().max().item() > ATOL


def test_import_maps_activation_names():
    base = {"model_type": "gpt_bigcode"}
    for name in ("gelu_pytorch_tanh", "gelu_python_tanh", "gelu_new", "gelu_fast", "gelu_accurate"):
        assert config_from_hf({**base, "activation_function": name}).activation == "gelu_tanh"
    for name in ("gelu", "gelu_python"):
        assert config_from_hf({**base, "activation_function": name}).activation == "gelu"
    assert config_from_hf(base).activation == "gelu_tanh"  # transformers' default
    starcoder2 = {"model_type": "starcoder2", "hidden_act": "gelu"}
    assert config_from_hf(starcoder2).activation == "gelu"
    for name in ("gelu_10", "quick_gelu", "relu", "silu"):
        with pytest.raises(UserError, match=f"activation '{name}' is not supported"):
            config_from_hf({**base, "activation_function": name})
        with pytest.raises(UserError, match=f"activation '{name}' is not supported"):
            config_from_hf({"model_type": "starcoder2", "hidden_act": name})


def test_import_starcoder2_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.Starcoder2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_parameters={"rope_type": "default", "rope_theta": 50000.0},
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    theirs = transformers.Starcoder2ForCausalLM(hf_config).eval()
    perturb(theirs)
    theirs.save_pretrained(tmp_path)

    ours = import_hf(tmp_path)
    assert (ours.config.position, ours.config.n_kv_heads) == ("rotary", 2)
    assert ours.config.rope_theta == 50000.0
    ids = token_ids(length=100)  # long enough for the low rotary frequencies to matter
    with torch.no_grad():
        assert_close(ours(ids)[0], theirs(ids).logits)


def test_import_reads_sharded_checkpoints(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf_config = small_bigcode_config(transformers)
    torch.manual_seed(0)
    theirs = transformers.GPTBigCodeForCausalLM(hf_config).eval()
    theirs.save_pretrained(tmp_path, max_shard_size="50KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    ids = token_ids()
    with torch.no_grad():
        assert_close(import_hf(tmp_path)(ids)[0], theirs(ids).logits)


# Parity with transformers: our model -> export_hf -> AutoModelForCausalLM.


@pytest.mark.parametrize(
    "overrides",
    [
        {"n_kv_heads": 1},  # StarCoder: multi-query
        {"n_kv_heads": 4},  # multi-head
        {"position": "rotary", "n_kv_heads": 2, "rope_theta": 50000.0},  # StarCoder2: GQA
        {"n_kv_heads": 1, "activation": "gelu"},  # bigcode/starcoder's exact GELU
        {"position": "rotary", "n_kv_heads": 2, "activation": "gelu"},
    ],
    ids=[
        "gpt_bigcode-mqa",
        "gpt_bigcode-mha",
        "starcoder2-gqa",
        "gpt_bigcode-exact-gelu",
        "starcoder2-exact-gelu",
    ],
)
def test_export_loads_in_transformers_with_equal_logits_and_generation(tmp_path, overrides):
    transformers = pytest.importorskip("transformers")
    ours = random_model(tiny(**overrides))
    export_hf(ours, tmp_path)

    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    kind = "starcoder2" if overrides.get("position") == "rotary" else "gpt_bigcode"
    assert theirs.config.model_type == kind
    activation = "hidden_act" if kind == "starcoder2" else "activation_function"
    exact = overrides.get("activation") == "gelu"
    assert getattr(theirs.config, activation) == ("gelu" if exact else "gelu_pytorch_tanh")
    ids = token_ids(length=100)
    with torch.no_grad():
        assert_close(ours(ids)[0], theirs(ids).logits)

    prompt = token_ids(batch=1, length=8, seed=2)
    expected = greedy(ours, prompt, steps=10)
    with torch.no_grad():
        generated = theirs.generate(
            prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=10
        )
    assert generated.tolist() == expected.tolist()
    assert expected.shape[1] > prompt.shape[1] + 1  # it did decode, not stop at once

    again = import_hf(tmp_path)
    assert again.config == ours.config
    with torch.no_grad():
        assert torch.equal(again(ids)[0], ours(ids)[0])


def test_export_writes_the_model_directory(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer_dir = tmp_path / "tokenizer"
    tokenizer_dir.mkdir()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel()
    # <|endoftext|> at id 2 here, so the ids must come from the tokenizer, not a constant.
    trainer = trainers.BpeTrainer(vocab_size=280, special_tokens=["<a>", "<b>", EOS])
    tokenizer.train_from_iterator(["def add(a, b):\n    return a + b\n"] * 50, trainer)
    tokenizer.save(str(tokenizer_dir / "tokenizer.json"))
    (tokenizer_dir / "tokenizer_config.json").write_text('{"eos_token": "<|endoftext|>"}')

    out = export_hf(
        random_model(tiny()),
        tmp_path / "model",
        tokenizer_dir=tokenizer_dir,
        card={
            "name": "kiln-tiny",
            "license": "Apache-2.0",
            "data": {"source": "the Python standard library", "tokens": 1_000_000},
            "training": {"steps": 100, "lr": 3e-4},
            "evaluation": "HumanEval pass@1: 0.0",
            "limitations": ["tiny", "untrained"],
        },
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "README.md",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt_bigcode"
    assert config["architectures"] == ["GPTBigCodeForCausalLM"]
    assert config["multi_query"] is True and config["tie_word_embeddings"] is True
    assert config["n_inner"] == 4 * config["n_embd"]
    assert config["activation_function"] == "gelu_pytorch_tanh"
    assert config["bos_token_id"] == config["eos_token_id"] == 2
    assert config["torch_dtype"] == "float32"
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == generation["bos_token_id"] == 2
    assert generation["max_length"] == 128

    weights = load_file(out / "model.safetensors")
    assert "lm_head.weight" not in weights  # the tied weight is saved once, as transformers does
    assert weights["transformer.h.0.attn.c_attn.weight"].shape == (64 + 2 * 16, 64)

    card = (out / "README.md").read_text()
    assert card.startswith('---\nlicense: "apache-2.0"\n')
    for text in (
        "# kiln-tiny",
        "## Data",
        "the Python standard library",
        "## Training",
        "## Evaluation",
        "HumanEval pass@1",
        "## Limitations",
        "## License",
    ):
        assert text in card, text


def test_export_without_tokenizer_uses_eos_0_and_bf16_keeps_dtype(tmp_path):
    model = random_model(tiny()).to(torch.bfloat16)
    export_hf(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["bos_token_id"] == config["eos_token_id"] == 0
    assert config["torch_dtype"] == "bfloat16"
    assert import_hf(tmp_path).wte.weight.dtype == torch.bfloat16


def test_state_dict_conversion_round_trips():
    for overrides in ({}, {"n_kv_heads": 4}, {"position": "rotary", "n_kv_heads": 2}):
        model = random_model(tiny(**overrides))
        back = from_hf_state_dict(model.config, to_hf_state_dict(model))
        state = model.state_dict()
        assert back.keys() == state.keys()
        assert all(torch.equal(back[k], state[k]) for k in state)


# The network itself.


@pytest.mark.parametrize(
    "overrides",
    [{}, {"n_kv_heads": 4}, {"position": "rotary", "n_kv_heads": 2}, {"position": "rotary"}],
    ids=["learned-mqa", "learned-mha", "rotary-gqa", "rotary-mqa"],
)
def test_kv_cache_decoding_equals_full_forward(overrides):
    model = random_model(tiny(**overrides))
    ids = token_ids(length=30)
    cache = KVCache(model.config.n_layer)
    with torch.no_grad():
        full, _ = model(ids)
        # A prompt, then a chunk after cached tokens (needs the offset mask), then singles.
        pieces = [model(ids[:, a:b], kv_cache=cache)[0] for a, b in ((0, 7), (7, 12), (12, 13))]
        pieces += [model(ids[:, t : t + 1], kv_cache=cache)[0] for t in range(13, 30)]
    assert cache.length == 30
    assert_close(torch.cat(pieces, dim=1), full)

    cache.crop(12)
    with torch.no_grad():
        again, _ = model(ids[:, 12:20], kv_cache=cache)
    assert_close(again, full[:, 12:20])


def test_kv_cache_holds_one_head_under_multi_query():
    model = random_model(tiny())
    cache = KVCache(model.config.n_layer)
    with torch.no_grad():
        model(token_ids(length=5), kv_cache=cache)
    keys, values = cache.get(0)
    assert keys.shape == values.shape == (2, 1, 5, 16)  # (B, n_kv_heads, S, head_dim)


def test_position_offset_shifts_positions():
    model = random_model(tiny())
    ids = token_ids(length=10)
    shifted = random_model(tiny())
    with torch.no_grad():
        shifted.wpe.weight[:-4] = model.wpe.weight[4:]
        assert_close(model(ids, position_offset=4)[0], shifted(ids)[0])
    # Rotary attention sees relative positions only: a shift changes nothing.
    rotary = random_model(tiny(position="rotary", n_kv_heads=2))
    with torch.no_grad():
        assert_close(rotary(ids, position_offset=50)[0], rotary(ids)[0])


def test_loss_is_mean_cross_entropy_over_labels_not_minus_100():
    model = random_model(tiny())
    ids = token_ids(length=16)
    labels = torch.roll(ids, -1, dims=1)
    labels[:, -1] = -100
    labels[0, :5] = -100
    no_logits, loss = model(ids, labels)
    logits, _ = model(ids)
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    assert torch.allclose(loss, expected, atol=1e-6)
    assert no_logits is None
    assert logits.dtype == torch.float32 and logits.shape == (2, 16, VOCAB)
    _, none = model(ids, torch.full_like(ids, -100))
    assert none.item() == 0.0


@pytest.mark.parametrize("autocast", [False, True])
def test_chunked_linear_cross_entropy_matches_the_plain_loss_and_gradients(autocast):
    torch.manual_seed(3)
    x = torch.randn(37, 16, requires_grad=True)
    weight = (torch.randn(50, 16) * 0.3).requires_grad_()
    labels = torch.randint(0, 50, (37,))
    labels[::4] = -100
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        plain = torch.nn.functional.cross_entropy((x @ weight.T).float(), labels)
        grads = torch.autograd.grad(plain * 3, (x, weight))
        chunked = linear_cross_entropy(x, weight, labels, chunk=5)  # 8 chunks, the last short
        chunked_grads = torch.autograd.grad(chunked * 3, (x, weight))
        with torch.no_grad():  # no gradient wanted: the forward alone, the same value
            forward_only = linear_cross_entropy(x, weight, labels, chunk=5)
    assert torch.equal(forward_only, chunked.detach())
    tolerance = 2e-2 if autocast else 1e-5
    torch.testing.assert_close(chunked, plain, atol=tolerance, rtol=tolerance)
    for ours, reference in zip(chunked_grads, grads, strict=True):
        assert ours.dtype == reference.dtype == torch.float32
        scale = reference.abs().max().item()
        torch.testing.assert_close(ours, reference, atol=tolerance * scale, rtol=0)

    # A frozen head (LoRA): the input's gradient alone, the same, with the default chunks.
    frozen = weight.detach()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        (only_x,) = torch.autograd.grad(linear_cross_entropy(x, frozen, labels) * 3, (x,))
    scale = grads[0].abs().max().item()
    torch.testing.assert_close(only_x, grads[0], atol=tolerance * scale, rtol=0)
    # Its gradients are scaled in place: a second backward through the graph is refused.
    loss = linear_cross_entropy(x, frozen, labels)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        loss.backward()


def test_embeddings_are_tied():
    model = random_model(tiny())
    names = [name for name, _ in model.named_parameters()]
    assert "wte.weight" in names and not any("lm_head" in n for n in names)
    ids = token_ids(length=8)
    logits, _ = model(ids)
    _, loss = model(ids, torch.roll(ids, -1, dims=1))
    hidden = model.ln_f(model.blocks[1](model.blocks[0](model.wte(ids) + model.wpe.weight[:8])))
    assert_close(logits, hidden @ model.wte.weight.T)
    loss.backward()
    # The output projection's gradient reaches rows of tokens that never appear as input.
    unused = sorted(set(range(VOCAB)) - set(ids.flatten().tolist()))
    assert model.wte.weight.grad[unused].abs().sum() > 0
    # The tie survives meta-device construction and to_empty (a separate lm_head would not).
    with torch.device("meta"):
        meta = CodeGPT(tiny())
    meta.to_empty(device="cpu")
    meta.init_weights()
    assert sum(p.numel() for p in meta.parameters()) == num_parameters(meta.config)


def test_layer_modules_are_the_blocks():
    model = CodeGPT(tiny(n_layer=3))
    blocks = model.layer_modules()
    assert len(blocks) == 3 and all(b is m for b, m in zip(blocks, model.blocks, strict=True))


def test_init_std():
    config = tiny(n_embd=256, n_layer=4, n_head=4, vocab_size=4096)
    torch.manual_seed(0)
    model = CodeGPT(config)
    std = 1 / math.sqrt(256)
    assert config.std == std
    assert abs(model.wte.weight.std().item() - std) < 0.03 * std
    assert abs(model.blocks[0].attn.c_attn.weight.std().item() - std) < 0.03 * std
    assert abs(model.blocks[0].mlp.c_fc.weight.std().item() - std) < 0.03 * std
    scaled = std / math.sqrt(2 * 4)
    for block in model.blocks:
        for proj in (block.attn.c_proj, block.mlp.c_proj):
            assert abs(proj.weight.std().item() - scaled) < 0.05 * scaled
            assert not proj.bias.any()
    assert torch.equal(model.ln_f.weight, torch.ones(256)) and not model.ln_f.bias.any()
    assert CodeGPT(tiny(init_std=0.02)).wte.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_parameter_counts():
    print("\npreset     params         flops/token @ n_positions")
    for name, config in PRESETS.items():
        flops = flops_per_token(config, config.n_positions)
        print(f"{name:<6} {num_parameters(config):>15,} {flops:>20,.0f}")
    assert num_parameters(PRESETS["small"]) == 164_144_128  # tiny_starcoder_py's 164M
    assert round(num_parameters(PRESETS["1b"]) / 1e9, 2) == 1.14  # StarCoderBase-1B
    assert round(num_parameters(PRESETS["15b"]) / 1e9, 1) == 15.5  # StarCoder's 15.5B
    assert 3e6 < num_parameters(PRESETS["tiny"]) < 6e6
    for name in ("tiny", "small"):
        with torch.device("meta"):
            model = CodeGPT(PRESETS[name])
        assert sum(p.numel() for p in model.parameters()) == num_parameters(PRESETS[name])
    for overrides in ({"position": "rotary", "n_kv_heads": 2}, {"n_kv_heads": 4, "n_inner": 100}):
        config = tiny(**overrides)
        assert sum(p.numel() for p in CodeGPT(config).parameters()) == num_parameters(config)


def test_flops_per_token_formula():
    config = PRESETS["small"]
    n = num_parameters(config) - config.n_positions * config.n_embd
    assert flops_per_token(config, 2048) == 6 * n + 12 * 20 * 768 * 2048
    rotary = dataclasses.replace(config, position="rotary")
    assert flops_per_token(rotary, 2048) == flops_per_token(config, 2048)


def test_presets_are_starcoder_shapes():
    assert all(c.n_kv_heads == 1 and c.position == "learned" for c in PRESETS.values())
    assert all(c.activation == "gelu_tanh" for c in PRESETS.values())
    assert (PRESETS["15b"].n_embd, PRESETS["15b"].n_layer, PRESETS["15b"].n_head) == (6144, 40, 48)
    assert preset("tiny", n_layer=2).n_layer == 2 and PRESETS["tiny"].n_layer == 4


# Errors.


def test_config_errors_say_how_to_fix():
    with pytest.raises(UserError, match="divisible by n_head"):
        tiny(n_embd=60, n_head=8)
    with pytest.raises(UserError, match="n_kv_heads 3 must divide n_head 4"):
        tiny(n_kv_heads=3)
    with pytest.raises(UserError, match="position must be one of learned, rotary"):
        tiny(position="alibi")
    with pytest.raises(UserError, match="dropout"):
        tiny(dropout=1.5)
    with pytest.raises(UserError, match="activation must be one of gelu_tanh, gelu, got 'relu'"):
        tiny(activation="relu")
    with pytest.raises(UserError, match="unknown model preset 'huge'; presets: tiny, small, 1b"):
        preset("huge")
    with pytest.raises(UserError, match="unknown model setting"):
        preset("tiny", n_layers=2)
    with pytest.raises(UserError, match="n_layer must be a positive integer"):
        preset("tiny", n_layer=0)


def test_input_longer_than_the_context_is_refused():
    model = CodeGPT(tiny(n_positions=16))
    with pytest.raises(UserError, match="exceed the model's context of 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_grouped_query_attention_with_learned_positions_does_not_export(tmp_path):
    model = CodeGPT(tiny(n_kv_heads=2))
    with pytest.raises(UserError, match='position="rotary"'):
        export_hf(model, tmp_path)


def test_import_errors(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        import_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UserError, match="model_type 'llama' is not supported"):
        import_hf(tmp_path)

    folder = export_hf(random_model(tiny()), tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_embd": 128, "n_head": 8}))
    with pytest.raises(UserError, match="shape .* config does not match the weights"):
        import_hf(folder)
    (folder / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    with pytest.raises(UserError, match="lack transformer.h.2"):
        import_hf(folder)
    (folder / "config.json").write_text(json.dumps({**config, "activation_function": "relu"}))
    with pytest.raises(UserError, match="activation 'relu' is not supported"):
        import_hf(folder)
    (folder / "config.json").write_text(json.dumps(config))

    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        import_hf(folder)
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(UserError, match="truncated or corrupt"):
        import_hf(folder)
    weights.unlink()
    with pytest.raises(UserError, match="no weights in"):
        import_hf(folder)


def test_import_keeps_context_window_and_untied_heads_and_refuses_scaled_rope():
    base = {"model_type": "starcoder2", "hidden_size": 64, "num_attention_heads": 4}
    assert config_from_hf({**base, "tie_word_embeddings": False}).tie_embeddings is False
    config = config_from_hf({**base, "max_position_embeddings": 16384, "sliding_window": 4096})
    assert (config.n_positions, config.sliding_window) == (16384, 4096)
    with pytest.raises(UserError, match="scaled or partial RoPE"):
        config_from_hf({**base, "rope_parameters": {"rope_type": "linear", "factor": 2.0}})

    model = random_model(tiny())
    state = to_hf_state_dict(model)
    state["lm_head.weight"] = torch.zeros_like(state["transformer.wte.weight"])
    with pytest.raises(UserError, match="lm_head.weight differs"):
        from_hf_state_dict(model.config, state)
    state["lm_head.weight"] = state["transformer.wte.weight"].clone()
    from_hf_state_dict(model.config, state)  # an equal copy of the tied weight is fine


def test_export_refuses_a_tokenizer_bigger_than_the_vocabulary(tmp_path):
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({EOS: 0, **{f"t{i}": i + 1 for i in range(400)}}, EOS)).save(
        str(tmp_path / "tokenizer.json")
    )
    with pytest.raises(UserError, match="401 tokens but the model embeds 300"):
        export_hf(CodeGPT(tiny()), tmp_path / "model", tokenizer_dir=tmp_path)


@pytest.mark.slow
def test_export_and_import_need_no_transformers(tmp_path):
    code = (
        "import sys; sys.modules['transformers'] = None\n"  # any import of it now fails
        "from codekiln.model import CodeGPT, ModelConfig, export_hf, import_hf\n"
        f"config = ModelConfig(**{TINY!r})\n"
        f"import_hf(export_hf(CodeGPT(config), {str(tmp_path)!r}))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
