"""Parity through llama.cpp: the GGUF file `export_gguf` writes, loaded by llama-cpp-python,
decodes as codekiln's own engine does, and its tokenizer gives our token ids.

The model is tiny but trained (a few hundred steps on standard-library modules, with
codekiln's own StarCoder-style tokenizer): a random-weight model's logits are near-tied, and
a difference in the last bit of a float sum would flip greedy choices that a trained model
makes by a margin.

- float32: llama.cpp's greedy continuation (its own decoding loop, temperature 0) equals
  codekiln's (`CodekilnBackend`, greedy) for 64 new tokens from each prompt, token for token.
- q8_0: quantised weights change some logits a little, so a near-tie can go the other way.
  Compared free-running, one such flip would change the whole rest of the continuation and
  count as up to 64 disagreements (free-running, the q8_0 file agrees on 54-63% of positions
  here; teacher-forced, on 98-99%). The issue's "agree on >= 95% of positions" is read
  teacher-forced: llama.cpp evaluates the prompt followed by codekiln's float32 continuation
  in one pass, and at each of the 64 positions its greedy choice (the argmax of that
  position's logits) is compared with the token codekiln chose there.
- Tokenizer: llama.cpp's tokenizer alone (`vocab_only=True`) encodes 50 standard-library
  files (the first 2,000 characters of each) and texts with special tokens in them to the ids
  `tokenizers` gives (both parse special-token text as the special token).
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pytest
import torch

from codekiln.errors import UserError
from codekiln.generate import CodekilnBackend, SamplingParams
from codekiln.model import CodeGPT, ModelConfig, export_hf
from codekiln.tokenizer.special import EOS, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX
from codekiln.tokenizer.train import TokenizerConfig, _hf_files, train_bpe

pytest.importorskip("gguf")
llama_cpp = pytest.importorskip("llama_cpp")

pytestmark = pytest.mark.slow

NEW_TOKENS = 64
STEPS = 600
PROMPTS = [
    "def read_lines(path):\n    with open(path) as f:\n",
    "import os\nimport sys\n\n\nclass Config:\n    def __init__(self, name):\n",
    "    for i in range(10):\n        if i % 2 == 0:\n",
    'def _parse(text):\n    """Return the tokens of text."""\n    result = []\n',
]
SHAPES = {
    "starcoder": {},
    "starcoder2": {"position": "rotary", "n_kv_heads": 2},
}


def stdlib_files() -> list[Path]:
    return sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))


def train_model(root: Path, arch: str) -> Path:
    """A tiny model of this architecture trained for 600 steps on 50 standard-library modules
    with codekiln's tokenizer, exported as a Hugging Face folder."""
    text = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in stdlib_files()[:50])
    tokenizer = train_bpe([text[:300_000]], 512, min_frequency=2)
    tokenizer_dir = root / "tokenizer"
    tokenizer_dir.mkdir(parents=True)
    tokenizer.save(str(tokenizer_dir / "tokenizer.json"))
    for name, content in _hf_files(TokenizerConfig(vocab_size=512)).items():
        (tokenizer_dir / name).write_text(json.dumps(content, indent=2))
    ids = torch.tensor(tokenizer.encode(text).ids)
    config = ModelConfig(
        vocab_size=tokenizer.get_vocab_size(),
        n_positions=256,
        n_embd=64,
        n_layer=2,
        n_head=4,
        **SHAPES[arch],
    )
    windows = ids[: len(ids) // 65 * 65].view(-1, 65)  # (N, 65): 64 inputs and the next token
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = CodeGPT(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / STEPS)
        for _ in range(STEPS):
            batch = windows[torch.randint(len(windows), (16,), generator=generator)]
            _, loss = model(batch[:, :-1], labels=batch[:, 1:])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    finally:
        torch.set_num_threads(threads)
    return export_hf(model.eval(), root / "model", tokenizer_dir=tokenizer_dir)


@pytest.fixture(scope="module", params=list(SHAPES))
def exported(request, tmp_path_factory) -> dict:
    """The trained folder, its f32 and q8_0 GGUF files, and codekiln's greedy continuations."""
    from codekiln.model.gguf import export_gguf

    root = tmp_path_factory.mktemp(request.param)
    folder = train_model(root, request.param)
    files = {}
    for quant in ("f32", "q8_0"):
        try:
            files[quant] = export_gguf(folder, root / f"model-{quant}.gguf", quant)
        except UserError as error:
            pytest.skip(f"{request.param} is not exported as GGUF: {error}")
    ours = CodekilnBackend.from_folder(folder, device="cpu", dtype="float32")
    params = SamplingParams(greedy=True, max_new_tokens=NEW_TOKENS, ignore_eos=True)
    continuations = []
    for prompt in PROMPTS:
        [[sample]] = ours.complete([prompt], params)
        continuations.append((ours.prompt_ids(prompt), list(sample.token_ids)))
    return {"folder": folder, "files": files, "continuations": continuations}


def load(path: Path, **options):
    return llama_cpp.Llama(
        model_path=str(path), n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False, **options
    )


def amx_build() -> bool:
    """Whether this llama-cpp-python was built with llama.cpp's AMX kernels (a native build on
    a CPU with AMX): on our machines they die with SIGILL on q8_0 weights, and pytest with them
    (the Makefile's build leaves AMX out)."""
    return "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode()


def llama_greedy(llm, prompt_ids: list[int], new_tokens: int) -> list[int]:
    """llama.cpp's own decoding loop, greedy (temperature 0, no repetition penalty), past the
    end-of-text token for exactly new_tokens tokens."""
    llm.reset()  # no reuse of a previous prompt's cache
    tokens = []
    for token in llm.generate(prompt_ids, temp=0.0, repeat_penalty=1.0):
        tokens.append(token)
        if len(tokens) == new_tokens:
            break
    return tokens


def test_float32_greedy_tokens_equal_codekiln_s(exported):
    llm = load(exported["files"]["f32"])
    for prompt_ids, ours in exported["continuations"]:
        assert len(ours) == NEW_TOKENS
        assert llama_greedy(llm, prompt_ids, NEW_TOKENS) == ours


def test_q8_0_greedy_choices_agree_on_95_percent_of_positions(exported):
    if amx_build():
        pytest.skip("llama-cpp-python built with AMX kernels; rebuild it as `make test` does")
    llm = load(exported["files"]["q8_0"], logits_all=True)
    agree = total = 0
    for prompt_ids, ours in exported["continuations"]:
        llm.reset()
        llm.eval(prompt_ids + ours[:-1])
        # Row i holds the logits after token i: the choice for ours[j] is row len(prompt)-1+j.
        choices = llm.scores[len(prompt_ids) - 1 : len(prompt_ids) - 1 + NEW_TOKENS].argmax(-1)
        agree += sum(int(a) == b for a, b in zip(choices, ours, strict=True))
        total += NEW_TOKENS
    assert agree / total >= 0.95, f"{agree}/{total} positions agree"


def test_llama_cpp_tokenizer_gives_our_ids(exported):
    from tokenizers import Tokenizer

    ours = Tokenizer.from_file(str(exported["folder"] / "tokenizer.json"))
    llm = load(exported["files"]["f32"], vocab_only=True)
    files = stdlib_files()
    texts = [p.read_text(encoding="utf-8", errors="replace")[:2000] for p in files[::3][:50]]
    texts += [
        f"{FIM_PREFIX}def f(x):\n    {FIM_SUFFIX}\n    return y\n{FIM_MIDDLE}y = x + 1",
        f"x = 12345  # 67 apples{EOS}<filename>a.py\nprint('héllo, 世界 🙂')",
        "  \t\n\n   trailing   spaces   \r\n",
    ]
    mismatched = [
        text[:40]
        for text in texts
        if llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) != ours.encode(text).ids
    ]
    assert not mismatched, f"{len(mismatched)}/{len(texts)} texts differ: {mismatched[:3]}"
