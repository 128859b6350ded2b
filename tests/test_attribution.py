"""The attribution index: planted training text is found with its sources, fresh text stays
under the configured false-positive rate, and bad inputs fail with one clear error."""

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codekiln.attribution import (
    AttributionConfig,
    AttributionIndex,
    build_index,
    overlap_response,
)
from codekiln.attribution.grams import SPACES, code_points, normalise_codes
from codekiln.errors import UserError
from codekiln.manifest import write_manifest

WIDTH = 50


def code_like(rng: random.Random, chars: int) -> str:
    """Python-shaped lines of random names and numbers: no two calls share a 50-gram."""
    lines, size = [], 0
    while size < chars:
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(3, 9)))
        value = rng.randint(0, 10**6)
        line = "    " * rng.randint(0, 2) + rng.choice(
            [f"{name} = {value}", f"def {name}(x, y={value}):", f"return {name}[{value}] + x"]
        )
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines) + "\n"


DOCS = [
    # (repo, path, license)
    ("acme/rockets", "src/engine.py", "MIT"),
    ("acme/rockets", "src/fuel.py", "MIT"),
    ("zeta/tools", "lib/io.py", "Apache-2.0"),
    ("solo/script", "main.py", None),
]


def write_corpus(directory, texts, shards=2):
    directory.mkdir(parents=True, exist_ok=True)
    rows = [
        {"id": f"id{i}", "content": text, "repo": repo, "path": path, "license": lic, "stars": 1}
        for i, (text, (repo, path, lic)) in enumerate(zip(texts, DOCS, strict=True))
    ]
    per = -(-len(rows) // shards)
    for s in range(shards):
        pq.write_table(
            pa.Table.from_pylist(rows[s * per : (s + 1) * per]), directory / f"part-{s:05d}.parquet"
        )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(7)
    texts = [code_like(rng, 6000) for _ in DOCS]
    data = tmp_path_factory.mktemp("curated")
    write_corpus(data, texts)
    out = tmp_path_factory.mktemp("index") / "index"
    result = build_index(data, out, AttributionConfig(), progress=False)
    return data, texts, result


def non_space(text: str) -> int:
    return sum(not c.isspace() for c in text)


def test_whitespace_table_is_str_isspace():
    assert sorted(SPACES.tolist()) == [c for c in range(0x110000) if chr(c).isspace()]


def test_normalisation_modes_and_offsets():
    text = "x  =\tfoo(1)\n"
    for mode, expected in [("remove", "x=foo(1)"), ("collapse", "x = foo(1) "), ("keep", text)]:
        codes, origin = normalise_codes(code_points(text), mode)
        assert "".join(map(chr, codes)) == expected
        assert all(text[o] == c or text[o].isspace() for o, c in zip(origin, expected, strict=True))


def test_planted_snippet_is_found_with_its_source(corpus):
    _, texts, result = corpus
    index = AttributionIndex.open(result.out_dir)
    rng = random.Random(11)
    snippet = texts[2][1234 : 1234 + 4 * WIDTH]
    before, after = code_like(rng, 300), code_like(rng, 300)
    document = before + snippet + after
    spans = index.query(document)
    assert len(spans) == 1, spans
    span = spans[0]
    lo, hi = len(before), len(before) + len(snippet)
    assert lo <= span.start < span.end <= hi
    # With stride = width, at most width - 1 normalised characters at each end of the planted
    # text fall outside the stored grams it contains.
    assert non_space(document[span.start : span.end]) >= non_space(snippet) - 2 * (WIDTH - 1)
    top = span.sources[0]
    assert (top.repo, top.path, top.license, top.id) == (
        "zeta/tools",
        "lib/io.py",
        "Apache-2.0",
        "id2",
    )
    assert top.grams >= 2


def test_reformatted_snippet_still_matches(corpus):
    _, texts, result = corpus
    index = AttributionIndex.open(result.out_dir)
    snippet = texts[0][500:900]
    reformatted = snippet.replace("    ", "\t").replace(" = ", "=").replace(", ", ",\n  ")
    assert reformatted != snippet
    spans = index.query("# header\n" + reformatted)
    assert [s.sources[0].path for s in spans] == ["src/engine.py"]


def test_short_overlap_is_not_found(corpus):
    _, texts, result = corpus
    index = AttributionIndex.open(result.out_dir)
    assert index.query(texts[1][100 : 100 + WIDTH - 1]) == []
    assert not index.contains("tiny")


def test_every_training_document_is_found_whole(corpus):
    _, texts, result = corpus
    index = AttributionIndex.open(result.out_dir)
    for text, (repo, path, _) in zip(texts, DOCS, strict=True):
        spans = index.query(text)
        assert len(spans) == 1 and spans[0].start == len(text) - len(text.lstrip())
        # No false negatives: all but the tail shorter than one stride is covered.
        assert non_space(text[spans[0].end :]) < WIDTH
        assert (spans[0].sources[0].repo, spans[0].sources[0].path) == (repo, path)


def test_fresh_text_stays_under_the_false_positive_rate(corpus):
    _, _, result = corpus
    index = AttributionIndex.open(result.out_dir)
    fresh = code_like(random.Random(99), 300_000)
    bloom = index.gram_hits(fresh, verify=False)
    assert len(bloom) > 200_000
    rate = index.config.false_positive_rate
    assert bloom.mean() <= 2 * rate
    # The source table drops the Bloom filter's false positives.
    assert not index.gram_hits(fresh).any()
    assert index.query(fresh) == []
    spans = index.query(fresh, verify=False)
    assert len(spans) == pytest.approx(bloom.sum(), abs=bloom.sum() * 0.5 + 1)
    assert all(s.sources == () for s in spans)


def test_overlap_response_is_llm_vscode_shaped(corpus):
    _, texts, result = corpus
    index = AttributionIndex.open(result.out_dir)
    document = "print('hello')\n" + texts[3][2000:2300]
    response = json.loads(json.dumps(overlap_response(index, document)))
    assert list(response) == ["spans", "sources"]
    [[start, end]] = response["spans"]
    assert 15 <= start < end <= len(document)
    [[source]] = response["sources"]
    assert source["repo"] == "solo/script" and source["license"] is None
    assert overlap_response(index, "") == {"spans": [], "sources": []}
    with pytest.raises(ValueError, match="must be a string"):
        overlap_response(index, None)


def test_manifest_and_rebuild(corpus, tmp_path):
    data, _, result = corpus
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    assert manifest["stage"] == "attribution"
    assert manifest["config"] == AttributionConfig().to_dict()
    assert set(manifest["inputs"]["shards"]) == {"part-00000.parquet", "part-00001.parquet"}
    assert manifest["counts"]["documents"] == len(DOCS)
    assert manifest["counts"]["grams"] >= manifest["counts"]["distinct_grams"] > 0
    assert 0 < manifest["sizes"]["bloom_fraction"] < manifest["sizes"]["index_fraction"]
    again = build_index(data, result.out_dir, AttributionConfig(), progress=False)
    assert again.skipped
    with pytest.raises(UserError, match="--force"):
        build_index(data, result.out_dir, AttributionConfig(width=40, stride=40), progress=False)


def test_another_stages_folder_is_refused_even_with_force(corpus, tmp_path):
    data, _, _ = corpus
    trained = tmp_path / "tok"
    trained.mkdir()
    write_manifest(trained, "tokenizer", request="x")
    for force in (False, True):
        with pytest.raises(UserError, match="output of `codekiln tokenizer`"):
            build_index(data, trained, force=force, progress=False)
    assert sorted(p.name for p in trained.iterdir()) == ["manifest.json"]
    with pytest.raises(UserError, match="own output directory, not its input"):
        build_index(data, data, progress=False)


def test_workers_do_not_change_the_index(corpus, tmp_path):
    data, _, result = corpus
    other = build_index(data, tmp_path / "two", AttributionConfig(), workers=2, progress=False)
    for name in ("bloom.npy", "sources.npy", "documents.parquet"):
        assert (other.out_dir / name).read_bytes() == (result.out_dir / name).read_bytes()


def test_bloom_only_index_has_no_sources(tmp_path):
    rng = random.Random(3)
    texts = [code_like(rng, 2000) for _ in DOCS]
    write_corpus(tmp_path / "data", texts, shards=1)
    config = AttributionConfig(source_table=False, whitespace="collapse", lowercase=True)
    result = build_index(tmp_path / "data", tmp_path / "index", config, progress=False)
    assert not (result.out_dir / "sources.npy").exists()
    index = AttributionIndex.open(result.out_dir)
    [span] = index.query("zzz\n" + texts[1][300:700].upper())
    assert span.sources == () and span.start >= 4


def test_null_content_is_counted_and_skipped(tmp_path):
    table = pa.table({"content": ["a" * 120, None], "repo": ["r", "s"], "path": ["p", "q"]})
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "part-00000.parquet")
    result = build_index(tmp_path / "data", tmp_path / "index", progress=False)
    assert result.counts["skipped_records"] == 1 and result.counts["documents"] == 1
    [span] = AttributionIndex.open(result.out_dir).query("a" * 100)
    assert (span.sources[0].repo, span.sources[0].license) == ("r", None)


