"""The tokenizer stage: StarCoder's special tokens, digit splitting, exact round trips on the
standard library, parity with transformers, determinism, fertility, errors and re-runs."""

import hashlib
import json
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from codekiln.curate.pipeline import RECORD_SCHEMA
from codekiln.errors import UserError
from codekiln.manifest import write_manifest
from codekiln.tokenizer.special import EOS, SPECIAL_TOKENS, load_tokenizer
from codekiln.tokenizer.train import (
    MIN_VOCAB_SIZE,
    TokenizerConfig,
    sample_key,
    sample_records,
    train_tokenizer,
)

SMALL = TokenizerConfig(vocab_size=500, sample_bytes=100_000, fertility_bytes=10_000)


def make_record(i: int, content: str, lang: str = "Python") -> dict:
    return {
        "id": hashlib.sha256(f"record-{i}".encode()).hexdigest()[:32],
        "content": content,
        "repo": f"owner/repo{i % 7}",
        "path": f"src/file_{i}.py",
        "lang": lang,
        "license": "MIT",
        "stars": None,
        "kind": "file",
        "source": "test",
        "size": len(content.encode()),
        "max_line_length": max(len(line) for line in content.splitlines() or [""]),
        "avg_line_length": 10.0,
        "alphanum_fraction": 0.5,
    }


def synthetic_records(n: int = 300) -> list[dict]:
    """Varied code in two languages, a few hundred KB: slices of the standard library's own
    modules, and generated C, so a small vocabulary fills up."""
    root = Path(sysconfig.get_path("stdlib"))
    modules = sorted(p for p in root.glob("*.py") if 2_000 < p.stat().st_size < 60_000)
    texts = [p.read_text(encoding="utf-8") for p in modules[:40]]
    records = []
    for i in range(n):
        if i % 5 == 0:
            body = "".join(
                f"int value_{i}_{k}(int x) {{\n    return x * {i * k} + {k};  // naïve\n}}\n"
                for k in range(8)
            )
            records.append(make_record(i, body, "C"))
        else:
            text = texts[i % len(texts)]
            start = (i * 997) % max(1, len(text) - 1500)
            records.append(make_record(i, text[start : start + 1500]))
    return records


