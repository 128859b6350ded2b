"""A Hugging Face model folder -> one GGUF file, for llama.cpp and what runs on it (Ollama,
Tabby, llama.vim, llama.vscode), written with the `gguf` package.

What llama.cpp reads, as its own converter writes it (convert_hf_to_gguf.py) and its loader
checks it (src/models/starcoder*.cpp, src/llama-vocab.cpp):

- gpt_bigcode exports as architecture `starcoder`: learned positions (`position_embd`), the
  fused [Q | K | V] projection as `attn_qkv` (llama.cpp splits it at n_embd and
  n_embd + n_kv_heads * head_dim, so multi-head models keep ours, not transformers' per-head
  order), head_count_kv 1 for multi-query attention.
- starcoder2 exports as `starcoder2`: q, k and v as `attn_q`/`attn_k`/`attn_v`, as
  llama.cpp's converter writes them (older builds read no fused form), rotary in the
  GPT-NeoX layout llama.cpp applies to this architecture (ours and transformers' as well),
  `rope.freq_base`. A model without biases gets zero biases: llama.cpp requires the output
  projection's, and zeros compute the same thing.
- Both: layer norms with biases; `output` only for an untied head (llama.cpp uses the token
  embedding when it is absent); GELU in its tanh form, which is what llama.cpp computes.
- Weights keep transformers' nn.Linear layout, [out, in]: GGUF lists dimensions the other
  way round, so that is the {in, out} llama.cpp asks for, without a transpose.
- The tokenizer as `gpt2` (byte-level BPE): every token by id, in its byte-level spelling
  (added tokens as their text), merges, token types (CONTROL for special tokens,
  USER_DEFINED for other added ones, UNUSED for [PAD<id>] rows past the tokenizer's size),
  bos/eos/unk/pad, the FIM ids and `tokenizer.ggml.pre`, the name of llama.cpp's regex for
  the pre-tokenizer: "starcoder" for digits split one by one then GPT-2's byte-level regex
  (StarCoder's, StarCoder2's and codekiln's), "gpt-2" for the byte-level regex alone.

Quantisations: f32, f16, q8_0 (blocks of 32 along each row, an fp16 scale per block) and
the 4- and 5-bit block types q5_1, q5_0, q4_1, q4_0 (the token embedding and an output head
stay q8_0 in those). 1-D tensors (norms, biases) and the position embedding stay f32, as
llama.cpp's converter keeps them; a matrix whose rows are not a multiple of 32 long is f16
in a quantised file (the converter's fallback too).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codekiln.errors import UserError
from codekiln.manifest import atomic_path
from codekiln.tokenizer.family import FIM_SPELLINGS
from codekiln.tokenizer.special import FILE_SEP, REPO_NAME, REPONAME

# Name -> (gguf.GGMLQuantizationType, gguf.LlamaFileType) member names. The 4- and 5-bit
# types are the blocks of 32 the gguf package quantises itself (llama.cpp's k-quants need
# llama-quantize).
QUANT_TYPES = {
    "f32": ("F32", "ALL_F32"),
    "f16": ("F16", "MOSTLY_F16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
    "q5_1": ("Q5_1", "MOSTLY_Q5_1"),
    "q5_0": ("Q5_0", "MOSTLY_Q5_0"),
    "q4_1": ("Q4_1", "MOSTLY_Q4_1"),
    "q4_0": ("Q4_0", "MOSTLY_Q4_0"),
}
GGUF_QUANTS = tuple(QUANT_TYPES)
# In a 4- or 5-bit file these stay q8_0: the embedding and the output head lose most from
# coarse steps (llama-quantize keeps the head at higher precision for the same reason).
KEEP_Q8 = ("token_embd.weight", "output.weight")
INSTALL = "pip install 'codekiln[gguf]'"
ARCHITECTURES = {"gpt_bigcode": "starcoder", "starcoder2": "starcoder2"}
Q8_BLOCK = 32

# Token types as llama.cpp numbers them (gguf.TokenType).
NORMAL, UNUSED, CONTROL, USER_DEFINED = 1, 5, 3, 4

# tokenizer.ggml.<role>_token_id -> the token texts that fill it, first found wins (the FIM
# sentinels in the spellings the tokenizer stage knows, StarCoder's first).
FIM_ROLES = {
    "fim_pre": tuple(s.prefix for s in FIM_SPELLINGS),
    "fim_suf": tuple(s.suffix for s in FIM_SPELLINGS),
    "fim_mid": tuple(s.middle for s in FIM_SPELLINGS),
    "fim_pad": tuple(s.pad for s in FIM_SPELLINGS),
    "fim_rep": (REPO_NAME, REPONAME),
    "fim_sep": (FILE_SEP,),
}

# Our block's modules -> llama.cpp's tensor names (gguf's MODEL_TENSOR members).
_BLOCK_TENSORS = {
    "ln_1": "ATTN_NORM",
    "attn.c_proj": "ATTN_OUT",
    "ln_2": "FFN_NORM",
    "mlp.c_fc": "FFN_UP",
    "mlp.c_proj": "FFN_DOWN",
}
_TOP_TENSORS = {
    "wte": "TOKEN_EMBD",
    "wpe": "POS_EMBD",
    "ln_f": "OUTPUT_NORM",
    "lm_head": "OUTPUT",
}


def _gguf():
    try:
        import gguf
    except ImportError:
        raise UserError(f"GGUF export needs the gguf package: {INSTALL}") from None
    return gguf


def check_quant(quant: str) -> str:
    """The quantisation, if GGUF export writes it; a UserError naming those it does."""
    if quant not in GGUF_QUANTS:
        raise UserError(
            f"--quant {quant!r} is not one GGUF export writes: {', '.join(GGUF_QUANTS)}"
        )
    return quant


def tensor_type(name: str, shape: tuple[int, ...], quant: str) -> str:
    """The type one tensor is stored in, in a file of `quant` (shape as torch gives it).

    >>> tensor_type("blk.0.ffn_up.weight", (256, 64), "q8_0")
    'q8_0'
    >>> tensor_type("blk.0.ffn_up.bias", (256,), "q8_0")
    'f32'
    >>> tensor_type("blk.0.ffn_down.weight", (64, 200), "q8_0")  # rows of 200: not blocks
    'f16'
    >>> tensor_type("position_embd.weight", (128, 64), "f16")
    'f32'
    >>> tensor_type("token_embd.weight", (400, 64), "q4_0")
    'q8_0'
    """
    if len(shape) < 2 or name == "position_embd.weight":
        return "f32"
    if quant not in ("f32", "f16") and shape[-1] % Q8_BLOCK:
        return "f16"
    if quant not in ("f32", "f16", "q8_0") and name in KEEP_Q8:
        return "q8_0"
    return quant


def pre_tokenizer_name(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's name (`tokenizer.ggml.pre`) for how a byte-level BPE tokenizer.json
    splits text; a UserError for a split llama.cpp does not reproduce.

    >>> byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    >>> digits = {"type": "Digits", "individual_digits": True}
    >>> pre_tokenizer_name({"pre_tokenizer": {"type": "Sequence",
    ...                     "pretokenizers": [digits, byte_level]}})
    'starcoder'
    >>> pre_tokenizer_name({"pre_tokenizer": byte_level})
    'gpt-2'
    """
    if tokenizer_json.get("normalizer"):
        raise UserError(
            "the tokenizer has a normalizer, which llama.cpp's byte-level BPE does not apply: "
            "GGUF export takes StarCoder-style tokenizers (no normalizer)"
        )
    spec = tokenizer_json.get("pre_tokenizer") or {}
    steps = spec.get("pretokenizers", []) if spec.get("type") == "Sequence" else [spec]
    kinds = [step.get("type") for step in steps]
    byte_level = steps[-1] if kinds and kinds[-1] == "ByteLevel" else None
    if (
        byte_level is not None
        and not byte_level.get("add_prefix_space", False)
        and byte_level.get("use_regex", True)
    ):
        if kinds == ["ByteLevel"]:
            return "gpt-2"
        if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
            return "starcoder"
    raise UserError(
        f"the tokenizer's pre-tokenizer ({' + '.join(map(str, kinds)) or 'none'}) has no "
        "llama.cpp counterpart: GGUF export takes byte-level BPE tokenizers split as "
        "StarCoder's (digits one by one, then GPT-2's regex) or as GPT-2's"
    )