def _missing(data):
    pass


def _empty(data):
    data.mkdir()


def _corrupt(data):
    data.mkdir()
    (data / "part-00000.parquet").write_bytes(b"PAR1 not really parquet")


def _no_content_column(data):
    data.mkdir()
    pq.write_table(pa.table({"text": ["x"]}), data / "part-00000.parquet")


def _only_null_content(data):
    data.mkdir()
    table = pa.table({"content": pa.array([None], pa.string())})
    pq.write_table(table, data / "part-00000.parquet")


def _no_rows(data):
    data.mkdir()
    pq.write_table(pa.table({"content": pa.array([], pa.string())}), data / "part-00000.parquet")


@pytest.mark.parametrize(
    "setup, message",
    [
        (_missing, "no curated records"),
        (_empty, "holds no curated shards"),
        (_corrupt, "not a readable Parquet"),
        (_no_content_column, "no `content` column"),
        (_only_null_content, "no records with content"),
        (_no_rows, "no records"),
    ],
)
def test_bad_input_is_one_user_error(tmp_path, setup, message):
    data = tmp_path / "data"
    setup(data)
    with pytest.raises(UserError, match=message):
        build_index(data, tmp_path / "index", progress=False)
    assert not (tmp_path / "index" / "manifest.json").exists()


