"""The pack stage: curated Parquet + a tokenizer -> token shards in the format of format.py."""

import hashlib
import inspect
import json
import math
import string
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import small_bpe, write_curated
from tokenizers import Tokenizer, models, pre_tokenizers, processors

import codekiln.pack.pack as pack_module
from codekiln.errors import UserError
from codekiln.manifest import write_manifest
from codekiln.pack.documents import (
    document_text,
    metadata_prefix,
    repo_hash,
    split_of,
    star_bucket,
    valid_repositories,
)
from codekiln.pack.format import dtype_for, open_split, read_meta
from codekiln.pack.pack import PackConfig, pack
from codekiln.tokenizer.special import (
    EOS,
    FILENAME,
    FIM_PREFIX,
    GH_STARS,
    REPONAME,
    SPECIAL_TOKENS,
)

ROOT = Path(__file__).resolve().parents[1]

TRICKY = [
    'EOS = "<|endoftext|>"  # the text of a special token is only text here\n',
    "<fim_prefix>def f():<fim_suffix>    return 1<fim_middle>\n",
    "naïve café — 日本語のコード 😀 ünïcödé\n",
    "",
]


def source_texts() -> list[str]:
    """Real code (a few stdlib modules cut at blank-line pairs) and the tricky texts."""
    texts = []
    for module in (textwrap, json.decoder, json.encoder, string, inspect):
        texts.extend(t for t in inspect.getsource(module).split("\n\n\n") if t.strip())
    return texts + TRICKY


def train_small_tokenizer(special_tokens: list[str], vocab_size: int = 1000) -> Tokenizer:
    return small_bpe(source_texts(), special_tokens, vocab_size=vocab_size)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tokenizer")
    train_small_tokenizer(list(SPECIAL_TOKENS)).save(str(directory / "tokenizer.json"))
    return directory


@pytest.fixture
def tok(tokenizer_dir) -> Tokenizer:
    return Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))


def encode(tok: Tokenizer, text: str) -> list[int]:
    """What the tokenizer gives for plain text, special-token matching off."""
    tok.encode_special_tokens = True
    try:
        return tok.encode(text, add_special_tokens=False).ids
    finally:
        tok.encode_special_tokens = False


def expected_ids(tok: Tokenizer, record: dict, seed: int, probability: float) -> list[int]:
    """The contract, written out: [special] + enc(value) per kept field, enc("\\n") if any
    field, enc(content), <|endoftext|>."""
    ids = []
    fields = metadata_prefix(record, seed, probability)
    for token, value in fields:
        ids += [tok.token_to_id(token), *encode(tok, value)]
    if fields:
        ids += encode(tok, "\n")
    return ids + encode(tok, record["content"]) + [tok.token_to_id(EOS)]


def make_records(count: int, repos: int = 12) -> list[dict]:
    texts = source_texts()
    records = []
    for i in range(count):
        content = TRICKY[i % len(TRICKY)] if i % 9 == 0 else texts[i % len(texts)]
        records.append(
            {
                "id": f"{i:08x}",
                "content": content,
                "repo": f"owner{i % repos}/project-{i % repos}",
                "path": f"pkg/module_{i}.py",
                "lang": ("Python", "Markdown", "C")[i % 3],
                "stars": (None, 0, 5, 50, 500, 5000)[i % 6],
            }
        )
    return records


def write_data(directory: Path, records: list[dict], per_file: int = 40) -> Path:
    return write_curated(directory, records, per_file)