@dataclass
class Vocab:
    """The tokenizer as GGUF holds it."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    special: dict[str, int] = field(default_factory=dict)  # "bos", "eos", "fim_pre", ...
    add_bos: bool = False
    add_eos: bool = False
    chat_template: Any = None


def read_vocab(folder: Path, vocab_size: int) -> Vocab:
    """The tokenizer of a model folder, padded to the model's `vocab_size` rows."""
    from codekiln.tokenizer.family import read_json_object, token_text

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"no tokenizer.json in {folder}: GGUF export writes the tokenizer too")
    spec = read_json_object(path)
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise UserError(
            f"{path} is a {model.get('type')} tokenizer: GGUF export takes byte-level BPE ones"
        )
    pre = pre_tokenizer_name(spec)
    by_id: dict[int, str] = {i: t for t, i in model.get("vocab", {}).items()}
    added = {t["id"]: t for t in spec.get("added_tokens", [])}
    for i, token in added.items():
        by_id[i] = token["content"]  # added tokens are matched on their text, not bytes
    if by_id and max(by_id) >= vocab_size:
        raise UserError(
            f"tokenizer {folder} has token ids up to {max(by_id)} but the model embeds "
            f"{vocab_size}: the tokenizer is not this model's"
        )
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")  # embedding rows no token uses, as llama.cpp's converter
            types.append(UNUSED)
        else:
            tokens.append(by_id[i])
            types.append(
                NORMAL if i not in added else CONTROL if added[i].get("special") else USER_DEFINED
            )
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    ids = {token: i for i, token in by_id.items()}
    config_file = folder / "tokenizer_config.json"
    config = read_json_object(config_file) if config_file.is_file() else {}
    special: dict[str, int] = {}
    for role in ("bos", "eos", "unk", "pad"):
        token = token_text(config.get(f"{role}_token"))
        if token is not None and token in ids:
            special[role] = ids[token]
    if "eos" not in special and "<|endoftext|>" in ids:
        special["eos"] = ids["<|endoftext|>"]
    for role, spellings in FIM_ROLES.items():
        found = next((ids[t] for t in spellings if t in ids), None)
        if found is not None:
            special[role] = found
    template = config.get("chat_template")
    jinja = folder / "chat_template.jinja"  # where transformers 5 keeps it
    if template is None and jinja.is_file():
        template = jinja.read_text(encoding="utf-8")
    return Vocab(
        tokens=tokens,
        types=types,
        merges=merges,
        pre=pre,
        special=special,
        add_bos=bool(config.get("add_bos_token", False)),
        add_eos=bool(config.get("add_eos_token", False)),
        chat_template=template,
    )