def test_open_needs_a_finished_index(tmp_path):
    with pytest.raises(UserError, match="attribution build"):
        AttributionIndex.open(tmp_path)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"stride": 60}, "stride <= width"),
        ({"width": 4, "stride": 4}, "at least 8"),
        ({"false_positive_rate": 0}, r"in \(0, 0.5\)"),
        ({"whitespace": "strip"}, "remove, collapse, keep"),
        ({"width": 50.0}, "whole number"),
        ({"lowercase": "yes"}, "true or false"),
    ],
)
def test_config_is_validated(settings, message):
    with pytest.raises(UserError, match=message):
        AttributionConfig(**settings)


def test_gram_hits_length(corpus):
    index = AttributionIndex.open(corpus[2].out_dir)
    assert len(index.gram_hits("x" * (WIDTH + 9))) == 10
    assert isinstance(index.gram_hits(""), np.ndarray)
    assert index.query("\ud800 lone surrogates pass through " * 5) == []


def utf16_offset(text: str, code_points: int) -> int:
    """What a JavaScript string index (VS Code's offsets) is for a Python str index."""
    return len(text[:code_points].encode("utf-16-le")) // 2


def test_overlap_offsets_in_utf16_and_utf8_with_astral_characters(tmp_path):
    """VS Code counts UTF-16 units: 😀 and 𝔘 (beyond U+FFFF) count two, before and inside
    a span; the spans cut the same text from the encoded document as from the str."""
    rng = random.Random(5)
    texts = []
    for _ in DOCS:
        lines = code_like(rng, 3000).splitlines(keepends=True)
        texts.append("".join(line.rstrip("\n") + "  # 😀 𝔘 é\n" for line in lines))
    write_corpus(tmp_path / "curated", texts)
    result = build_index(
        tmp_path / "curated", tmp_path / "index", AttributionConfig(), progress=False
    )
    index = AttributionIndex.open(result.out_dir)
    document = "# 𝔘𝔘 😀 header\n" + texts[1][700:1300] + "\n# 😀 tail\n"
    plain = overlap_response(index, document)
    [[start, end]] = plain["spans"]
    assert "😀" in document[:start] and "😀" in document[start:end]
    utf16 = overlap_response(index, document, offsets="utf-16")
    assert utf16["spans"] == [[utf16_offset(document, start), utf16_offset(document, end)]]
    assert utf16["sources"] == plain["sources"]
    [[start16, end16]] = utf16["spans"]
    assert start16 > start and end16 - start16 > end - start
    encoded = document.encode("utf-16-le")
    assert encoded[2 * start16 : 2 * end16].decode("utf-16-le") == document[start:end]
    [[start8, end8]] = overlap_response(index, document, offsets="utf-8")["spans"]
    assert document.encode()[start8:end8].decode() == document[start:end]
    with pytest.raises(UserError, match="offsets must be one of"):
        overlap_response(index, document, offsets="bytes")


def test_overlap_request_as_llm_vscode_sends_it():
    """llm-vscode posts {"document"} only; the unit comes from the endpoint's query string,
    or a body field from other clients."""
    from codekiln.serve.api import ApiError, parse_overlap
    from codekiln.serve.config import ServeConfig

    config = ServeConfig()
    assert parse_overlap({"document": "x"}, config).offsets == "code-points"
    from_url = parse_overlap({"document": "x😀"}, config, {"offsets": "utf-16"})
    assert (from_url.document, from_url.offsets) == ("x😀", "utf-16")
    assert parse_overlap({"document": "x", "offsets": "UTF8"}, config, {}).offsets == "utf-8"
    for bad in ({"document": "x", "offsets": "bytes"}, {"document": "x", "offsets": 16}):
        with pytest.raises(ApiError) as error:
            parse_overlap(bad, config)
        assert (error.value.status, error.value.param) == (400, "offsets")
    with pytest.raises(ApiError, match="document must be a string"):
        parse_overlap({"text": "x"}, config)
