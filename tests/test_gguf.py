"""GGUF export: the gguf package's reader checks every tensor's name, shape, type and (f32)
values, and the metadata llama.cpp reads (architecture, hyper-parameters, tokenizer with its
token types, merges, FIM ids and pre-tokenizer name); bad input is one line; the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import test_train
import torch
from conftest import GOOD_PY, OTHER_PY, cli_here, small_bpe

from codekiln.errors import UserError
from codekiln.model import CodeGPT, ModelConfig, export_hf
from codekiln.model.hf import import_hf
from codekiln.tokenizer.special import EOS, SPECIAL_TOKENS, STARCODER2_SPECIAL_TOKENS

gguf = pytest.importorskip("gguf")

from codekiln.model.gguf import export_gguf  # noqa: E402

TEXTS = [GOOD_PY, OTHER_PY, "x = 12345\nprint(x + 678)\n"] * 20
TOKENIZER_SIZE = 400
TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def write_tokenizer(folder: Path, special=SPECIAL_TOKENS, chat_template: str | None = None):
    """A byte-level BPE split as codekiln's tokenizer splits (digits one by one, then GPT-2's
    regex) and the tokenizer_config.json the tokenizer stage writes."""
    from codekiln.tokenizer.train import build_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = small_bpe(TEXTS, special, vocab_size=TOKENIZER_SIZE)
    tokenizer.pre_tokenizer = build_tokenizer().pre_tokenizer
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": None,
    }
    if chat_template is not None:
        config["chat_template"] = chat_template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@torch.no_grad()
def write_model(root: Path, **overrides) -> Path:
    """A random tiny CodeGPT exported as a Hugging Face folder with codekiln's tokenizer; 416
    embedding rows for 400 tokens, so 16 are padding."""
    settings = {"vocab_size": 416, "n_positions": 128, "n_embd": 64, "n_layer": 2, "n_head": 4}
    tokenizer = write_tokenizer(root / "tokenizer", chat_template=TEMPLATE)
    torch.manual_seed(0)
    model = CodeGPT(ModelConfig(**{**settings, **overrides}))
    generator = torch.Generator().manual_seed(0)
    for param in model.parameters():
        param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    return export_hf(model.eval(), root / "model", tokenizer_dir=tokenizer)


@pytest.fixture(scope="module")
def starcoder(tmp_path_factory) -> Path:
    """Multi-query gpt_bigcode, an MLP 200 wide (rows q8_0 cannot block)."""
    return write_model(tmp_path_factory.mktemp("gguf-starcoder"), n_inner=200)


def read(path: Path):
    reader = gguf.GGUFReader(path)
    fields = {name: field.contents() for name, field in reader.fields.items()}
    tensors = {t.name: t for t in reader.tensors}
    return fields, tensors


def shapes_and_types(tensors) -> dict[str, tuple[list[int], str]]:
    """name -> (shape as torch gives it, type name)."""
    return {
        name: ([int(n) for n in reversed(t.shape)], t.tensor_type.name)
        for name, t in tensors.items()
    }


def starcoder_expected(quant: str, n_embd=64, n_inner=200, kv=16, vocab=416, n_ctx=128):
    """Every tensor llama.cpp's starcoder loader asks for, with its shape and type."""
    matrix = quant.upper()
    f32 = "F32"
    expected = {
        "token_embd.weight": ([vocab, n_embd], "Q8_0" if quant[:2] in ("q4", "q5") else matrix),
        "position_embd.weight": ([n_ctx, n_embd], f32),
        "output_norm.weight": ([n_embd], f32),
        "output_norm.bias": ([n_embd], f32),
    }
    for i in range(2):
        down = "F16" if quant[0] == "q" and n_inner % 32 else matrix
        expected |= {
            f"blk.{i}.attn_norm.weight": ([n_embd], f32),
            f"blk.{i}.attn_norm.bias": ([n_embd], f32),
            f"blk.{i}.attn_qkv.weight": ([n_embd + 2 * kv, n_embd], matrix),
            f"blk.{i}.attn_qkv.bias": ([n_embd + 2 * kv], f32),
            f"blk.{i}.attn_output.weight": ([n_embd, n_embd], matrix),
            f"blk.{i}.attn_output.bias": ([n_embd], f32),
            f"blk.{i}.ffn_norm.weight": ([n_embd], f32),
            f"blk.{i}.ffn_norm.bias": ([n_embd], f32),
            f"blk.{i}.ffn_up.weight": ([n_inner, n_embd], matrix),
            f"blk.{i}.ffn_up.bias": ([n_inner], f32),
            f"blk.{i}.ffn_down.weight": ([n_embd, n_inner], down),
            f"blk.{i}.ffn_down.bias": ([n_embd], f32),
        }
    return expected