def gguf_tensors(config, parameters) -> Iterator[tuple[str, Any]]:
    """(llama.cpp's name, float32 tensor) for CodeGPT's parameters, given as (our name,
    tensor) pairs, for the architecture `config` exports as (meta tensors give the plan)."""
    import torch

    gguf = _gguf()
    names = gguf.TENSOR_NAMES
    tensor = gguf.MODEL_TENSOR
    rotary = config.position == "rotary"
    C, kv = config.n_embd, config.kv_dim
    for ours, value in parameters:
        value = value.detach().to(torch.float32)
        parts = ours.split(".")
        leaf = parts[-1]
        if parts[0] != "blocks":
            yield f"{names[tensor[_TOP_TENSORS[parts[0]]]]}.{leaf}", value
            continue
        bid, module = int(parts[1]), ".".join(parts[2:-1])
        if module == "attn.c_attn" and rotary:
            for key, lo, hi in (("ATTN_Q", 0, C), ("ATTN_K", C, C + kv), ("ATTN_V", C + kv, None)):
                yield f"{names[tensor[key]].format(bid=bid)}.{leaf}", value[lo:hi]
            continue
        key = "ATTN_QKV" if module == "attn.c_attn" else _BLOCK_TENSORS[module]
        yield f"{names[tensor[key]].format(bid=bid)}.{leaf}", value
    if rotary and not config.bias:
        yield from _zero_biases(config, names, tensor)


def _zero_biases(config, names, tensor) -> Iterator[tuple[str, Any]]:
    """A bias-free starcoder2's biases as zeros: llama.cpp requires attn_output's."""
    import torch

    sizes = {
        "ATTN_Q": config.n_embd,
        "ATTN_K": config.kv_dim,
        "ATTN_V": config.kv_dim,
        "ATTN_OUT": config.n_embd,
        "FFN_UP": config.inner_dim,
        "FFN_DOWN": config.n_embd,
    }
    for bid in range(config.n_layer):
        for key, size in sizes.items():
            yield f"{names[tensor[key]].format(bid=bid)}.bias", torch.zeros(size)


