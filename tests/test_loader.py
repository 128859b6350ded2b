"""Fill-in-the-Middle and the token loader, on pack directories written here by hand."""

import inspect
import itertools
import json
import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import small_bpe
from tokenizers import Tokenizer, models

import codekiln.pack.loader as loader_module
from codekiln.errors import UserError
from codekiln.pack.fim import FimIds, apply_fim, fim_tokens, fit_length
from codekiln.pack.format import FORMAT_VERSION, dtype_for, shard_names
from codekiln.pack.loader import Batch, LoaderConfig, TokenLoader
from codekiln.tokenizer.family import FIM_SPELLINGS
from codekiln.tokenizer.special import EOS, FILENAME, GH_STARS, REPONAME, SPECIAL_TOKENS

UNICODE = "naïve café — 日本語のコード 😀 ünïcödé ∑ λ → ✓\n"


def corpus() -> list[str]:
    """Documents of real Python (a few stdlib modules cut at blank-line pairs) and Unicode."""
    docs = []
    for module in (textwrap, json, inspect):
        source = inspect.getsource(module)
        docs.extend(d for d in source.split("\n\n\n") if d.strip())
    for i, doc in enumerate(docs[::7]):
        docs.append(f"# {UNICODE * (i % 3 + 1)}{doc}")
    docs.append('s = "<fim_middle> and <|endoftext|> are just text here"\n')
    return docs


def train_tokenizer(special_tokens: list[str]) -> Tokenizer:
    """A byte-level BPE of ~600 tokens, the special tokens first."""
    return small_bpe(corpus(), special_tokens, vocab_size=600)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """StarCoder's 19 special tokens as ids 0-18."""
    directory = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(list(SPECIAL_TOKENS)).save(str(directory / "tokenizer.json"))
    return directory


@pytest.fixture
def tok(tokenizer_dir) -> Tokenizer:
    return Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))


@pytest.fixture
def ids(tok) -> FimIds:
    return FimIds.from_tokenizer(tok)


def encode(tok: Tokenizer, text: str) -> list[int]:
    """Text as plain tokens: special-token text in a document is not a special token."""
    tok.encode_special_tokens = True
    try:
        return tok.encode(text, add_special_tokens=False).ids
    finally:
        tok.encode_special_tokens = False


def document(tok: Tokenizer, text: str, repo: str | None = None) -> list[int]:
    """A packed document: an optional StarCoder metadata prefix, the text, <|endoftext|>."""
    prefix = []
    if repo:
        special = {t: tok.token_to_id(t) for t in (REPONAME, FILENAME, GH_STARS)}
        prefix = [special[REPONAME], *encode(tok, repo), special[FILENAME]]
        prefix += [*encode(tok, "pkg/mod.py"), special[GH_STARS], *encode(tok, "42\n")]
    return [*prefix, *encode(tok, text), tok.token_to_id(EOS)]