def write_shards(directory: Path, records: list[dict], files: int = 1, row_group: int = 64):
    directory.mkdir(parents=True, exist_ok=True)
    per_file = -(-len(records) // files)
    for f in range(files):
        chunk = records[f * per_file : (f + 1) * per_file]
        table = pa.Table.from_pylist(chunk, schema=RECORD_SCHEMA)
        pq.write_table(table, directory / f"part-{f:05d}.parquet", row_group_size=row_group)
    return directory


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    return write_shards(tmp_path_factory.mktemp("small") / "curated", synthetic_records(), 2)


@pytest.fixture(scope="module")
def stdlib_data(tmp_path_factory) -> Path:
    from codekiln.curate.pipeline import curate
    from codekiln.curate.sources import stdlib_source

    out = tmp_path_factory.mktemp("stdlib") / "curated"
    curate([stdlib_source()], out, workers=2, progress=False)
    return out


@pytest.fixture(scope="module")
def stdlib_tokenizer(stdlib_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    config = TokenizerConfig(vocab_size=2000, sample_bytes=4_000_000, fertility_bytes=500_000)
    result = train_tokenizer(stdlib_data, out, config)
    assert result.vocab_size == 2000 and not result.skipped
    return out


def all_contents(data: Path) -> list[str]:
    contents = []
    for path in sorted(data.glob("part-*.parquet")):
        contents.extend(pq.read_table(path, columns=["content"]).column("content").to_pylist())
    return contents


@pytest.mark.slow
def test_special_tokens_take_ids_0_to_18_in_order(stdlib_tokenizer):
    tokenizer = Tokenizer.from_file(str(stdlib_tokenizer / "tokenizer.json"))
    assert [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(19))
    assert [tokenizer.id_to_token(i) for i in range(19)] == list(SPECIAL_TOKENS)
    load_tokenizer(stdlib_tokenizer)  # has everything packing and FIM need

    config = json.loads((stdlib_tokenizer / "tokenizer_config.json").read_text())
    assert config["bos_token"] == config["eos_token"] == config["unk_token"] == EOS
    assert config["pad_token"] is None  # as StarCoder: see the module docstring
    assert config["additional_special_tokens"] == list(SPECIAL_TOKENS[1:])
    assert config["model_max_length"] == 8192
    assert config["clean_up_tokenization_spaces"] is False
    special_map = json.loads((stdlib_tokenizer / "special_tokens_map.json").read_text())
    assert special_map["eos_token"] == EOS
    assert special_map["additional_special_tokens"] == list(SPECIAL_TOKENS[1:])


@pytest.mark.slow
def test_digits_are_split_one_by_one(stdlib_tokenizer):
    tokenizer = Tokenizer.from_file(str(stdlib_tokenizer / "tokenizer.json"))
    encoding = tokenizer.encode("12345")
    assert encoding.tokens == ["1", "2", "3", "4", "5"]
    assert len(tokenizer.encode("x = 2024\n").tokens) >= 4 + 2
    # No learned token joins a digit to anything: digits never reach BPE together.
    for token in tokenizer.get_vocab():
        if token not in SPECIAL_TOKENS and any(c.isdigit() for c in token):
            assert len(token) == 1, token


@pytest.mark.slow
def test_every_stdlib_record_round_trips(stdlib_data, stdlib_tokenizer):
    tokenizer = Tokenizer.from_file(str(stdlib_tokenizer / "tokenizer.json"))
    contents = all_contents(stdlib_data)
    assert len(contents) > 1000
    # encode_batch_fast (tokenizers >= 0.21) skips offsets: the same ids, in half the time.
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    encodings = encode(contents, add_special_tokens=False)
    # Keep special tokens: a document may hold their text (the stdlib's tokenizer tests do).
    decoded = tokenizer.decode_batch([e.ids for e in encodings], skip_special_tokens=False)
    bad = [i for i, (a, b) in enumerate(zip(contents, decoded, strict=True)) if a != b]
    assert not bad, f"{len(bad)} records do not round-trip, e.g. #{bad[0]}"


TRICKY = [
    "",
    "x",
    "def f(x):\n    return x + 1\n",
    "    leading spaces",
    "  \t mixed\t\tindent\n\n\n",
    "line one\r\nline two\r\n",
    "trailing spaces   ",
    "héllo wörld, naïve café",
    "日本語のコメント # 中文注释",
    "emoji 🎉🐍 and a ZWJ family 👩‍👩‍👧",
    "combining e\u0301 vs \u00e9, ﬁ ligature, Ｆｕｌｌ width",
    "a  1",  # two spaces before a digit: GPT2Tokenizer's rebuilt pre-tokenizer differs here
    "x = [\n    1,\n    2]",
    "3.14159e-10 0xFF 1_000_000 ½ ² ٣",
    "\x00\x01 control \x7f",
    "it's we'll they'RE",
    "spaced punctuation , like this . and that 's it ?",
    "<fim_prefix>def f():<fim_suffix>\n<fim_middle>",
    "text with <|endoftext|> inside, and <reponame>owner/repo",
    "<fim_prefix",
    "a<filename>b",
]


@pytest.mark.slow
def test_transformers_loads_it_and_agrees(stdlib_tokenizer):
    transformers = pytest.importorskip("transformers")
    auto = transformers.AutoTokenizer.from_pretrained(str(stdlib_tokenizer))
    tokenizer = Tokenizer.from_file(str(stdlib_tokenizer / "tokenizer.json"))
    assert auto.eos_token == auto.bos_token == auto.unk_token == EOS
    assert auto.eos_token_id == 0
    assert auto.pad_token is None
    assert auto.model_max_length == 8192
    assert auto.clean_up_tokenization_spaces is False  # transformers 4 would edit code spaces
    assert auto.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(19))
    for text in TRICKY:
        ids = tokenizer.encode(text).ids
        assert auto.encode(text, add_special_tokens=False) == ids, text
        assert auto.decode(ids) == text, text
        assert tokenizer.decode(ids, skip_special_tokens=False) == text, text
        # Both libraries drop special tokens alike when asked to.
        assert auto.decode(ids, skip_special_tokens=True) == tokenizer.decode(ids), text


@pytest.mark.slow
def test_special_token_text_inside_a_document_is_the_special_token(stdlib_tokenizer):
    tokenizer = Tokenizer.from_file(str(stdlib_tokenizer / "tokenizer.json"))
    ids = tokenizer.encode("a<fim_prefix>b<|endoftext|>").ids
    assert 1 in ids and 0 in ids
    assert tokenizer.decode(ids) == "ab"  # tokenizers skips special tokens by default
    assert tokenizer.decode(ids, skip_special_tokens=False) == "a<fim_prefix>b<|endoftext|>"
    # A near miss is ordinary text.
    assert not set(tokenizer.encode("<fim_prefix").ids) & set(range(19))


def test_training_twice_gives_identical_files(small_data, tmp_path):
    a = train_tokenizer(small_data, tmp_path / "a", SMALL)
    train_tokenizer(small_data, tmp_path / "b", SMALL)
    assert a.vocab_size == 500
    for name in ("tokenizer.json", "tokenizer_config.json", "fertility.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_sample_does_not_depend_on_shard_files(tmp_path):
    records = synthetic_records()
    one = write_shards(tmp_path / "one", records, files=1, row_group=1000)
    many = write_shards(tmp_path / "many", records[::-1], files=7, row_group=5)
    train_one, held_one = sample_records(one, 60_000, seed=1, held_out_bytes=5_000)
    train_many, held_many = sample_records(many, 60_000, seed=1, held_out_bytes=5_000)
    assert train_one == train_many and held_one == held_many
    assert held_one and train_one

    ids = [r["id"] for r in train_one]
    assert ids == sorted(ids, key=lambda i: sample_key(i, 1))  # in sampling order
    assert not set(ids) & {r["id"] for r in held_one}
    sizes = [len(r["content"].encode()) for r in train_one]
    assert sum(sizes) >= 60_000 > sum(sizes[:-1])  # stops at the record that crosses
    assert sum(len(r["content"].encode()) for r in held_one) <= 5_000 * 2  # two languages
    other, _ = sample_records(one, 60_000, seed=2, held_out_bytes=5_000)
    assert [r["id"] for r in other] != ids


def test_sample_skips_empty_records_and_takes_everything_when_asked(tmp_path):
    records = synthetic_records(40) + [make_record(1000, "", "Python")]
    data = write_shards(tmp_path / "data", records)
    train, held = sample_records(data, 10**9, seed=0, held_out_bytes=0)
    assert len(train) == 40 and not held


@pytest.mark.slow
def test_fertility_is_measured_per_language_on_held_out_text(stdlib_tokenizer):
    fertility = json.loads((stdlib_tokenizer / "fertility.json").read_text())
    python = fertility["languages"]["Python"]
    assert python["documents"] > 0 and python["chars_per_token"] > 1
    assert python["characters"] <= 500_000
    assert fertility["overall"]["tokens"] == sum(
        e["tokens"] for e in fertility["languages"].values()
    )
    manifest = json.loads((stdlib_tokenizer / "manifest.json").read_text())
    assert manifest["sample"]["held_out_documents"] == fertility["overall"]["documents"]
    digest = hashlib.sha256((stdlib_tokenizer / "tokenizer.json").read_bytes()).hexdigest()
    assert manifest["tokenizer_sha256"] == digest
    assert manifest["input"]["shards"][0]["name"] == "part-00000.parquet"
    assert manifest["input"]["manifest_sha256"] is not None


def test_vocab_size_must_hold_specials_and_bytes():
    with pytest.raises(UserError, match=f"too small.*at least {MIN_VOCAB_SIZE}"):
        TokenizerConfig(vocab_size=275)
    TokenizerConfig(vocab_size=MIN_VOCAB_SIZE)
    with pytest.raises(UserError, match="sample_bytes"):
        TokenizerConfig(sample_bytes=0)


def test_data_without_records_is_a_user_error(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UserError, match="no curated records in .*missing.*does not exist"):
        train_tokenizer(tmp_path / "missing", out, SMALL)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no curated records in .*empty.*run `codekiln curate"):
        train_tokenizer(tmp_path / "empty", out, SMALL)
    no_rows = write_shards(tmp_path / "no_rows", [])
    with pytest.raises(UserError, match="no curated records"):
        train_tokenizer(no_rows, out, SMALL)
    blank = write_shards(tmp_path / "blank", [make_record(i, "") for i in range(3)])
    with pytest.raises(UserError, match="no curated records"):
        train_tokenizer(blank, out, SMALL)
    assert not (out / "manifest.json").exists()


def test_output_cannot_be_the_data_directory(small_data):
    with pytest.raises(UserError, match="another output directory"):
        train_tokenizer(small_data, small_data, SMALL)


def test_another_stages_folder_is_refused_even_with_force(small_data, tmp_path):
    # `codekiln tokenizer train -o` on a pack folder must not overwrite the pack.
    packed = tmp_path / "packed"
    packed.mkdir()
    write_manifest(packed, "pack", request="x")
    before = (packed / "manifest.json").read_bytes()
    for force in (False, True):
        with pytest.raises(UserError, match="output of `codekiln pack`"):
            train_tokenizer(small_data, packed, SMALL, force=force)
    assert sorted(p.name for p in packed.iterdir()) == ["manifest.json"]
    assert (packed / "manifest.json").read_bytes() == before


def test_corrupt_or_foreign_parquet_is_a_user_error(tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "part-00000.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        train_tokenizer(corrupt, tmp_path / "out", SMALL)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    pq.write_table(pa.table({"text": ["x = 1"]}), foreign / "part-00000.parquet")
    with pytest.raises(UserError, match="lacks column"):
        train_tokenizer(foreign, tmp_path / "out", SMALL)


def test_rerun_is_a_no_op_and_other_settings_need_force(small_data, tmp_path):
    out = tmp_path / "tok"
    first = train_tokenizer(small_data, out, SMALL)
    stamp = (out / "tokenizer.json").stat().st_mtime_ns
    again = train_tokenizer(small_data, out, SMALL)
    assert again.skipped and not first.skipped
    assert (again.vocab_size, again.sample_bytes, again.sample_documents) == (
        first.vocab_size,
        first.sample_bytes,
        first.sample_documents,
    )
    assert again.fertility == first.fertility
    assert (out / "tokenizer.json").stat().st_mtime_ns == stamp

    bigger = TokenizerConfig(vocab_size=600, sample_bytes=100_000, fertility_bytes=10_000)
    with pytest.raises(UserError, match="--force"):
        train_tokenizer(small_data, out, bigger)
    forced = train_tokenizer(small_data, out, bigger, force=True)
    assert not forced.skipped and forced.vocab_size == 600
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["vocab_size"] == 600
    assert Tokenizer.from_file(str(out / "tokenizer.json")).get_vocab_size() == 600
