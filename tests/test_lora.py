"""LoRA against peft: the adapter codekiln writes loads in `peft.PeftModel.from_pretrained`
with our logits, an adapter peft trained loads into codekiln with peft's logits, merging
keeps the function, and adapters for another base are one line."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import hf_gpt_bigcode, hf_starcoder2

from codekiln.errors import UserError
from codekiln.model.hf import import_hf
from codekiln.model.lora import (
    LoraSpec,
    add_lora,
    load_adapter,
    lora_modules,
    lora_parameter_count,
    lora_state_dict,
    merge_lora,
    save_adapter,
)

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

VOCAB = 300


def base_model(kind: str, tmp_path, multi_query: bool = True):
    if kind == "starcoder2":
        model = hf_starcoder2(max_position_embeddings=128, sliding_window=16)
    else:
        model = hf_gpt_bigcode(n_positions=64, multi_query=multi_query)
    folder = tmp_path / f"base-{kind}-{multi_query}"
    model.save_pretrained(folder)
    return folder


def ids(length: int = 30) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, length), generator=torch.Generator().manual_seed(5))


@torch.no_grad()
def trained_adapters(model) -> None:
    """Random B (peft starts it at zero, which would hide a wrong layout)."""
    generator = torch.Generator().manual_seed(7)
    for module in lora_modules(model).values():
        for param in module.lora_B.values():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


CASES = [
    ("starcoder2", True, None),
    ("starcoder2", True, ["q_proj", "v_proj"]),
    ("starcoder2", True, ["k_proj", "c_fc"]),
    ("gpt_bigcode", True, None),
    ("gpt_bigcode", False, None),
]


@pytest.mark.parametrize("kind,multi_query,targets", CASES)
def test_our_adapter_loads_in_peft_with_our_logits(tmp_path, kind, multi_query, targets):
    base = base_model(kind, tmp_path, multi_query)
    ours = import_hf(base).float()
    spec = LoraSpec(rank=4, alpha=8, dropout=0.0, targets=targets)
    add_lora(ours, kind, spec)
    trained_adapters(ours)
    adapter = save_adapter(ours, kind, spec, tmp_path / "adapter", str(base))
    settings = json.loads((adapter / "adapter_config.json").read_text())
    assert settings["peft_type"] == "LORA" and settings["r"] == 4
    reference = peft.PeftModel.from_pretrained(
        transformers.AutoModelForCausalLM.from_pretrained(base), adapter
    ).eval()
    tokens = ids()
    with torch.no_grad():
        torch.testing.assert_close(
            ours.eval()(tokens)[0], reference(tokens).logits, atol=1e-5, rtol=0
        )
    assert sum(p.numel() for p in lora_state_dict(ours).values()) == lora_parameter_count(
        ours.config, kind, spec
    )


@pytest.mark.parametrize("kind,multi_query", [("starcoder2", True), ("gpt_bigcode", False)])
def test_a_peft_adapter_loads_into_codekiln_and_merges(tmp_path, kind, multi_query):
    base = base_model(kind, tmp_path, multi_query)
    reference = transformers.AutoModelForCausalLM.from_pretrained(base)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"]
    if kind == "gpt_bigcode":
        targets = ["c_attn", "c_proj", "c_fc"]
    wrapped = peft.get_peft_model(
        reference, peft.LoraConfig(r=4, lora_alpha=16, target_modules=targets)
    )
    with torch.no_grad():
        generator = torch.Generator().manual_seed(9)
        for name, param in wrapped.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    wrapped.save_pretrained(tmp_path / "peft-adapter")
    tokens = ids()
    with torch.no_grad():
        expected = wrapped.eval()(tokens).logits
    ours = import_hf(base).float()
    spec = load_adapter(ours, kind, tmp_path / "peft-adapter")
    assert (spec.rank, spec.alpha) == (4, 16.0)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(tokens)[0], expected, atol=1e-5, rtol=0)
        merged = merge_lora(ours)
        assert not lora_modules(merged)
        torch.testing.assert_close(merged(tokens)[0], expected, atol=1e-5, rtol=0)


def test_training_starts_from_the_base_and_only_adapters_learn(tmp_path):
    base = base_model("starcoder2", tmp_path)
    model = import_hf(base).float()
    tokens = ids()
    with torch.no_grad():
        before = model(tokens)[0]
    add_lora(model, "starcoder2", LoraSpec(rank=2))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(tokens)[0], before)  # B starts at zero
    model.train()
    _, loss = model(tokens, labels=tokens)
    loss.backward()
    learning = {n for n, p in model.named_parameters() if p.requires_grad}
    assert learning and all(".lora_A." in n or ".lora_B." in n for n in learning)
    assert all(p.grad is None for n, p in model.named_parameters() if n not in learning)


def test_adapters_for_another_base_are_one_line(tmp_path):
    small = base_model("starcoder2", tmp_path)
    ours = import_hf(small).float()
    spec = LoraSpec(rank=4)
    add_lora(ours, "starcoder2", spec)
    adapter = save_adapter(ours, "starcoder2", spec, tmp_path / "adapter", str(small))

    with pytest.raises(UserError, match="q_proj, v_proj.*not modules of a gpt_bigcode|targets"):
        load_adapter(import_hf(base_model("gpt_bigcode", tmp_path)), "gpt_bigcode", adapter)

    wider = hf_starcoder2(hidden_size=128)
    wider.save_pretrained(tmp_path / "wider")
    with pytest.raises(UserError, match="made for another base model"):
        load_adapter(import_hf(tmp_path / "wider"), "starcoder2", adapter)

    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIX_TUNING"}))
    with pytest.raises(UserError, match="not a LoRA adapter"):
        load_adapter(import_hf(small), "starcoder2", adapter)
    with pytest.raises(UserError, match="no adapter_config.json"):
        load_adapter(import_hf(small), "starcoder2", tmp_path)


def test_spec_and_target_errors():
    with pytest.raises(UserError, match="lora_rank"):
        LoraSpec(rank=0)
    with pytest.raises(UserError, match="lora_dropout"):
        LoraSpec(dropout=1.5)
    from codekiln.model.config import ModelConfig
    from codekiln.model.lora import lora_targets

    config = ModelConfig(n_embd=8, n_head=2, n_layer=1, position="rotary")
    with pytest.raises(UserError, match="'gate_proj'|gate_proj are not modules"):
        lora_targets(config, "starcoder2", ["q_proj", "gate_proj"])