def write_pack(
    directory: Path, splits: dict[str, list[list[int]]], vocab_size: int, docs_per_shard: int
) -> Path:
    """A pack directory in the token-shard format (format.py), from documents' ids."""
    directory.mkdir(parents=True, exist_ok=True)
    dtype = dtype_for(vocab_size)
    meta = {"format_version": FORMAT_VERSION, "dtype": dtype.name, "vocab_size": vocab_size}
    meta["special_ids"] = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    meta["format"] = {  # as pack records a StarCoder tokenizer's: FIM while training
        "family": "starcoder",
        "eos": EOS,
        "fim": "context",
        "fim_tokens": FIM_SPELLINGS[0].to_dict(),
        "fim_rate": 0.0,
        "repo_metadata_probability": None,
        "context_length": None,
    }
    meta["splits"] = {}
    for split, docs in splits.items():
        names, tokens = [], 0
        for index, start in enumerate(range(0, max(len(docs), 1), docs_per_shard)):
            shard = docs[start : start + docs_per_shard]
            bin_name, idx_name = shard_names(split, index)
            flat = np.array([t for doc in shard for t in doc], dtype=dtype)
            flat.tofile(directory / bin_name)
            offsets = np.concatenate([[0], np.cumsum([len(d) for d in shard])]).astype(np.int64)
            with open(directory / idx_name, "wb") as f:  # np.save(path) would add .npy
                np.save(f, offsets)
            names.append(bin_name)
            tokens += len(flat)
        meta["splits"][split] = {"shards": names, "tokens": tokens, "documents": len(docs)}
    (directory / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    (directory / "manifest.json").write_text("{}", encoding="utf-8")
    return directory


@pytest.fixture
def pack_dir(tmp_path, tok) -> Path:
    """About 40k training tokens in several shards; every fifth document has metadata."""
    docs = [
        document(tok, text, repo="owner/repo" if i % 5 == 0 else None)
        for i, text in enumerate(corpus())
    ]
    return write_pack(
        tmp_path / "pack",
        {"train": docs, "valid": docs[:3]},
        tok.get_vocab_size(),
        docs_per_shard=40,
    )


def stream(pack: Path, split: str = "train") -> np.ndarray:
    meta = json.loads((pack / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])
    return np.concatenate(
        [np.fromfile(pack / name, dtype=dtype) for name in meta["splits"][split]["shards"]]
    ).astype(np.int64)


class ScriptedRng:
    """Stands in for np.random.Generator with chosen cut points and order coin."""

    def __init__(self, cuts: tuple[int, int], coins: list[float]):
        self.cuts, self.coins, self.calls = cuts, list(coins), []

    def integers(self, low, high, size):
        self.calls.append((low, high, size))
        return np.array(self.cuts)

    def random(self):
        return self.coins.pop(0)


def parse_fim(out: np.ndarray, ids: FimIds) -> tuple[str, list[int], list[int], list[int]]:
    """(mode, prefix, middle, suffix) ids of one FIM'd fragment; SPM gives prefix+middle."""
    out = out.tolist()
    assert out.count(ids.prefix) == out.count(ids.suffix) == out.count(ids.middle) == 1
    m = out.index(ids.middle)
    if out[:2] == [ids.prefix, ids.suffix]:
        return "SPM", [], out[m + 1 :], out[2:m]
    s = out.index(ids.suffix)
    assert out[0] == ids.prefix and s < m
    return "PSM", out[1:s], out[m + 1 :], out[s + 1 : m]


def text_of(tok: Tokenizer, token_ids: list[int]) -> str:
    return tok.decode(token_ids, skip_special_tokens=False)


# ---- Fill-in-the-Middle ----


def test_psm_and_spm_layouts_are_token_exact(tok, ids):
    text = "def add(a, b):"
    fragment = encode(tok, text)
    prefix, middle, suffix = encode(tok, "def "), encode(tok, "add(a, b)"), encode(tok, ":")

    rng = ScriptedRng(cuts=(13, 4), coins=[0.9])  # unsorted on purpose; 0.9 >= 0.5: PSM
    psm = fim_tokens(fragment, tok, ids, rng, spm_rate=0.5)
    assert rng.calls == [(0, len(text) + 1, 2)]
    assert psm.tolist() == [ids.prefix, *prefix, ids.suffix, *suffix, ids.middle, *middle]
    assert psm.dtype == np.int64

    spm = fim_tokens(fragment, tok, ids, ScriptedRng((4, 13), [0.1]), spm_rate=0.5)
    assert spm.tolist() == [ids.prefix, ids.suffix, *suffix, ids.middle, *prefix, *middle]


@pytest.mark.parametrize("spm_rate", [0.0, 1.0])
def test_fim_rearranges_back_to_the_original_text(tok, ids, spm_rate):
    rng = np.random.default_rng(0)
    checked = 0
    for text in corpus():
        fragment = encode(tok, text)
        out = fim_tokens(fragment, tok, ids, rng, spm_rate)
        mode, prefix, middle, suffix = parse_fim(out, ids)
        assert mode == ("SPM" if spm_rate else "PSM") or not prefix
        # Each piece is tokenized on its own, so it decodes to its text exactly.
        assert text_of(tok, prefix) + text_of(tok, middle) + text_of(tok, suffix) == text
        checked += 1
    assert checked > 50


def test_special_tokens_in_a_fragment_stay_single_and_text_stays_text(tok, ids):
    meta_ids = {tok.token_to_id(t) for t in (REPONAME, FILENAME, GH_STARS)}
    fragment = document(tok, "x = '<fim_middle>'\n" + corpus()[3], repo="o/r")[:-1]
    rng = np.random.default_rng(1)
    for _ in range(200):
        out = fim_tokens(fragment, tok, ids, rng, spm_rate=0.5)
        mode, prefix, middle, suffix = parse_fim(out, ids)  # one real <fim_middle> only
        assert sorted(t for t in out.tolist() if t in meta_ids) == sorted(meta_ids)
        rebuilt = text_of(tok, prefix + middle) + text_of(tok, suffix)
        assert rebuilt == text_of(tok, fragment)


def test_fragments_fim_cannot_rearrange_faithfully_are_left_alone(tok, ids):
    cut = encode(tok, "日本語のコード")[1:]  # starts inside a multi-byte character
    assert "\ufffd" in tok.decode(cut)
    one_char = encode(tok, "x")
    has_sentinel = [*encode(tok, "a = 1"), ids.middle, *encode(tok, "b = 2")]
    for fragment in (cut, one_char, has_sentinel, []):
        rng = np.random.default_rng(5)
        out = fim_tokens(fragment, tok, ids, rng, spm_rate=0.5)
        assert out.tolist() == list(fragment)
        assert rng.random() == np.random.default_rng(5).random()  # nothing drawn


@pytest.mark.slow
def test_fim_and_spm_rates_match_the_settings(tok, ids):
    eos = ids.eos
    texts = [t for t in corpus() if 200 < len(t) < 2000]
    fim_rate, spm_rate, trials = 0.3, 0.7, 1200
    rng = np.random.default_rng(2)
    fragments = fims = spms = 0
    for i in range(trials):
        a, b, c = (encode(tok, texts[(3 * i + k) % len(texts)]) for k in range(3))
        sequence = np.array([*a[-40:], eos, *b[:60], eos, *c], dtype=np.int64)
        tokens, _ = apply_fim(sequence, tok, ids, rng, fim_rate, spm_rate)
        out = tokens.tolist()
        fragments += 3
        fims += out.count(ids.prefix)
        spms += sum(out[j : j + 2] == [ids.prefix, ids.suffix] for j in range(len(out) - 1))
    n = fragments
    assert abs(fims / n - fim_rate) < 4 * (fim_rate * (1 - fim_rate) / n) ** 0.5
    # An empty prefix makes PSM look like SPM: with pieces of 40+ tokens that is under 2%.
    assert abs(spms / fims - spm_rate) < 4 * (spm_rate * (1 - spm_rate) / fims) ** 0.5 + 0.02


def test_fim_rate_zero_leaves_the_sequence_alone(tok, ids):
    sequence = np.array(document(tok, corpus()[0]) + encode(tok, corpus()[1]))
    tokens, mask = apply_fim(sequence, tok, ids, np.random.default_rng(0), 0.0, 0.5)
    assert tokens.tolist() == sequence.tolist() and mask.all()


def test_apply_fim_keeps_the_length_and_the_document_breaks(tok, ids):
    texts = [t for t in corpus() if 100 < len(t) < 600][:8]
    docs = [encode(tok, t) for t in texts]
    sequence = np.array([t for d in docs for t in [*d, ids.eos]][:-30], dtype=np.int64)
    rng = np.random.default_rng(3)
    for _ in range(20):
        tokens, mask = apply_fim(sequence, tok, ids, rng, fim_rate=1.0, spm_rate=0.5)
        assert len(tokens) == len(mask) == len(sequence)
        assert mask.all()  # FIM only grows a context here, so the end is cut, never padded
        fragments = np.split(tokens, np.flatnonzero(tokens == ids.eos))
        assert 1 < len(fragments) <= len(docs)  # growth pushes the end out, never adds breaks
        for k, fragment in enumerate(fragments[:-1]):  # whole documents, rearranged
            _, prefix, middle, suffix = parse_fim(fragment[1 if k else 0 :], ids)
            assert text_of(tok, prefix + middle) + text_of(tok, suffix) == texts[k]


def test_fit_length_truncates_and_pads():
    tokens, mask = fit_length(np.arange(5), 8, pad=4)
    assert tokens.tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert mask.tolist() == [True] * 5 + [False] * 3
    tokens, mask = fit_length(np.arange(5), 3, pad=4)
    assert tokens.tolist() == [0, 1, 2] and mask.all()


def test_fim_ids_need_the_fim_tokens():
    tokenizer = Tokenizer(models.BPE())
    tokenizer.add_special_tokens([EOS])
    with pytest.raises(UserError, match="codekiln tokenizer train"):
        FimIds.from_tokenizer(tokenizer)


# ---- the loader ----


def config(**overrides) -> LoaderConfig:
    return LoaderConfig(**{"seq_len": 64, "batch_size": 4, "seed": 7, **overrides})


def batches(loader: TokenLoader, n: int) -> list[Batch]:
    return list(itertools.islice(loader, n))


def same(a: list[Batch], b: list[Batch]) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x.input_ids, y.input_ids)
        and np.array_equal(x.labels, y.labels)
        and np.array_equal(x.indices, y.indices)
        for x, y in zip(a, b, strict=True)
    )