def export_gguf(
    model_dir: str | Path, out_path: str | Path, quant: str = "f32", force: bool = False
) -> Path:
    """Write the gpt_bigcode or starcoder2 model folder `model_dir` (weights and tokenizer)
    as one GGUF file at `out_path`, its matrices in `quant` (GGUF_QUANTS); to a temporary
    name, renamed when whole. UserError for another architecture, an unknown quantisation,
    a tokenizer llama.cpp would split differently, or an `out_path` that exists (unless
    `force`). One tensor at a time is held in memory."""
    from codekiln.model.convert import config_from_hf
    from codekiln.model.hf import hf_parameters, read_hf_config

    check_quant(quant)
    gguf = _gguf()
    model_dir, out_path = Path(model_dir), Path(out_path)
    if out_path.exists() and not (force and out_path.is_file()):
        raise UserError(
            f"{out_path} already exists: choose another -o file, or --force to replace it"
        )
    hf = read_hf_config(model_dir)
    kind = hf.get("model_type")
    if kind not in ARCHITECTURES:
        raise UserError(
            f"{model_dir} holds a {kind} model: codekiln writes GGUF for gpt_bigcode "
            "(StarCoder) and starcoder2 models; convert others with llama.cpp's "
            "convert_hf_to_gguf.py"
        )
    try:
        config = config_from_hf(hf)
    except UserError as exc:
        raise UserError(f"{model_dir / 'config.json'}: {exc}") from None
    vocab = read_vocab(model_dir, config.vocab_size)
    arch = ARCHITECTURES[kind]
    qtypes = {name: gguf.GGMLQuantizationType[q] for name, (q, _) in QUANT_TYPES.items()}
    file_type = gguf.LlamaFileType[QUANT_TYPES[quant][1]]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path) as tmp:
        writer = gguf.GGUFWriter(tmp, arch)
        name = model_dir.resolve().name
        if name == "model":  # a training run's RUN/model: the run names it
            name = model_dir.resolve().parent.name
        writer.add_type("model")
        writer.add_name(name)
        writer.add_file_type(int(file_type))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_context_length(config.n_positions)
        writer.add_embedding_length(config.n_embd)
        writer.add_feed_forward_length(config.inner_dim)
        writer.add_block_count(config.n_layer)
        writer.add_head_count(config.n_head)
        writer.add_head_count_kv(config.n_kv_heads)
        writer.add_layer_norm_eps(config.layer_norm_epsilon)
        if arch == "starcoder2":
            writer.add_rope_freq_base(config.rope_theta)
        _add_vocab(writer, gguf, vocab)
        # The tensor table goes first, from the model's shapes; then each tensor is read,
        # converted and written in turn, so no more than one is in memory.
        plan = []
        for tensor_name, meta in gguf_tensors(config, _meta_parameters(config)):
            shape = tuple(meta.shape)
            qtype = qtypes[tensor_type(tensor_name, shape, quant)]
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            nbytes = int(np.prod(shape)) // block * size
            writer.add_tensor_info(tensor_name, shape, np.dtype(np.float32), nbytes, qtype)
            plan.append((tensor_name, qtype))
        if quant not in ("f32", "f16") and all(
            q == qtypes["f16"] for _, q in plan if q != qtypes["f32"]
        ):
            raise UserError(
                f"no matrix of this model has rows a multiple of {Q8_BLOCK} long (n_embd "
                f"{config.n_embd}, MLP {config.inner_dim}), so {quant} would quantise nothing: "
                "export f16"
            )
        writer.write_header_to_file(path=tmp)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        tensors = gguf_tensors(config, hf_parameters(model_dir, config))
        for (tensor_name, qtype), (name_read, data) in zip(plan, tensors, strict=True):
            assert tensor_name == name_read, (tensor_name, name_read)
            writer.write_tensor_data(gguf.quants.quantize(data.numpy(), qtype))
        writer.close()
    return out_path


def _meta_parameters(config) -> list[tuple[str, Any]]:
    """CodeGPT's parameters on the meta device, in the order hf_parameters yields them."""
    import torch

    from codekiln.model.convert import weight_slots
    from codekiln.model.gpt import CodeGPT

    with torch.device("meta"):
        state = dict(CodeGPT(config).named_parameters())
    order = dict.fromkeys(slot.name for slot in weight_slots(config).values())
    return [(name, state[name]) for name in order]


def _add_vocab(writer, gguf, vocab: Vocab) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    for role, token_id in vocab.special.items():
        writer.add_uint32(f"tokenizer.ggml.{role}_token_id", token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)


def gguf_summary(path: Path) -> str:
    """One line on a GGUF file: its size and how many tensors each type holds, e.g.
    "12.3 MB: 2 f16, 30 f32, 17 q8_0 tensors"."""
    from collections import Counter

    reader = _gguf().GGUFReader(path)
    counts = Counter(t.tensor_type.name.lower() for t in reader.tensors)
    kinds = ", ".join(f"{counts[kind]} {kind}" for kind in sorted(counts))
    return f"{Path(path).stat().st_size / 1e6:.1f} MB: {kinds} tensors"