def ours_by_gguf_name(model: CodeGPT) -> dict[str, torch.Tensor]:
    """The model's tensors under the names the file should hold (starcoder)."""
    state = model.state_dict()
    out = {"token_embd.weight": state["wte.weight"]}
    if "wpe.weight" in state:
        out["position_embd.weight"] = state["wpe.weight"]
    for leaf in ("weight", "bias"):
        out[f"output_norm.{leaf}"] = state[f"ln_f.{leaf}"]
        for i in range(model.config.n_layer):
            for mine, theirs in (
                ("ln_1", "attn_norm"),
                ("attn.c_attn", "attn_qkv"),
                ("attn.c_proj", "attn_output"),
                ("ln_2", "ffn_norm"),
                ("mlp.c_fc", "ffn_up"),
                ("mlp.c_proj", "ffn_down"),
            ):
                out[f"blk.{i}.{theirs}.{leaf}"] = state[f"blocks.{i}.{mine}.{leaf}"]
    return out


def values(tensor) -> np.ndarray:
    """A tensor's values as float32, in torch's shape."""
    data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    return np.asarray(data, dtype=np.float32).reshape([int(n) for n in reversed(tensor.shape)])


def test_starcoder_f32_holds_every_tensor_exactly_and_what_llama_cpp_reads(starcoder, tmp_path):
    out = export_gguf(starcoder, tmp_path / "m.gguf")
    fields, tensors = read(out)
    assert shapes_and_types(tensors) == starcoder_expected("f32")
    model = import_hf(starcoder, dtype=torch.float32)
    for name, tensor in ours_by_gguf_name(model).items():
        np.testing.assert_array_equal(values(tensors[name]), tensor.numpy(), err_msg=name)

    assert fields["general.architecture"] == "starcoder"
    assert fields["general.file_type"] == gguf.LlamaFileType.ALL_F32
    hparams = {k.removeprefix("starcoder."): v for k, v in fields.items() if "starcoder." in k}
    assert hparams == {
        "context_length": 128,
        "embedding_length": 64,
        "feed_forward_length": 200,
        "block_count": 2,
        "attention.head_count": 4,
        "attention.head_count_kv": 1,
        "attention.layer_norm_epsilon": pytest.approx(1e-5),
    }

    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(starcoder / "tokenizer.json"))
    vocab = tokenizer.get_vocab()
    tokens, types = fields["tokenizer.ggml.tokens"], fields["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == 416
    assert tokens[:TOKENIZER_SIZE] == sorted(vocab, key=vocab.get)  # byte-level, by id
    assert tokens[TOKENIZER_SIZE:] == [f"[PAD{i}]" for i in range(TOKENIZER_SIZE, 416)]
    control, normal, unused = 3, 1, 5
    assert types[: len(SPECIAL_TOKENS)] == [control] * len(SPECIAL_TOKENS)
    assert set(types[len(SPECIAL_TOKENS) : TOKENIZER_SIZE]) == {normal}
    assert set(types[TOKENIZER_SIZE:]) == {unused}
    merges = json.loads((starcoder / "tokenizer.json").read_text())["model"]["merges"]
    assert fields["tokenizer.ggml.merges"] == [
        m if isinstance(m, str) else " ".join(m) for m in merges
    ]
    assert fields["tokenizer.ggml.model"] == "gpt2"
    assert fields["tokenizer.ggml.pre"] == "starcoder"  # digits one by one, then GPT-2's regex
    ids = {
        k.removeprefix("tokenizer.ggml.").removesuffix("_token_id"): v
        for k, v in fields.items()
        if k.endswith("_token_id")
    }
    assert ids == {
        "bos": 0,
        "eos": 0,
        "unk": 0,
        "fim_pre": vocab["<fim_prefix>"],
        "fim_suf": vocab["<fim_suffix>"],
        "fim_mid": vocab["<fim_middle>"],
        "fim_pad": vocab["<fim_pad>"],
        "fim_rep": vocab["<reponame>"],
    }
    assert fields["tokenizer.ggml.add_bos_token"] is False
    assert fields["tokenizer.ggml.add_eos_token"] is False
    assert fields["tokenizer.chat_template"] == TEMPLATE


@pytest.mark.parametrize(
    "quant, file_type, step",
    [
        ("f16", "MOSTLY_F16", 1 / 500),
        ("q8_0", "MOSTLY_Q8_0", 1 / 100),
        ("q5_0", "MOSTLY_Q5_0", 1 / 10),
        ("q4_0", "MOSTLY_Q4_0", 1 / 5),
    ],
)
def test_matrices_take_the_quantisation_and_stay_close(starcoder, tmp_path, quant, file_type, step):
    """1-D tensors and the position embedding stay f32; rows 200 long (not blocks of 32)
    fall back to f16, as llama.cpp's converter does; 4- and 5-bit files keep the embedding
    in q8_0. Every value is within `step` of the tensor's largest."""
    fields, tensors = read(export_gguf(starcoder, tmp_path / "m.gguf", quant))
    assert shapes_and_types(tensors) == starcoder_expected(quant)
    assert fields["general.file_type"] == gguf.LlamaFileType[file_type]
    assert fields["general.quantization_version"] == gguf.GGML_QUANT_VERSION
    model = import_hf(starcoder, dtype=torch.float32)
    for name, tensor in ours_by_gguf_name(model).items():
        expected = tensor.numpy()
        scale = np.abs(expected).max()
        assert np.abs(values(tensors[name]) - expected).max() <= scale * step, name


def test_multi_head_gpt_bigcode_keeps_q_k_v_in_blocks(tmp_path):
    """transformers interleaves a multi-head c_attn per head; llama.cpp splits [Q | K | V]."""
    folder = write_model(tmp_path, n_kv_heads=4)
    fields, tensors = read(export_gguf(folder, tmp_path / "m.gguf"))
    assert fields["starcoder.attention.head_count_kv"] == 4
    assert shapes_and_types(tensors) == starcoder_expected("f32", n_inner=256, kv=64)
    model = import_hf(folder, dtype=torch.float32)
    for name, tensor in ours_by_gguf_name(model).items():
        np.testing.assert_array_equal(values(tensors[name]), tensor.numpy(), err_msg=name)


def starcoder2_expected(n_embd=64, n_inner=256, kv=32, vocab=448, untied=False):
    expected = {
        "token_embd.weight": ([vocab, n_embd], "F32"),
        "output_norm.weight": ([n_embd], "F32"),
        "output_norm.bias": ([n_embd], "F32"),
    }
    if untied:
        expected["output.weight"] = ([vocab, n_embd], "F32")
    for i in range(2):
        for name, shape in (
            ("attn_norm.weight", [n_embd]),
            ("attn_norm.bias", [n_embd]),
            ("attn_q.weight", [n_embd, n_embd]),
            ("attn_q.bias", [n_embd]),
            ("attn_k.weight", [kv, n_embd]),
            ("attn_k.bias", [kv]),
            ("attn_v.weight", [kv, n_embd]),
            ("attn_v.bias", [kv]),
            ("attn_output.weight", [n_embd, n_embd]),
            ("attn_output.bias", [n_embd]),
            ("ffn_norm.weight", [n_embd]),
            ("ffn_norm.bias", [n_embd]),
            ("ffn_up.weight", [n_inner, n_embd]),
            ("ffn_up.bias", [n_inner]),
            ("ffn_down.weight", [n_embd, n_inner]),
            ("ffn_down.bias", [n_embd]),
        ):
            expected[f"blk.{i}.{name}"] = (shape, "F32")
    return expected


def test_starcoder2_from_transformers_with_starcoder2_s_tokens(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.Starcoder2Config(
        vocab_size=448,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_parameters={"rope_type": "default", "rope_theta": 50000.0},
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    theirs = transformers.Starcoder2ForCausalLM(config).eval()
    folder = tmp_path / "sc2"
    theirs.save_pretrained(folder)
    write_tokenizer(folder, special=STARCODER2_SPECIAL_TOKENS)
    fields, tensors = read(export_gguf(folder, tmp_path / "m.gguf"))
    assert fields["general.architecture"] == "starcoder2"
    assert fields["starcoder2.attention.head_count_kv"] == 2
    assert fields["starcoder2.rope.freq_base"] == 50000.0
    assert fields["starcoder2.context_length"] == 128
    assert shapes_and_types(tensors) == starcoder2_expected()
    state = theirs.state_dict()
    for i in range(2):
        for proj, name in (
            ("q_proj", "attn_q"),
            ("k_proj", "attn_k"),
            ("v_proj", "attn_v"),
            ("o_proj", "attn_output"),
        ):
            for leaf in ("weight", "bias"):
                want = state[f"model.layers.{i}.self_attn.{proj}.{leaf}"].numpy()
                np.testing.assert_array_equal(values(tensors[f"blk.{i}.{name}.{leaf}"]), want)
    tokens = fields["tokenizer.ggml.tokens"]
    assert tokens[fields["tokenizer.ggml.fim_rep_token_id"]] == "<repo_name>"
    assert tokens[fields["tokenizer.ggml.fim_sep_token_id"]] == "<file_sep>"
    assert tokens[fields["tokenizer.ggml.fim_pre_token_id"]] == "<fim_prefix>"
    assert "tokenizer.chat_template" not in fields


def test_bias_free_untied_starcoder2_gets_zero_biases_and_its_own_head(tmp_path):
    """llama.cpp requires attn_output's bias; zeros compute what no bias does."""
    folder = write_model(
        tmp_path, position="rotary", n_kv_heads=2, bias=False, tie_embeddings=False, vocab_size=416
    )
    fields, tensors = read(export_gguf(folder, tmp_path / "m.gguf"))
    assert shapes_and_types(tensors) == starcoder2_expected(vocab=416, untied=True)
    for name, tensor in tensors.items():
        if name.endswith(".bias") and "norm" not in name:
            assert not values(tensor).any(), name
    model = import_hf(folder, dtype=torch.float32)
    np.testing.assert_array_equal(
        values(tensors["output.weight"]), model.lm_head.weight.detach().numpy()
    )


# -- bad input ------------------------------------------------------------------------------


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_an_architecture_we_do_not_export_is_one_line(starcoder, tmp_path):
    folder = tmp_path / "llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UserError) as excinfo:
        export_gguf(folder, tmp_path / "m.gguf")
    assert "llama model" in one_line(excinfo) and "convert_hf_to_gguf" in one_line(excinfo)


def test_an_unknown_quantisation_is_one_line(starcoder, tmp_path):
    with pytest.raises(UserError) as excinfo:
        export_gguf(starcoder, tmp_path / "m.gguf", quant="q3_k")
    assert "f32, f16, q8_0, q5_1" in one_line(excinfo)
    assert not (tmp_path / "m.gguf").exists()


def test_an_existing_file_is_kept_unless_forced(starcoder, tmp_path):
    out = tmp_path / "m.gguf"
    out.write_text("mine")
    with pytest.raises(UserError) as excinfo:
        export_gguf(starcoder, out)
    assert "--force" in one_line(excinfo)
    assert out.read_text() == "mine"
    export_gguf(starcoder, out, force=True)
    assert read(out)[0]["general.architecture"] == "starcoder"


def test_a_tokenizer_llama_cpp_would_split_otherwise_is_one_line(starcoder, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(starcoder, folder)
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["pre_tokenizer"] = {"type": "Whitespace"}
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(UserError) as excinfo:
        export_gguf(folder, tmp_path / "m.gguf")
    assert "Whitespace" in one_line(excinfo)
    spec["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False}
    spec["normalizer"] = {"type": "NFC"}
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(UserError) as excinfo:
        export_gguf(folder, tmp_path / "m.gguf")
    assert "normalizer" in one_line(excinfo)


def test_a_quantisation_that_would_quantise_nothing_is_one_line(tmp_path):
    """Rows of 40 and 200 values: no 32-value blocks anywhere, every matrix would be f16."""
    folder = write_model(tmp_path, n_embd=40, n_inner=200, n_head=4)
    with pytest.raises(UserError) as excinfo:
        export_gguf(folder, tmp_path / "m.gguf", quant="q8_0")
    assert "export f16" in one_line(excinfo)
    assert not (tmp_path / "m.gguf").exists()


def test_without_the_gguf_package_the_error_names_the_extra(starcoder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(UserError) as excinfo:
        export_gguf(starcoder, tmp_path / "m.gguf")
    assert "codekiln[gguf]" in one_line(excinfo)


# -- the CLI --------------------------------------------------------------------------------


def test_cli_writes_beside_the_model_and_refuses_to_overwrite(starcoder):
    done = cli_here("export", str(starcoder), "--format", "gguf", "--quant", "q8_0")
    assert done.returncode == 0, done.stderr
    out = starcoder / "model-q8_0.gguf"
    assert str(out) in done.stdout and "llama-server -m" in done.stdout
    assert "MB: 2 f16, 19 f32, 7 q8_0 tensors" in done.stdout
    assert read(out)[0]["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0
    again = cli_here("export", str(starcoder), "--format", "gguf", "--quant", "q8_0")
    assert again.returncode == 2 and "already exists" in again.stderr
    forced = cli_here("export", str(starcoder), "--format", "gguf", "--quant", "q8_0", "--force")
    assert forced.returncode == 0, forced.stderr
    out.unlink()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "onnx"], "--format 'onnx'"),
        (["--format", "gguf", "--quant", "q2"], "f32, f16, q8_0, q5_1"),
        (["--quant", "q8_0"], "--format gguf"),
        (["--format", "gguf", "--ctranslate2"], "drop --format gguf"),
        (["--format", "gguf", "--step", "3"], "model folder"),
    ],
)
def test_cli_bad_options_are_one_line(starcoder, args, message):
    done = cli_here("export", str(starcoder), *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_cli_on_a_folder_that_is_neither_model_nor_run(tmp_path):
    done = cli_here("export", str(tmp_path), "--format", "gguf")
    assert done.returncode == 2 and "neither a model folder" in done.stderr


packed = test_train.packed  # the fixture: a pack and its tokenizer


@pytest.mark.slow  # a training run
def test_cli_exports_a_training_run_s_model_and_a_checkpoint(packed, tmp_path):
    from codekiln.train.loop import train

    data, tokenizer = packed
    run = tmp_path / "run"
    train(data, run, test_train.tiny(tokenizer, max_steps=3), progress=False)
    done = cli_here("export", str(run), "--format", "gguf", "-o", str(tmp_path / "final.gguf"))
    assert done.returncode == 0, done.stderr
    assert read(tmp_path / "final.gguf")[0]["general.name"] == "run"
    done = cli_here(
        "export", str(run), "--format", "gguf", "--step", "3", "-o", str(tmp_path / "s3.gguf")
    )
    assert done.returncode == 0, done.stderr
    assert (run / "export" / "step_3" / "config.json").is_file()
    assert (tmp_path / "s3.gguf").stat().st_size == (tmp_path / "final.gguf").stat().st_size