def documents(out_dir: Path, split: str) -> list[list[int]]:
    """Every document of a split, through the .idx offsets, in order."""
    data = open_split(out_dir, split)
    docs = []
    for tokens, offsets in zip(data.tokens, data.offsets, strict=True):
        docs += [tokens[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return docs


def test_record_layout_is_token_exact_with_every_field(tmp_path, tokenizer_dir, tok):
    records = make_records(40)
    data = write_data(tmp_path / "data", records)
    config = PackConfig(valid_fraction=0, metadata_probability=1.0)
    result = pack(data, tokenizer_dir, tmp_path / "out", config, progress=False)
    assert list(result.meta["splits"]) == ["train"]
    docs = documents(tmp_path / "out", "train")
    assert len(docs) == len(records)
    special = {t: tok.token_to_id(t) for t in (REPONAME, FILENAME, GH_STARS, EOS)}
    for record, doc in zip(records, docs, strict=True):
        bucket = star_bucket(record["stars"])
        assert doc == [
            special[REPONAME],
            *encode(tok, record["repo"]),
            special[FILENAME],
            *encode(tok, record["path"]),
            special[GH_STARS],
            *encode(tok, bucket),
            *encode(tok, "\n"),
            *encode(tok, record["content"]),
            special[EOS],
        ]


def test_record_layout_without_metadata_and_special_text_is_plain(tmp_path, tokenizer_dir, tok):
    records = make_records(40)
    data = write_data(tmp_path / "data", records)
    config = PackConfig(valid_fraction=0, metadata_probability=0.0)
    pack(data, tokenizer_dir, tmp_path / "out", config, progress=False)
    docs = documents(tmp_path / "out", "train")
    eos = tok.token_to_id(EOS)
    special = {tok.token_to_id(t) for t in SPECIAL_TOKENS}
    for record, doc in zip(records, docs, strict=True):
        assert doc == encode(tok, record["content"]) + [eos]
        assert not special & set(doc[:-1]), "a special id came from plain text"
    tricky = [d for r, d in zip(records, docs, strict=True) if "<|endoftext|>" in r["content"]]
    assert tricky and all(d.count(eos) == 1 for d in tricky)
    # The tokenizer itself would have made the special ids: the test can fail.
    assert eos in tok.encode(TRICKY[0]).ids
    assert tok.token_to_id(FIM_PREFIX) in tok.encode(TRICKY[1]).ids


def test_metadata_fields_appear_at_their_rate_independently():
    n, p = 4000, 0.2
    prefixes = [
        metadata_prefix({"id": f"r{i}", "repo": "o/r", "path": "a.py", "stars": 3}, 42, p)
        for i in range(n)
    ]
    sd = math.sqrt(p * (1 - p) / n)
    for token in (REPONAME, FILENAME, GH_STARS):
        rate = sum(token in dict(f) for f in prefixes) / n
        assert abs(rate - p) < 4 * sd, (token, rate)
    any_rate = sum(bool(f) for f in prefixes) / n
    p_any = 1 - (1 - p) ** 3
    assert abs(any_rate - p_any) < 4 * math.sqrt(p_any * (1 - p_any) / n)
    both = sum(REPONAME in dict(f) and FILENAME in dict(f) for f in prefixes) / n
    assert abs(both - p * p) < 4 * math.sqrt(p * p * (1 - p * p) / n)
    # Pure: the same record gets the same prefix; the seed changes the draws.
    record = {"id": "x1", "repo": "o/r", "path": "a.py", "stars": 3}
    assert metadata_prefix(record, 42, p) == metadata_prefix(dict(record), 42, p)
    assert len({str(metadata_prefix({**record, "id": f"{i}"}, 7, 0.5)) for i in range(50)}) > 1


def test_newline_follows_the_prefix_iff_any_field(tmp_path, tokenizer_dir, tok):
    records = make_records(120)
    data = write_data(tmp_path / "data", records)
    config = PackConfig(valid_fraction=0, metadata_probability=0.5, seed=3)
    pack(data, tokenizer_dir, tmp_path / "out", config, progress=False)
    docs = documents(tmp_path / "out", "train")
    meta_ids = {tok.token_to_id(t) for t in (REPONAME, FILENAME, GH_STARS)}
    with_fields = 0
    for record, doc in zip(records, docs, strict=True):
        assert doc == expected_ids(tok, record, 3, 0.5)
        content = encode(tok, record["content"]) + [tok.token_to_id(EOS)]
        head = doc[: len(doc) - len(content)]
        if metadata_prefix(record, 3, 0.5):
            with_fields += 1
            assert head[0] in meta_ids and head[-len(encode(tok, "\n")) :] == encode(tok, "\n")
        else:
            assert head == []
    assert 0 < with_fields < len(records)


def test_records_without_content_are_skipped_and_counted(tmp_path, tokenizer_dir, tok):
    records = make_records(6)
    records[2]["content"] = None
    records[4]["repo"] = None  # no repository: no <reponame>, and the split of ""
    data = write_data(tmp_path / "data", records)
    config = PackConfig(valid_fraction=0, metadata_probability=1.0)
    meta = pack(data, tokenizer_dir, tmp_path / "out", config, progress=False).meta
    assert meta["skipped_records"] == 1 and meta["splits"]["train"]["documents"] == 5
    kept = [r for r in records if r["content"] is not None]
    assert documents(tmp_path / "out", "train") == [expected_ids(tok, r, 42, 1.0) for r in kept]
    assert [f for f, _ in metadata_prefix(records[4], 42, 1.0)] == [FILENAME, GH_STARS]


def test_star_buckets():
    table = {
        None: "0",
        -3: "0",
        0: "0",
        1: "1-10",
        9: "1-10",
        10: "10-100",
        99: "10-100",
        100: "100-1000",
        999: "100-1000",
        1000: "1000+",
        10**9: "1000+",
    }
    assert {stars: star_bucket(stars) for stars in table} == table


def test_split_by_repository(tmp_path, tokenizer_dir, tok):
    records = make_records(200, repos=40)
    data = write_data(tmp_path / "data", records)
    config = PackConfig(valid_fraction=0.3, metadata_probability=0.2, seed=9)
    result = pack(data, tokenizer_dir, tmp_path / "out", config, progress=False)
    valid = valid_repositories({r["repo"] for r in records}, 9, 0.3)
    assert valid == {r["repo"] for r in records if split_of(r["repo"], 9, 0.3) == "valid"}
    assert 0 < len(valid) < 40
    for split, wanted in (("train", False), ("valid", True)):
        chosen = [r for r in records if (r["repo"] in valid) == wanted]
        docs = documents(tmp_path / "out", split)
        assert docs == [expected_ids(tok, r, 9, 0.2) for r in chosen]  # input order, exact
        assert result.meta["splits"][split]["documents"] == len(chosen)
    # Deterministic, and the seed matters.
    repos = [f"o/r{i}" for i in range(500)]
    assert valid_repositories(repos, 1, 0.1) == valid_repositories(reversed(repos), 1, 0.1)
    assert valid_repositories(repos, 1, 0.1) != valid_repositories(repos, 2, 0.1)


def test_tiny_corpus_rules(tmp_path, tokenizer_dir):
    # Two repositories, none in valid by hash at 1%: the smaller hash goes to valid.
    pair = ["alpha/one", "beta/two"]
    assert all(split_of(r, 42, 0.01) == "train" for r in pair)
    chosen = valid_repositories(pair, 42, 0.01)
    assert len(chosen) == 1 and chosen < set(pair)
    assert chosen == {min(pair, key=lambda r: repo_hash(r, 42))}
    # Never every repository; one repository: no validation split.
    assert len(valid_repositories(pair, 42, 0.99)) == 1
    assert valid_repositories(["solo/repo"], 42, 0.5) == set()
    records = make_records(20, repos=2)
    data = write_data(tmp_path / "data", records)
    meta = pack(data, tokenizer_dir, tmp_path / "a", PackConfig(), progress=False).meta
    assert sorted(meta["splits"]) == ["train", "valid"]
    meta = pack(
        data, tokenizer_dir, tmp_path / "b", PackConfig(valid_fraction=0), progress=False
    ).meta
    assert list(meta["splits"]) == ["train"]


def test_decoding_gives_back_every_record_in_order_across_shards(tmp_path, tokenizer_dir, tok):
    records = make_records(150)
    data = write_data(tmp_path / "data", records, per_file=33)
    config = PackConfig(valid_fraction=0, shard_tokens=2000, batch_records=16, seed=5)
    result = pack(data, tokenizer_dir, tmp_path / "out", config, progress=False)
    shards = result.meta["splits"]["train"]["shards"]
    assert len(shards) > 3
    split = open_split(tmp_path / "out", "train")
    sizes = [len(t) for t in split.tokens]
    assert all(size >= 2000 for size in sizes[:-1])
    # A shard passes the limit by less than its last document.
    for size, offsets in zip(sizes, split.offsets, strict=True):
        assert offsets[-1] == size and size - (offsets[-1] - offsets[-2]) < 2000
    docs = documents(tmp_path / "out", "train")
    texts = [tok.decode(d, skip_special_tokens=False) for d in docs]
    assert texts == [document_text(r, 5, 0.2) for r in records]


_real_encode_batch = pack_module.encode_batch


def _first_batch_last(job):
    """The first batch finishes after the others (workers fork with this patch in place)."""
    if job[1].index == 0:
        time.sleep(0.5)
    return _real_encode_batch(job)


@pytest.mark.slow
def test_output_is_the_same_for_any_worker_count(tmp_path, tokenizer_dir, monkeypatch):
    data = write_data(tmp_path / "data", make_records(130))
    config = PackConfig(valid_fraction=0.2, shard_tokens=5000, batch_records=7)
    pack(data, tokenizer_dir, tmp_path / "w1", config, workers=1, progress=False)
    monkeypatch.setattr(pack_module, "encode_batch", _first_batch_last)
    pack(data, tokenizer_dir, tmp_path / "w2", config, workers=2, progress=False)

    def outputs(out: Path) -> list[str]:  # every file, the tokenizer copy's included
        return sorted(
            str(p.relative_to(out))
            for p in out.rglob("*")
            if p.is_file() and p != out / "manifest.json"
        )

    names = outputs(tmp_path / "w1")
    assert names == outputs(tmp_path / "w2") and "tokenizer/tokenizer.json" in names
    assert any(n.startswith("valid-") for n in names) and len(names) > 5
    for name in names:
        assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes(), name


def test_rerun_is_a_no_op_other_settings_need_force(tmp_path, tokenizer_dir):
    data = write_data(tmp_path / "data", make_records(50))
    out = tmp_path / "out"
    first = pack(data, tokenizer_dir, out, PackConfig(), progress=False)
    assert not first.skipped
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = pack(data, tokenizer_dir, out, PackConfig(), workers=2, progress=False)
    assert again.skipped and again.meta == first.meta
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    other = PackConfig(metadata_probability=0.5)
    with pytest.raises(UserError, match="--force"):
        pack(data, tokenizer_dir, out, other, progress=False)
    write_data(data, make_records(51))  # the data changed
    with pytest.raises(UserError, match="--force"):
        pack(data, tokenizer_dir, out, PackConfig(), progress=False)
    forced = pack(data, tokenizer_dir, out, other, force=True, progress=False)
    assert not forced.skipped and forced.meta["config"]["metadata_probability"] == 0.5
    assert read_meta(out) == forced.meta
    assert sum(s["documents"] for s in forced.meta["splits"].values()) == 51


def test_another_stages_folder_is_refused_even_with_force(tmp_path, tokenizer_dir):
    data = write_data(tmp_path / "data", make_records(3))
    trained = tmp_path / "tok"
    trained.mkdir()
    write_manifest(trained, "tokenizer", request="x")
    for force in (False, True):
        with pytest.raises(UserError, match="output of `codekiln tokenizer`"):
            pack(data, tokenizer_dir, trained, force=force, progress=False)
    assert sorted(p.name for p in trained.iterdir()) == ["manifest.json"]


def test_meta_counts_match_the_arrays(tmp_path, tokenizer_dir, tok):
    data = write_data(tmp_path / "data", make_records(90, repos=20))
    config = PackConfig(valid_fraction=0.25, shard_tokens=3000)
    result = pack(data, tokenizer_dir, tmp_path / "out", config, progress=False)
    meta = read_meta(tmp_path / "out")
    assert meta == result.meta
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == tok.get_vocab_size()
    assert meta["special_ids"] == {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    assert meta["config"] == config.to_dict()
    digest = hashlib.sha256((tokenizer_dir / "tokenizer.json").read_bytes()).hexdigest()
    assert meta["tokenizer_sha256"] == digest
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["stage"] == "pack" and manifest["inputs"]["tokenizer"]["sha256"] == digest
    for name, entry in meta["splits"].items():
        split = open_split(tmp_path / "out", name)
        assert entry["tokens"] == split.num_tokens == sum(len(t) for t in split.tokens)
        assert entry["documents"] == split.num_documents
        languages = entry["languages"]
        assert sum(v["tokens"] for v in languages.values()) == entry["tokens"]
        assert sum(v["documents"] for v in languages.values()) == entry["documents"]
        assert set(languages) <= {"Python", "Markdown", "C"}
        for tokens in split.tokens:
            assert tokens[-1] == tok.token_to_id(EOS)


def test_uint32_for_a_vocabulary_over_65536(tmp_path, tokenizer_dir):
    assert dtype_for(65536) == np.uint16 and dtype_for(65537) == np.uint32
    # The small tokenizer with 70,000 ids no merge can reach: same ids, wider dtype.
    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    base = len(spec["model"]["vocab"])
    spec["model"]["vocab"].update({f"unused{i}": base + i for i in range(70_000)})
    wide = tmp_path / "wide"
    wide.mkdir()
    (wide / "tokenizer.json").write_text(json.dumps(spec))
    data = write_data(tmp_path / "data", make_records(30))
    config = PackConfig(valid_fraction=0)
    small = pack(data, tokenizer_dir, tmp_path / "small", config, progress=False)
    large = pack(data, wide, tmp_path / "large", config, progress=False)
    assert small.meta["dtype"] == "uint16"
    assert large.meta["dtype"] == "uint32" and large.meta["vocab_size"] == base + 70_000
    tokens = large.meta["splits"]["train"]["tokens"]
    assert (tmp_path / "large" / "train-00000.bin").stat().st_size == 4 * tokens
    assert documents(tmp_path / "large", "train") == documents(tmp_path / "small", "train")


def test_a_post_processor_adds_nothing(tmp_path, tokenizer_dir, tok):
    # A tokenizer that puts a BOS before every encoding: pack adds only its own special ids.
    with_bos = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    with_bos.post_processor = processors.TemplateProcessing(
        single="<fim_pad> $A", special_tokens=[("<fim_pad>", tok.token_to_id("<fim_pad>"))]
    )
    assert with_bos.encode("x").ids[0] == tok.token_to_id("<fim_pad>")
    folder = tmp_path / "bos"
    folder.mkdir()
    with_bos.save(str(folder / "tokenizer.json"))
    records = make_records(20)
    data = write_data(tmp_path / "data", records)
    config = PackConfig(valid_fraction=0, metadata_probability=0.5)
    pack(data, folder, tmp_path / "out", config, progress=False)
    wanted = [expected_ids(tok, r, 42, 0.5) for r in records]
    assert documents(tmp_path / "out", "train") == wanted


def test_tokenizer_without_fim_tokens_packs_without_fim(tmp_path):
    # Packing needs no FIM tokens (any tokenizer packs); asking for FIM without them fails.
    no_fim = [t for t in SPECIAL_TOKENS if "fim" not in t]
    folder = tmp_path / "tok"
    folder.mkdir()
    train_small_tokenizer(no_fim, vocab_size=400).save(str(folder / "tokenizer.json"))
    data = write_data(tmp_path / "data", make_records(5))
    with pytest.raises(UserError, match="<fim_prefix>"):
        pack(data, folder, tmp_path / "out", PackConfig(fim_rate=0.5), progress=False)
    assert not (tmp_path / "out").exists()
    meta = pack(data, folder, tmp_path / "out", progress=False).meta
    assert (meta["format"]["family"], meta["format"]["fim"]) == ("starcoder", "none")


def test_tokenizer_that_makes_special_ids_from_text_is_refused(tmp_path):
    # Whole words, one of them the text "<|endoftext|>": plain text would become the eos id.
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    vocab.update({"hello": 19, "[UNK]": 20})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    folder = tmp_path / "tok"
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    records = make_records(3)
    safe = write_data(tmp_path / "safe", [{**r, "content": "hello world"} for r in records])
    pack(safe, folder, tmp_path / "ok", PackConfig(valid_fraction=0), progress=False)
    unsafe = write_data(tmp_path / "unsafe", [{**records[0], "content": "hello <|endoftext|>"}])
    with pytest.raises(UserError, match="special-token ids"):
        pack(unsafe, folder, tmp_path / "bad", PackConfig(valid_fraction=0), progress=False)


def test_bad_data_is_refused_with_the_fix(tmp_path, tokenizer_dir):
    with pytest.raises(UserError, match="codekiln curate"):
        pack(tmp_path / "missing", tokenizer_dir, tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no curated shards"):
        pack(tmp_path / "empty", tokenizer_dir, tmp_path / "out", progress=False)
    zero = write_data(tmp_path / "zero", [])
    with pytest.raises(UserError, match="no records"):
        pack(zero, tokenizer_dir, tmp_path / "out", progress=False)
    other = tmp_path / "other"
    other.mkdir()
    pq.write_table(pa.table({"text": ["x"]}), other / "part-00000.parquet")
    with pytest.raises(UserError, match="lacks column"):
        pack(other, tokenizer_dir, tmp_path / "out", progress=False)
    data = write_data(tmp_path / "data", make_records(3))
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(UserError, match="not a directory"):
        pack(data, tokenizer_dir, tmp_path / "file", progress=False)
    with pytest.raises(UserError, match="no tokenizer"):
        pack(data, tmp_path / "nowhere", tmp_path / "out", progress=False)
    with pytest.raises(UserError, match="own output directory"):
        pack(data, tokenizer_dir, data, progress=False)


@pytest.mark.parametrize(
    "settings, fix",
    [
        ({"valid_fraction": 1.0}, "valid_fraction"),
        ({"valid_fraction": -0.1}, "valid_fraction"),
        ({"metadata_probability": 1.5}, "metadata_probability"),
        ({"metadata_probability": "high"}, "number"),
        ({"shard_tokens": 0}, "shard_tokens"),
        ({"batch_records": -1}, "batch_records"),
        ({"seed": 1.5}, "whole number"),
    ],
)
def test_config_is_validated(settings, fix):
    with pytest.raises(UserError, match=fix):
        PackConfig(**settings)
    assert PackConfig(valid_fraction=0).to_dict()["valid_fraction"] == 0.0


@pytest.mark.slow
def test_bench_runs_and_reports_the_ratio(tmp_path, tokenizer_dir):
    data = write_data(tmp_path / "data", make_records(60))
    figures = tmp_path / "figures.json"
    command = [sys.executable, str(ROOT / "bench" / "pack.py"), "--repeat", "1"]
    command += ["--data", str(data), "--tokenizer", str(tokenizer_dir), "--out", str(tmp_path)]
    done = subprocess.run(
        [*command, "--json", str(figures)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(figures.read_text())
    assert result["pack"]["tokens"] > result["encode_batch"]["tokens"] > 0  # + prefixes, eos
    assert result["encode_batch"]["tokens"] == result["encode_batch_fast"]["tokens"]
    assert "x of encode_batch" in done.stdout