def test_loader_rows_are_the_stream_shifted_by_one_without_fim(pack_dir, tok):
    loader = TokenLoader(pack_dir, tok, config(fim_rate=0.0))
    tokens = stream(pack_dir)
    length = 64
    assert loader.num_sequences == (len(tokens) - 1) // length
    assert loader.steps_per_epoch == loader.num_sequences // 4
    for batch in batches(loader, loader.steps_per_epoch):
        assert batch.input_ids.shape == batch.labels.shape == (4, length)
        assert batch.input_ids.dtype == batch.labels.dtype == np.int64
        for row, index in enumerate(batch.indices.tolist()):
            start = index * length  # sequences share one token: every token a target once
            assert batch.input_ids[row].tolist() == tokens[start : start + length].tolist()
            assert batch.labels[row].tolist() == tokens[start + 1 : start + length + 1].tolist()


def test_loader_labels_are_inputs_shifted_by_one_with_fim(pack_dir, tok):
    loader = TokenLoader(pack_dir, tok, config(fim_rate=1.0))
    fim_rows = 0
    for batch in batches(loader, 5):
        for row, index in enumerate(batch.indices.tolist()):
            tokens, mask = loader.sequence(0, index)
            assert len(tokens) == 65 and mask.all()
            assert batch.input_ids[row].tolist() == tokens[:-1].tolist()
            assert batch.labels[row].tolist() == tokens[1:].tolist()
            fim_rows += FimIds.from_tokenizer(tok).prefix in tokens
    assert fim_rows > 10


