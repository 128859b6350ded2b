"""Packing with any tokenizer: its special tokens pick the document layout (StarCoder's file
documents, StarCoder2's repository documents, or plain), the pack keeps a copy of it, and the
loader does FIM with the sentinels the pack records."""

import hashlib
import inspect
import json
import os
import string
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import small_bpe, write_curated
from tokenizers import Tokenizer

from codekiln.errors import UserError
from codekiln.pack.documents import (
    document_text,
    file_fim_cuts,
    repository_has_metadata,
    repository_order,
    valid_repositories,
)
from codekiln.pack.fim import FimIds
from codekiln.pack.format import open_split
from codekiln.pack.loader import LoaderConfig, TokenLoader
from codekiln.pack.pack import PackConfig, pack
from codekiln.tokenizer.family import (
    detect_format,
    load_any_tokenizer,
    tokenizer_fingerprint,
)
from codekiln.tokenizer.special import EOS, SPECIAL_TOKENS, STARCODER2_SPECIAL_TOKENS

SANTACODER_TOKENS = ["<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>"]
TRICKY = 'EOS = "<|endoftext|>"  # <file_sep> and <fim_middle> are text here\n'


def texts() -> list[str]:
    """Real code: a few stdlib modules cut at blank-line pairs, and special-token text."""
    out = []
    for module in (textwrap, string, json.decoder, inspect):
        out.extend(t for t in inspect.getsource(module).split("\n\n\n") if t.strip())
    return out + [TRICKY, "naïve café — 日本語 😀\n"]


def save(tokenizer: Tokenizer, folder: Path, **config) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    if config:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def tokenizers_dir(tmp_path_factory) -> dict[str, Path]:
    """One tokenizer folder per family, each with that family's real special tokens."""
    root = tmp_path_factory.mktemp("tokenizers")
    corpus = texts()
    specs = {
        "starcoder": list(SPECIAL_TOKENS),
        "starcoder2": list(STARCODER2_SPECIAL_TOKENS),
        "gpt2": [EOS],
        "santacoder": SANTACODER_TOKENS,
    }
    return {
        name: save(small_bpe(corpus, tokens, 700), root / name) for name, tokens in specs.items()
    }


def load(folder: Path) -> Tokenizer:
    return Tokenizer.from_file(str(folder / "tokenizer.json"))


def make_records(count: int = 60, repos: int = 9) -> list[dict]:
    """Files of `repos` repositories of varied sizes, interleaved (a repository's files are
    spread over the shards), some with special-token text, one without content."""
    corpus = texts()
    records = []
    for i in range(count):
        repo = f"owner{(i * i) % repos}/project-{(i * i) % repos}"
        records.append(
            {
                "id": hashlib.sha256(f"file-{i}".encode()).hexdigest()[:32],
                "content": None if i == 7 else TRICKY if i % 17 == 5 else corpus[i % len(corpus)],
                "repo": repo,
                "path": f"pkg/module_{i}.py",
                "lang": ("Python", "Markdown", "C")[i % 3],
                "stars": i,
            }
        )
    return records


def write_data(directory: Path, records: list[dict], per_file: int = 11) -> Path:
    return write_curated(directory, records, per_file, row_group_size=4)


def documents(out_dir: Path, split: str = "train") -> list[list[int]]:
    data = open_split(out_dir, split)
    docs = []
    for tokens, offsets in zip(data.tokens, data.offsets, strict=True):
        docs += [tokens[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return docs


def decoded(tok: Tokenizer, docs: list[list[int]]) -> list[str]:
    return [tok.decode(d, skip_special_tokens=False) for d in docs]


def encode(tok: Tokenizer, text: str) -> list[int]:
    tok.encode_special_tokens = True
    try:
        return tok.encode(text, add_special_tokens=False).ids
    finally:
        tok.encode_special_tokens = False


def by_repository(records: list[dict]) -> dict[str, list[dict]]:
    """Repository -> its files with content, repositories in order of their first record
    (one without content counts: pack orders repositories before reading any content)."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        files = groups.setdefault(record["repo"], [])
        if record["content"] is not None:
            files.append(record)
    return {repo: files for repo, files in groups.items() if files}


def file_text(record: dict, metadata: bool, seed: int, fim_rate: float) -> str:
    """StarCoder2's layout of one file, written out from the paper (not from pack's code)."""
    content, path = record["content"], record["path"]
    head = f"{path}\n" if metadata else ""
    cuts = file_fim_cuts(record["id"], len(content), seed, fim_rate)
    if cuts is None:
        return f"<file_sep>{head}{content}"
    lo, hi = cuts
    prefix, middle, suffix = content[:lo], content[lo:hi], content[hi:]
    return f"<file_sep><fim_prefix>{head}{prefix}<fim_suffix>{suffix}<fim_middle>{middle}"


def repository_text(repo: str, files: list[dict], seed: int, p_meta: float, fim_rate: float):
    metadata = repository_has_metadata(repo, seed, p_meta)
    order = repository_order([f["id"] for f in files], repo, seed)
    body = "".join(file_text(files[k], metadata, seed, fim_rate) for k in order)
    return (f"<repo_name>{repo}" if metadata else "") + body + EOS


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


# ---- StarCoder (one document per file) ----


def test_starcoder_tokenizer_keeps_the_starcoder_layout(tmp_path, tokenizers_dir):
    folder = tokenizers_dir["starcoder"]
    records = make_records()
    data = write_data(tmp_path / "data", records)
    config = PackConfig(valid_fraction=0, metadata_probability=0.5)
    meta = pack(data, folder, tmp_path / "out", config, progress=False).meta
    assert meta["format"] == {
        "family": "starcoder",
        "eos": EOS,
        "fim": "context",  # the loader does FIM while training, as before
        "fim_tokens": {
            "prefix": "<fim_prefix>",
            "middle": "<fim_middle>",
            "suffix": "<fim_suffix>",
            "pad": "<fim_pad>",
        },
        "fim_rate": 0.0,
        "repo_metadata_probability": None,
        "context_length": None,
    }
    kept = [r for r in records if r["content"] is not None]
    assert decoded(load(folder), documents(tmp_path / "out")) == [
        document_text(r, 42, 0.5) for r in kept
    ]
    assert meta["special_ids"] == {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    assert meta["skipped_records"] == 1


# ---- StarCoder2 (one document per repository) ----


def test_starcoder2_repository_documents_with_metadata_and_fim(tmp_path, tokenizers_dir):
    folder = tokenizers_dir["starcoder2"]
    tok = load(folder)
    records = make_records()
    data = write_data(tmp_path / "data", records)
    config = PackConfig(valid_fraction=0, repo_metadata_probability=1.0, context_length=10**6)
    meta = pack(data, folder, tmp_path / "out", config, progress=False).meta
    assert meta["format"]["family"] == "starcoder2"
    assert (meta["format"]["fim"], meta["format"]["fim_rate"]) == ("file", 0.5)
    assert meta["format"]["repo_metadata_probability"] == 1.0
    docs = documents(tmp_path / "out")
    groups = by_repository(records)
    # One document per repository, in order of each repository's first file.
    assert decoded(tok, docs) == [
        repository_text(repo, files, 42, 1.0, 0.5) for repo, files in groups.items()
    ]
    # Token-exact: each special token is its id, each text between them encoded on its own
    # (special-token text in a file stays text).
    repo, files = next(iter(groups.items()))
    ids = {t: tok.token_to_id(t) for t in STARCODER2_SPECIAL_TOKENS}
    wanted = [ids["<repo_name>"], *encode(tok, repo)]
    for k in repository_order([f["id"] for f in files], repo, 42):
        content, path = files[k]["content"], files[k]["path"]
        cuts = file_fim_cuts(files[k]["id"], len(content), 42, 0.5)
        if cuts is None:
            wanted += [ids["<file_sep>"], *encode(tok, f"{path}\n{content}")]
        else:
            lo, hi = cuts
            wanted += [
                ids["<file_sep>"],
                ids["<fim_prefix>"],
                *encode(tok, f"{path}\n{content[:lo]}"),
            ]
            wanted += [ids["<fim_suffix>"], *encode(tok, content[hi:])]
            wanted += [ids["<fim_middle>"], *encode(tok, content[lo:hi])]
    assert docs[0] == [*wanted, ids[EOS]]
    # The files of a repository are in a seeded random order, not their input order, and
    # about half of them are in FIM form.
    orders = [repository_order([f["id"] for f in fs], r, 42) for r, fs in groups.items()]
    assert any(order != sorted(order) for order in orders)
    kept = [r for r in records if r["content"] is not None]
    fim_files = sum(file_fim_cuts(r["id"], 1, 42, 0.5) is not None for r in kept)
    assert 0.25 * len(kept) < fim_files < 0.75 * len(kept)
    assert sum(d.count(ids["<fim_prefix>"]) for d in docs) == fim_files
    # Special-token text in a file ("<file_sep>", "<|endoftext|>") stayed text.
    assert any(r["content"] == TRICKY for r in kept)
    assert sum(d.count(ids["<file_sep>"]) for d in docs) == len(kept)
    assert sum(d.count(ids[EOS]) for d in docs) == len(docs)
    assert meta["special_ids"] == {t: i for i, t in enumerate(STARCODER2_SPECIAL_TOKENS)}
    assert meta["splits"]["train"]["documents"] == len(groups) == len(docs)


def test_starcoder2_without_metadata_and_fim(tmp_path, tokenizers_dir):
    folder = tokenizers_dir["starcoder2"]
    records = make_records()
    data = write_data(tmp_path / "data", records)
    config = PackConfig(
        valid_fraction=0, repo_metadata_probability=0, fim_rate=0, context_length=10**6
    )
    meta = pack(data, folder, tmp_path / "out", config, progress=False).meta
    assert (meta["format"]["fim"], meta["format"]["fim_rate"]) == ("file", 0.0)
    texts_out = decoded(load(folder), documents(tmp_path / "out"))
    expected = []
    for repo, files in by_repository(records).items():
        order = repository_order([f["id"] for f in files], repo, 42)
        expected.append("".join("<file_sep>" + files[k]["content"] for k in order) + EOS)
    assert texts_out == expected
    assert not any("<repo_name>" in t or "pkg/module_" in t for t in texts_out)


def test_starcoder2_metadata_is_drawn_per_repository(tmp_path, tokenizers_dir):
    folder = tokenizers_dir["starcoder2"]
    records = make_records(120, repos=30)
    data = write_data(tmp_path / "data", records, per_file=25)
    config = PackConfig(valid_fraction=0, seed=3, fim_rate=0.3, context_length=10**6)
    pack(data, folder, tmp_path / "out", config, progress=False)
    groups = by_repository(records)
    texts_out = decoded(load(folder), documents(tmp_path / "out"))
    assert texts_out == [repository_text(r, fs, 3, 0.5, 0.3) for r, fs in groups.items()]
    with_metadata = sum(t.startswith("<repo_name>") for t in texts_out)
    assert 0 < with_metadata < len(groups)


def test_starcoder2_splits_a_long_repository_at_file_boundaries(tmp_path, tokenizers_dir):
    folder = tokenizers_dir["starcoder2"]
    tok = load(folder)
    records = make_records(40, repos=3)
    data = write_data(tmp_path / "data", records)
    context = 400
    config = PackConfig(
        valid_fraction=0, repo_metadata_probability=1.0, fim_rate=0, context_length=context
    )
    meta = pack(data, folder, tmp_path / "out", config, progress=False).meta
    assert meta["format"]["context_length"] == context
    docs = documents(tmp_path / "out")
    file_sep, eos = tok.token_to_id("<file_sep>"), tok.token_to_id(EOS)
    groups = by_repository(records)
    assert len(docs) > 2 * len(groups)  # every repository was split
    alone = 0
    for doc in docs:
        files = doc.count(file_sep)
        assert doc[-1] == eos and doc.count(eos) == 1 and files >= 1
        assert len(doc) <= context or files == 1  # only a lone file may be longer
        alone += len(doc) > context
    assert alone > 0  # some files are longer than the context on their own
    # Each piece starts again with <repo_name>REPO; glued back, the pieces are the repository.
    texts_out = decoded(tok, docs)
    position = 0
    for repo, files in groups.items():
        header = f"<repo_name>{repo}"
        whole = repository_text(repo, files, 42, 1.0, 0.0)
        pieces = []
        while position < len(texts_out) and texts_out[position].startswith(header + "<"):
            pieces.append(texts_out[position][len(header) : -len(EOS)])
            position += 1
        assert len(pieces) > 1 and header + "".join(pieces) + EOS == whole
    assert position == len(texts_out)


@pytest.mark.slow
def test_starcoder2_output_depends_on_neither_workers_nor_shards(tmp_path, tokenizers_dir):
    folder = tokenizers_dir["starcoder2"]
    records = make_records(90, repos=20)
    config = PackConfig(valid_fraction=0.3, batch_records=5, shard_tokens=3000, context_length=600)
    data = write_data(tmp_path / "data", records, per_file=9)
    pack(data, folder, tmp_path / "w1", config, workers=1, progress=False)
    pack(data, folder, tmp_path / "w2", config, workers=2, progress=False)
    names = sorted(p.name for p in (tmp_path / "w1").glob("*-*.*"))
    assert names == sorted(p.name for p in (tmp_path / "w2").glob("*-*.*")) and len(names) > 4
    for name in [*names, "meta.json"]:
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes()
    meta = json.loads((tmp_path / "w1" / "meta.json").read_text())
    for entry in meta["splits"].values():  # a repository's tokens go to each file's language
        languages = entry["languages"].values()
        assert sum(v["tokens"] for v in languages) == entry["tokens"]
        assert sum(v["documents"] for v in languages) == entry["documents"]
    # The records in another order and other shards: the same documents (in another order).
    shuffled = [records[i] for i in np.random.default_rng(0).permutation(len(records))]
    other = write_data(tmp_path / "other", shuffled, per_file=31)
    pack(other, folder, tmp_path / "other-out", config, progress=False)
    for split in ("train", "valid"):
        assert sorted(documents(tmp_path / "w1", split)) == sorted(
            documents(tmp_path / "other-out", split)
        )
    # The split is by repository: no repository in both.
    tok = load(folder)
    valid = valid_repositories({r["repo"] for r in records}, 42, 0.3)
    assert valid
    for split, wanted in (("train", False), ("valid", True)):
        for text in decoded(tok, documents(tmp_path / "w1", split)):
            if text.startswith("<repo_name>"):
                assert (text[len("<repo_name>") :].split("<file_sep>")[0] in valid) == wanted


def test_starcoder2_context_length_from_the_model_folder(tmp_path, tokenizers_dir):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes(
        (tokenizers_dir["starcoder2"] / "tokenizer.json").read_bytes()
    )
    data = write_data(tmp_path / "data", make_records(12))
    meta = pack(data, folder, tmp_path / "a", PackConfig(valid_fraction=0), progress=False).meta
    assert meta["format"]["context_length"] == 4096  # no config.json: StarCoder2's 4096
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 16384}))
    meta = pack(data, folder, tmp_path / "b", PackConfig(valid_fraction=0), progress=False).meta
    assert meta["format"]["context_length"] == 16384


# ---- plain, and SantaCoder's FIM tokens ----


def test_plain_layout_with_the_folders_own_eos(tmp_path):
    corpus = texts()
    folder = save(
        small_bpe(corpus, ["<s>", "</s>", "<unk>"], 500),
        tmp_path / "llama-like",
        eos_token={"content": "</s>", "lstrip": False, "special": True},
    )
    records = make_records(20)
    data = write_data(tmp_path / "data", records)
    meta = pack(data, folder, tmp_path / "out", PackConfig(valid_fraction=0), progress=False).meta
    assert meta["format"]["family"] == "plain" and meta["format"]["eos"] == "</s>"
    assert (meta["format"]["fim"], meta["format"]["fim_tokens"]) == ("none", None)
    tok = load(folder)
    kept = [r for r in records if r["content"] is not None]
    assert documents(tmp_path / "out") == [
        encode(tok, r["content"]) + [tok.token_to_id("</s>")] for r in kept
    ]


def test_gpt2_style_tokenizer_is_plain(tmp_path, tokenizers_dir):
    folder = tokenizers_dir["gpt2"]
    records = make_records(15)
    data = write_data(tmp_path / "data", records)
    meta = pack(data, folder, tmp_path / "out", PackConfig(valid_fraction=0), progress=False).meta
    assert (meta["format"]["family"], meta["format"]["eos"]) == ("plain", EOS)
    assert decoded(load(folder), documents(tmp_path / "out")) == [
        r["content"] + EOS for r in records if r["content"] is not None
    ]
    # The tokenizer.json itself does as well as its folder.
    config = PackConfig(valid_fraction=0)
    pack(data, folder / "tokenizer.json", tmp_path / "file", config, progress=False)
    assert documents(tmp_path / "file") == documents(tmp_path / "out")


def test_santacoder_fim_tokens_work_in_the_loader(tmp_path, tokenizers_dir):
    folder = tokenizers_dir["santacoder"]
    tok = load(folder)
    data = write_data(tmp_path / "data", make_records(40))
    meta = pack(data, folder, tmp_path / "out", PackConfig(valid_fraction=0), progress=False).meta
    assert (meta["format"]["family"], meta["format"]["fim"]) == ("plain", "context")
    assert meta["format"]["fim_tokens"]["prefix"] == "<fim-prefix>"
    config = LoaderConfig(seq_len=64, batch_size=4, seed=1, fim_rate=1.0)
    loader = TokenLoader(tmp_path / "out", folder, config)
    hyphen = FimIds.from_tokenizer(tok, detect_format(tok).fim)
    assert loader._fim_ids == hyphen and hyphen.pad == tok.token_to_id("<fim-pad>")
    rows = loader.batch(0, 0).input_ids
    assert (rows == hyphen.prefix).any(axis=1).sum() >= 2
    # Without a tokenizer, the pack's own copy serves.
    copy = TokenLoader(tmp_path / "out", None, config).batch(0, 0).input_ids
    assert np.array_equal(copy, rows)


# ---- forcing a format, and settings the tokenizer cannot do ----


def test_forcing_a_format(tmp_path, tokenizers_dir):
    data = write_data(tmp_path / "data", make_records(20))
    folder = tokenizers_dir["starcoder2"]
    config = PackConfig(valid_fraction=0, format="plain")
    meta = pack(data, folder, tmp_path / "plain", config, progress=False).meta
    assert (meta["format"]["family"], meta["format"]["fim"]) == ("plain", "context")
    eos = load(folder).token_to_id(EOS)
    assert all(d.count(eos) == 1 and d[-1] == eos for d in documents(tmp_path / "plain"))
    # A tokenizer with both families' tokens: auto picks starcoder2, format=starcoder wins.
    both = save(
        small_bpe(texts(), [*SPECIAL_TOKENS, "<repo_name>", "<file_sep>"], 600), tmp_path / "both"
    )
    assert detect_format(load(both)).family == "starcoder2"
    config = PackConfig(valid_fraction=0, format="starcoder", metadata_probability=1.0)
    meta = pack(data, both, tmp_path / "sc", config, progress=False).meta
    assert meta["format"]["family"] == "starcoder"
    assert decoded(load(both), documents(tmp_path / "sc"))[0].startswith("<reponame>")


def test_forcing_a_format_the_tokenizer_lacks_is_one_line(tmp_path, tokenizers_dir):
    data = write_data(tmp_path / "data", make_records(5))
    for family, folder, missing in (
        ("starcoder2", tokenizers_dir["gpt2"], "<repo_name>, <file_sep>"),
        ("starcoder", tokenizers_dir["starcoder2"], "<reponame>, <filename>, <gh_stars>"),
    ):
        config = PackConfig(format=family)
        with pytest.raises(UserError, match="lacks") as error:
            pack(data, folder, tmp_path / "out", config, progress=False)
        assert missing in one_line(error)
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="format must be"):
        PackConfig(format="llama")


def test_fim_and_context_settings_the_layout_cannot_use_are_one_line(tmp_path, tokenizers_dir):
    data = write_data(tmp_path / "data", make_records(5))
    cases = [  # (tokenizer, config, what the message says)
        ("gpt2", PackConfig(fim_rate=0.5), "lacks"),
        ("starcoder2", PackConfig(format="plain", fim_rate=0.5), "while training"),
        ("starcoder", PackConfig(fim_rate=0.2), "while training"),
        ("starcoder", PackConfig(context_length=2048), "starcoder2 layout"),
    ]
    for name, config, fragment in cases:
        with pytest.raises(UserError, match=fragment) as error:
            pack(data, tokenizers_dir[name], tmp_path / "out", config, progress=False)
        one_line(error)
    assert not (tmp_path / "out").exists()
    # fim_rate 0 (or unset) is fine without FIM tokens.
    pack(data, tokenizers_dir["gpt2"], tmp_path / "out", PackConfig(fim_rate=0), progress=False)
    for bad in ({"fim_rate": 1.5}, {"repo_metadata_probability": -1}, {"context_length": 0}):
        with pytest.raises(UserError):
            PackConfig(**bad)


# ---- the tokenizer copy and its fingerprint ----


def test_pack_keeps_a_copy_of_its_tokenizer(tmp_path, tokenizers_dir):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("tokenizer.json",):
        (source / name).write_bytes((tokenizers_dir["starcoder2"] / name).read_bytes())
    (source / "tokenizer_config.json").write_text(json.dumps({"eos_token": EOS}))
    (source / "special_tokens_map.json").write_text(json.dumps({"eos_token": EOS}))
    (source / "vocab.txt").write_text("not copied")
    data = write_data(tmp_path / "data", make_records(10))
    out = tmp_path / "out"
    meta = pack(data, source, out, PackConfig(valid_fraction=0), progress=False).meta
    copied = sorted(p.name for p in (out / "tokenizer").iterdir())
    assert copied == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    for name in copied:
        assert (out / "tokenizer" / name).read_bytes() == (source / name).read_bytes()
    digest = hashlib.sha256((source / "tokenizer.json").read_bytes()).hexdigest()
    assert meta["tokenizer_sha256"] == digest
    assert meta["tokenizer"] == {
        "dir": "tokenizer",
        "fingerprint": tokenizer_fingerprint(load(source)),
        "source": str(source.absolute()),
    }
    # A re-run is a no-op; a new setting needs --force, which rewrites the copy too.
    assert pack(data, source, out, PackConfig(valid_fraction=0), progress=False).skipped
    other = PackConfig(valid_fraction=0, repo_metadata_probability=0.1)
    with pytest.raises(UserError, match="--force"):
        pack(data, source, out, other, progress=False)
    (source / "special_tokens_map.json").unlink()
    pack(data, source, out, other, force=True, progress=False)
    assert not (out / "tokenizer" / "special_tokens_map.json").exists()
    # Another stage's output where the copy would go is left alone.
    work = tmp_path / "work"
    (work / "tokenizer").mkdir(parents=True)
    (work / "tokenizer" / "manifest.json").write_text(json.dumps({"stage": "tokenizer"}))
    with pytest.raises(UserError, match="codekiln tokenizer") as error:
        pack(data, source, work, other, progress=False)
    one_line(error)


def test_fingerprint_survives_a_transformers_round_trip(tmp_path, tokenizers_dir):
    transformers = pytest.importorskip("transformers")
    folder = tokenizers_dir["starcoder2"]
    tok = load(folder)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS)
    fast.save_pretrained(str(tmp_path / "resaved"))
    resaved = load_any_tokenizer(tmp_path / "resaved")
    # transformers rewrote the file (a post-processor, at least), not a single id.
    assert (tmp_path / "resaved" / "tokenizer.json").read_bytes() != (
        folder / "tokenizer.json"
    ).read_bytes()
    assert tokenizer_fingerprint(resaved) == tokenizer_fingerprint(tok)
    # Merges written as "a b" strings (the older format) hash the same too.
    spec = json.loads(tok.to_str())
    spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]
    legacy = Tokenizer.from_str(json.dumps(spec))
    assert tokenizer_fingerprint(legacy) == tokenizer_fingerprint(tok)
    # Another tokenizer of the same size: another fingerprint.
    other = small_bpe(list(reversed(texts()))[5:], list(STARCODER2_SPECIAL_TOKENS), 700)
    assert other.get_vocab_size() == tok.get_vocab_size()
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tok)
    swapped = list(STARCODER2_SPECIAL_TOKENS)
    swapped[5], swapped[6] = swapped[6], swapped[5]
    assert tokenizer_fingerprint(small_bpe(texts(), swapped, 700)) != tokenizer_fingerprint(tok)
    # The pack made from the re-saved folder records the same fingerprint.
    data = write_data(tmp_path / "data", make_records(8))
    config = PackConfig(valid_fraction=0)
    a = pack(data, folder, tmp_path / "a", config, progress=False).meta
    b = pack(data, tmp_path / "resaved", tmp_path / "b", config, progress=False).meta
    assert a["tokenizer"]["fingerprint"] == b["tokenizer"]["fingerprint"]
    assert a["tokenizer_sha256"] != b["tokenizer_sha256"]
    assert documents(tmp_path / "a") == documents(tmp_path / "b")


def test_slow_tokenizer_folder_is_converted_or_refused_in_one_line(tmp_path, tokenizers_dir):
    pytest.importorskip("transformers")
    spec = json.loads((tokenizers_dir["gpt2"] / "tokenizer.json").read_text())
    slow = tmp_path / "slow"
    slow.mkdir()
    vocab = {**spec["model"]["vocab"], **{t["content"]: t["id"] for t in spec["added_tokens"]}}
    (slow / "vocab.json").write_text(json.dumps(vocab))
    merges = [" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]]
    (slow / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    with pytest.raises(UserError, match="tokenizer.json") as error:
        load_any_tokenizer(slow)  # transformers cannot tell which tokenizer this is
    one_line(error)
    (slow / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "GPT2Tokenizer", "eos_token": EOS})
    )
    converted = load_any_tokenizer(slow)
    fast = load(tokenizers_dir["gpt2"])
    sample = texts()[3]
    assert converted.encode(sample).ids == fast.encode(sample).ids
    data = write_data(tmp_path / "data", make_records(6))
    pack(data, slow, tmp_path / "out", PackConfig(valid_fraction=0), progress=False)
    assert (tmp_path / "out" / "tokenizer" / "tokenizer.json").is_file()
    with pytest.raises(UserError, match="no tokenizer at") as error:
        load_any_tokenizer(tmp_path / "nowhere")
    one_line(error)


# ---- the loader's refusals ----


def test_loader_refuses_fim_where_the_pack_leaves_none_to_do(tmp_path, tokenizers_dir):
    data = write_data(tmp_path / "data", make_records(40))
    config = PackConfig(valid_fraction=0)
    pack(data, tokenizers_dir["starcoder2"], tmp_path / "sc2", config, progress=False)
    pack(data, tokenizers_dir["gpt2"], tmp_path / "plain", config, progress=False)
    fim = LoaderConfig(seq_len=32, batch_size=2, fim_rate=0.5)
    for pack_dir, folder, fragment in (
        (tmp_path / "sc2", tokenizers_dir["starcoder2"], "applied when packing"),
        (tmp_path / "plain", tokenizers_dir["gpt2"], "no FIM tokens"),
    ):
        for tokenizer in (folder, None):
            with pytest.raises(UserError, match=fragment) as error:
                TokenLoader(pack_dir, tokenizer, fim)
            assert "fim_rate=0" in one_line(error)
        no_fim = LoaderConfig(seq_len=32, batch_size=2, fim_rate=0.0)
        assert TokenLoader(pack_dir, None, no_fim).batch(0, 0).input_ids.shape == (2, 32)


def test_loader_refuses_another_tokenizer_by_fingerprint(tmp_path, tokenizers_dir):
    data = write_data(tmp_path / "data", make_records(40))
    pack(data, tokenizers_dir["starcoder"], tmp_path / "out", PackConfig(), progress=False)
    # Same special tokens and ids, other merges: only the fingerprint tells them apart.
    other = small_bpe(list(reversed(texts()))[5:], list(SPECIAL_TOKENS), 700)
    config = LoaderConfig(seq_len=32, batch_size=2, fim_rate=0.5)
    with pytest.raises(UserError, match="fingerprint") as error:
        TokenLoader(tmp_path / "out", other, config)
    one_line(error)


# ---- the command line ----


@pytest.mark.slow
def test_cli_packs_with_a_forced_format(tmp_path, tokenizers_dir):
    data = write_data(tmp_path / "data", make_records(20))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "codekiln", "pack", str(data)]
    command += ["--tokenizer", str(tokenizers_dir["starcoder2"]), "-o", str(out), "-q"]
    command += ["--set", "format=starcoder2", "--set", "fim_rate=none", "--set", "valid_fraction=0"]
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["format"]["family"], meta["format"]["fim_rate"]) == ("starcoder2", 0.5)
    refused = [*command[:5], "--tokenizer", str(tokenizers_dir["gpt2"]), "-o", str(tmp_path / "x")]
    done = subprocess.run(
        [*refused, "--set", "format=starcoder2"], capture_output=True, text=True, env=env
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "<repo_name>" in lines[0]