def test_padding_is_kept_out_of_the_loss(pack_dir, tok, monkeypatch):
    def shrinking_fim(sequence, tokenizer, ids, rng, fim_rate, spm_rate):
        return fit_length(sequence[:50], len(sequence), ids.pad)

    monkeypatch.setattr(loader_module, "apply_fim", shrinking_fim)
    batch = batches(TokenLoader(pack_dir, tok, config()), 1)[0]
    pad = tok.token_to_id("<fim_pad>")
    assert (batch.input_ids[:, 50:] == pad).all()
    assert (batch.labels[:, 49:] == -100).all()  # targets 50.. are padding
    assert (batch.labels[:, :49] == batch.input_ids[:, 1:50]).all()


def test_resume_gives_the_batches_an_uninterrupted_run_gives(pack_dir, tok):
    steps = TokenLoader(pack_dir, tok, config()).steps_per_epoch
    reference = batches(TokenLoader(pack_dir, tok, config()), 2 * steps + 3)
    for k in (1, steps - 1, steps, steps + 2):  # inside, at and across epoch boundaries
        first = TokenLoader(pack_dir, tok, config())
        assert same(batches(first, k), reference[:k])
        state = json.loads(json.dumps(first.state_dict()))  # survives a checkpoint file
        assert (state["epoch"], state["step"]) == divmod(k, steps)
        resumed = TokenLoader(pack_dir, tok, config())
        resumed.load_state_dict(state)
        assert same(batches(resumed, 4), reference[k : k + 4])
    order = [
        np.concatenate([b.indices for b in reference[e * steps : (e + 1) * steps]]) for e in (0, 1)
    ]
    assert not np.array_equal(*order)  # each epoch has its own shuffle


def test_resume_refuses_other_settings_and_bad_positions(pack_dir, tok):
    state = TokenLoader(pack_dir, tok, config()).state_dict()
    for other in (config(seed=8), config(seq_len=32), config(batch_size=2), config(fim_rate=0)):
        with pytest.raises(UserError, match="cannot resume"):
            TokenLoader(pack_dir, tok, other).load_state_dict(state)
    with pytest.raises(UserError, match="impossible position"):
        TokenLoader(pack_dir, tok, config()).load_state_dict({**state, "step": 10**6})


def test_resume_on_other_ranks_with_the_same_global_batch(pack_dir, tok):
    one = TokenLoader(pack_dir, tok, config(batch_size=4))
    batches(one, 3)
    state = one.state_dict()
    reference = batches(one, 2)
    halves = []
    for rank in (0, 1):
        loader = TokenLoader(pack_dir, tok, config(batch_size=2), rank=rank, world_size=2)
        loader.load_state_dict(state)
        halves.append(batches(loader, 2))
    for step, whole in enumerate(reference):
        glued = np.concatenate([halves[0][step].input_ids, halves[1][step].input_ids])
        assert np.array_equal(glued, whole.input_ids)


def test_ranks_see_disjoint_sequences_and_the_same_number_of_steps(pack_dir, tok):
    loaders = [TokenLoader(pack_dir, tok, config(batch_size=3), r, 2) for r in (0, 1)]
    steps = loaders[0].steps_per_epoch
    assert loaders[1].steps_per_epoch == steps == loaders[0].num_sequences // 6
    seen = [
        np.concatenate([b.indices for b in batches(loader, steps)]).tolist() for loader in loaders
    ]
    assert not set(seen[0]) & set(seen[1])
    union = set(seen[0]) | set(seen[1])
    assert len(union) == len(seen[0]) + len(seen[1]) == steps * 6
    perm = np.random.default_rng((7, 0)).permutation(loaders[0].num_sequences)
    assert union == set(perm[: steps * 6].tolist())  # everything but the remainder


def test_a_sequence_is_the_same_whatever_the_batching(pack_dir, tok):
    rows = {}
    for batch_size, rank, world in ((4, 0, 1), (3, 1, 2), (2, 0, 3)):
        loader = TokenLoader(pack_dir, tok, config(batch_size=batch_size), rank, world)
        for batch in batches(loader, loader.steps_per_epoch):
            for row, index in enumerate(batch.indices.tolist()):
                previous = rows.setdefault(index, batch.input_ids[row].tolist())
                assert previous == batch.input_ids[row].tolist()


def test_loader_is_deterministic_and_the_seed_matters(pack_dir, tok):
    a = batches(TokenLoader(pack_dir, tok, config()), 6)
    b = batches(TokenLoader(pack_dir, tok, config()), 6)
    c = batches(TokenLoader(pack_dir, tok, config(seed=8)), 6)
    assert same(a, b) and not same(a, c)


def test_loader_maps_the_shards_and_pickles_without_them(pack_dir, tok):
    loader = TokenLoader(pack_dir, tok, config())
    assert all(isinstance(shard, np.memmap) for shard in loader._shards)
    assert len(loader._shards) > 1
    batches(loader, 2)
    copy = pickle.loads(pickle.dumps(loader))
    assert same(batches(copy, 2), batches(loader, 2))


def test_loader_takes_a_tokenizer_folder_and_leaves_the_callers_tokenizer_alone(
    pack_dir, tok, tokenizer_dir
):
    from_folder = batches(TokenLoader(pack_dir, tokenizer_dir, config()), 2)
    from_object = batches(TokenLoader(pack_dir, tok, config()), 2)
    assert same(from_folder, from_object)
    assert tok.encode_special_tokens is False


def test_loader_errors_say_how_to_fix(tmp_path, pack_dir, tok):
    valid_tokens = len(stream(pack_dir, "valid"))
    with pytest.raises(UserError, match=f"has {valid_tokens:,} tokens.*at least 100,001"):
        TokenLoader(pack_dir, tok, config(seq_len=100_000, split="valid"))
    with pytest.raises(UserError, match="one step needs 20,000"):
        TokenLoader(pack_dir, tok, config(batch_size=10_000), world_size=2)
    with pytest.raises(UserError, match="has no 'test' split"):
        TokenLoader(pack_dir, tok, config(split="test"))
    for bad in ({"fim_rate": 1.5}, {"fim_spm_rate": -0.1}, {"seq_len": 0}, {"seed": -1}):
        with pytest.raises(UserError):
            config(**bad)
    with pytest.raises(UserError, match=r"rank must be in \[0, 2\)"):
        TokenLoader(pack_dir, tok, config(), rank=2, world_size=2)

    bare = train_tokenizer([t for t in SPECIAL_TOKENS if not t.startswith("<fim")])
    assert bare.token_to_id("<fim_middle>") is None
    with pytest.raises(UserError, match="lacks <fim_prefix>.*codekiln tokenizer train"):
        TokenLoader(pack_dir, bare, config())
    TokenLoader(pack_dir, bare, config(fim_rate=0))  # no FIM, no FIM tokens needed
    (tmp_path / "bare").mkdir()
    bare.save(str(tmp_path / "bare" / "tokenizer.json"))
    with pytest.raises(UserError, match="lacks <fim_prefix>.*codekiln tokenizer train"):
        TokenLoader(pack_dir, tmp_path / "bare", config())


def test_loader_refuses_a_tokenizer_with_other_special_ids(pack_dir, tok):
    meta = json.loads((pack_dir / "meta.json").read_text())
    meta["special_ids"]["<fim_middle>"] = 3
    (pack_dir / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="<fim_middle> is 2 here, 3 in the pack"):
        TokenLoader(pack_dir, tok, config())
    TokenLoader(pack_dir, tok, config(fim_rate=0))  # without FIM the ids do not matter
