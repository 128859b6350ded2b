import os
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codekiln.curate.neardup import (
    BAND_DTYPE,
    EMPTY,
    BucketTask,
    MinHash,
    NearDupResult,
    RankTask,
    SignatureTask,
    band_hashes,
    bucket_task,
    connected_components,
    estimated_jaccard,
    minhash_signatures,
    near_duplicates,
    optimal_bands,
    rank_task,
    shingle_hashes,
    signature_task,
)
from codekiln.errors import UserError
from codekiln.executor import LocalExecutor

# The planted corpus: families of one base document and variants edited to a target Jaccard.
# Most families are one pair, so a pair's fate is LSH's alone; a few have four variants, whose
# clusters also link variant pairs through the base (transitively, like StarCoder's clusters).
PAIR_FAMILIES = 800
WIDE_FAMILIES = 50
SEPARATORS = [" ", " = ", "(", ")", ", ", ".", ":\n    ", "\n", " + ", "[", "]"]


def token_shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Ground truth, written independently of the module: the set of n-token tuples."""
    tokens = re.findall(r"[A-Za-z0-9_]+", text)
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def render(tokens: list[str], rng: random.Random) -> str:
    """Code-like text: the tokens with punctuation and newlines between them."""
    return "".join(t + rng.choice(SEPARATORS) for t in tokens)


def edited(base: list[str], target: float, vocab: list[str], rng: random.Random) -> list[str]:
    """`base` with a fraction f of its tokens replaced, for a Jaccard near `target`: about
    (1 - f)^5 of the shingles stay, and J = u / (2 - u) for the fraction u that stays."""
    unchanged = 2 * target / (1 + target)
    tokens = list(base)
    for i in rng.sample(range(len(tokens)), round((1 - unchanged**0.2) * len(tokens))):
        tokens[i] = rng.choice(vocab)
    return tokens


def planted_corpus(seed: int = 7) -> list[tuple[str, int, str]]:
    """(id, family, content) rows. Pair families draw their target J from [0.3, 0.5] for 40%
    of them (enough hard negatives to measure a 2% false positive rate) and from [0.5, 1.0]
    for the rest; wide families draw each variant's target from [0.3, 1.0]."""
    rng = random.Random(seed)
    vocab = [f"{rng.choice('abcdefghijklmnop_')}{k}" for k in range(3000)]
    rows = []
    for family in range(PAIR_FAMILIES + WIDE_FAMILIES):
        base = rng.choices(vocab, k=rng.randint(100, 250))
        rows.append((f"f{family:03d}-0", family, render(base, rng)))
        if family < PAIR_FAMILIES:
            low = rng.random() < 0.4
            targets = [rng.uniform(0.3, 0.5) if low else rng.uniform(0.5, 1.0)]
        else:
            targets = [rng.uniform(0.3, 1.0) for _ in range(4)]
        for variant, target in enumerate(targets, start=1):
            tokens = edited(base, target, vocab, rng)
            rows.append((f"f{family:03d}-{variant}", family, render(tokens, rng)))
    return rows


def write_inputs(directory: Path, rows: list[dict], files: int = 3) -> list[Path]:
    """Spread rows over `files` Parquet files, round robin, with small row groups."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(files):
        part = rows[k::files]
        table = pa.table(
            {
                "id": pa.array([r["id"] for r in part], pa.string()),
                "content": pa.array([r["content"] for r in part], pa.string()),
                "rank": pa.array([r["rank"] for r in part], pa.string()),
            }
        )
        path = directory / f"in-{k}.parquet"
        pq.write_table(table, path, row_group_size=64)
        paths.append(path)
    return paths


def cluster_of(result: NearDupResult, ids: list[str]) -> dict[str, str]:
    """Each id's cluster id; an id in no cluster is its own cluster."""
    clusters = {i: i for i in ids}
    for dropped, (cluster, survivor) in result.duplicates.items():
        clusters[dropped] = cluster
        clusters[survivor] = cluster
    return clusters


@dataclass
class Planted:
    rows: list[tuple[str, int, str]]  # (id, family, content), in generation order
    paths: list[Path]
    params: MinHash
    result: NearDupResult
    signatures: np.ndarray  # aligned with rows
    bands: np.ndarray


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Planted:
    rows = planted_corpus()
    records = [{"id": i, "content": c, "rank": f"{n:05d}"} for n, (i, _, c) in enumerate(rows)]
    random.Random(1).shuffle(records)
    paths = write_inputs(tmp_path_factory.mktemp("planted"), records)
    params = MinHash()
    with LocalExecutor(2) as executor:
        result = near_duplicates(paths, paths[0].parent / "work", params, executor)
    signatures = minhash_signatures([c for _, _, c in rows], params)
    bands = band_hashes(signatures, *params.band_rows())
    return Planted(rows, paths, params, result, signatures, bands)


def test_planted_near_duplicates_quality(planted):
    """Recall >= 0.95 at J >= 0.85 and false positive rate <= 0.02 at J <= 0.5, for LSH
    candidates and for clusters, against the exact Jaccard of the shingle sets."""
    rows, params = planted.rows, planted.params
    ids = [r[0] for r in rows]
    shingles = [token_shingles(c) for _, _, c in rows]
    cluster = cluster_of(planted.result, ids)
    families: dict[int, list[int]] = {}
    for k, (_, family, _) in enumerate(rows):
        families.setdefault(family, []).append(k)
    pairs = [p for members in families.values() for p in combinations(members, 2)]
    a, b = np.array(pairs).T
    j = np.array([jaccard(shingles[x], shingles[y]) for x, y in pairs])
    est = (planted.signatures[a] == planted.signatures[b]).mean(axis=1)
    lsh = (planted.bands[a] == planted.bands[b]).any(axis=1)
    same = np.array([cluster[ids[x]] == cluster[ids[y]] for x, y in pairs])
    assert j.min() < 0.32 and j.max() == 1.0, "the planted pairs must span J 0.3-1.0"

    bands, rows_ = params.band_rows()
    print(f"\nplanted corpus: {len(rows)} docs, {len(pairs)} same-family pairs, ", end="")
    print(f"b x r = {bands} x {rows_}")
    print("LSH: share a band bucket; cluster: end in the same cluster.")
    print("Below J 0.7 the rates are false positive rates, from 0.7 on they are recall.")
    print("  J bucket     pairs  S-curve    LSH  cluster  mean|est-J|")
    cuts = [0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 1.0, 1.01]
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        inside = (j >= lo) & (j < hi)
        if inside.any():
            s_curve = np.mean(1 - (1 - j[inside] ** rows_) ** bands)
            label = f"[{lo:.2f}, {hi:.2f})" if hi <= 1 else "   1.00    "
            print(
                f"  {label} {inside.sum():5d}  {s_curve:7.3f} {lsh[inside].mean():6.3f}"
                f"  {same[inside].mean():7.3f}  {np.abs(est - j)[inside].mean():11.3f}"
            )
    # Pairs across families share no planted text: none may share a cluster.
    clusters: dict[str, set[int]] = {}
    for k, i in enumerate(ids):
        clusters.setdefault(cluster[i], set()).add(rows[k][1])
    cross = sum(len(f) > 1 for f in clusters.values())
    positive = j >= params.threshold
    for name, found in (("LSH", lsh), ("cluster", same)):
        precision = (found & positive).sum() / max(1, found.sum())
        recall = (found & positive).sum() / positive.sum()
        print(f"  {name:7s} vs J >= 0.7: precision {precision:.3f}, recall {recall:.3f}")

    high, low = j >= 0.85, j <= 0.5
    print(
        f"  J >= 0.85 ({high.sum()} pairs): recall LSH {lsh[high].mean():.3f}, cluster "
        f"{same[high].mean():.3f}; J <= 0.5 ({low.sum()} pairs): false positive rate LSH "
        f"{lsh[low].mean():.4f}, cluster {same[low].mean():.4f}; clusters mixing families: {cross}"
    )
    assert high.sum() >= 100 and low.sum() >= 300
    for found in (lsh, same):
        assert found[high].mean() >= 0.95
        assert found[low].mean() <= 0.02
    assert cross == 0
    # 256 permutations: the standard error of the estimate is at most 0.5 / 16 = 0.031.
    assert np.abs(est - j).mean() < 0.03


def test_clusters_are_the_lsh_components(planted):
    """The sharded stages give exactly the connected components of 'shares a band bucket'."""
    ids = [r[0] for r in planted.rows]
    src, dst = [], []
    for band in planted.bands.T.tolist():
        first: dict[int, int] = {}
        for doc, value in enumerate(band):
            if value in first:
                src.append(first[value])
                dst.append(doc)
            else:
                first[value] = doc
    roots = connected_components(np.array(src, dtype=np.int64), np.array(dst), len(ids))
    expected: dict[int, list[str]] = {}
    for doc, root in enumerate(roots.tolist()):
        expected.setdefault(root, []).append(ids[doc])
    got: dict[str, list[str]] = {}
    for doc, c in cluster_of(planted.result, ids).items():
        got.setdefault(c, []).append(doc)
    clusters = sorted(sorted(m) for m in got.values() if len(m) > 1)
    assert clusters == sorted(sorted(m) for m in expected.values() if len(m) > 1)
    assert planted.result.candidate_pairs >= sum(len(m) - 1 for m in clusters)
    sizes: dict[int, int] = {}
    for m in clusters:
        sizes[len(m)] = sizes.get(len(m), 0) + 1
    assert planted.result.cluster_sizes == sizes
    assert len(planted.result.duplicates) == sum(len(m) - 1 for m in clusters)


@pytest.mark.slow
def test_results_do_not_depend_on_workers_or_runs(planted, tmp_path):
    paths, params, result = planted.paths, planted.params, planted.result
    with LocalExecutor(1) as executor:
        one = near_duplicates(paths, tmp_path / "one", params, executor)
    with LocalExecutor(2) as executor:
        two = near_duplicates(paths, tmp_path / "two", params, executor)
        # A second run in the same work_dir reuses the stage files and gives the same result.
        marker = tmp_path / "two" / "signatures" / "p000" / "f000000.npy"
        before = marker.stat().st_mtime_ns
        again = near_duplicates(paths, tmp_path / "two", params, executor)
        assert marker.stat().st_mtime_ns == before
    assert one == two == again == result
    assert list(one.duplicates) == sorted(one.duplicates)
    # Another seed draws other permutations but finds the same planted families.
    with LocalExecutor(2) as executor:
        other = near_duplicates(paths, tmp_path / "seed", MinHash(seed=3), executor)
    assert other.duplicates.keys() & result.duplicates.keys()


def test_shingle_hashes_are_stable_across_processes():
    text = "def add(a, b):\n    return a + b  # sum\n"
    code = (
        "from codekiln.curate.neardup import shingle_hashes;"
        f"print(shingle_hashes({text!r}).tolist())"
    )
    seen = set()
    for hash_seed in ("0", "1", "random"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        seen.add(out.stdout)
    assert seen == {f"{shingle_hashes(text).tolist()}\n"}


def test_tokens_ignore_punctuation_and_whitespace():
    assert np.array_equal(shingle_hashes("a.b(c, d)\n  e[f]"), shingle_hashes("a b c d e f"))
    assert len(shingle_hashes("a b c d e f")) == 2
    assert len(shingle_hashes("a b c d e f", ngram=3)) == 4
    assert not np.array_equal(shingle_hashes("a b c d e f"), shingle_hashes("A b c d e f"))
    # Repeated shingles count once: this is a set.
    assert len(shingle_hashes("x y z w v " * 20)) == 5


def test_short_documents(tmp_path):
    """Fewer than 5 tokens: one shingle of all tokens, so only an equal token sequence
    matches. No tokens at all: never a candidate, not even with each other."""
    sig = minhash_signatures(["x = 1", "x == 1", "x = 2", "", "+ - *"], MinHash())
    assert estimated_jaccard(sig[0], sig[1]) == 1.0
    assert estimated_jaccard(sig[0], sig[2]) < 0.1
    assert (sig[3] == EMPTY).all() and (sig[4] == EMPTY).all()
    rows = [
        {"id": "a", "content": "x = 1", "rank": "2"},
        {"id": "b", "content": "x == 1", "rank": "1"},
        {"id": "c", "content": "x = 2", "rank": "0"},
        {"id": "d", "content": "", "rank": "0"},
        {"id": "e", "content": "+ - *", "rank": "0"},
        {"id": "f", "content": None, "rank": "0"},
    ]
    paths = write_inputs(tmp_path / "in", rows, files=2)
    with LocalExecutor(1) as executor:
        result = near_duplicates(paths, tmp_path / "work", MinHash(), executor)
    assert result.duplicates == {"a": ("a", "b")}
    assert result.cluster_sizes == {2: 1}


def near_copies(base: list[str], count: int, rng: random.Random) -> list[str]:
    """`count` texts that differ from `base` in one token each (J ~ 0.97 for 300 tokens)."""
    out = []
    for _ in range(count):
        tokens = list(base)
        tokens[rng.randrange(len(tokens))] = f"edit{rng.randrange(10**9)}"
        out.append(" ".join(tokens))
    return out


def test_survivor_rank_cluster_id_and_sizes(tmp_path):
    rng = random.Random(0)
    base_a = [f"t{rng.randrange(10**6)}" for _ in range(300)]
    base_b = [f"u{rng.randrange(10**6)}" for _ in range(300)]
    a = near_copies(base_a, 3, rng)
    b = near_copies(base_b, 2, rng)
    rows = [
        # Cluster of 3: lowest rank "05" wins although its id is not the smallest; the
        # cluster id is the smallest id, "a1"; a null rank loses to any rank.
        {"id": "a2", "content": a[0], "rank": "05"},
        {"id": "a1", "content": a[1], "rank": "10"},
        {"id": "a3", "content": a[2], "rank": None},
        # Cluster of 2 with equal ranks: the smaller id survives.
        {"id": "b9", "content": b[0], "rank": "1"},
        {"id": "b4", "content": b[1], "rank": "1"},
        {"id": "lonely", "content": " ".join(base_a[::-1]), "rank": "0"},
    ]
    paths = write_inputs(tmp_path / "in", rows, files=2)
    with LocalExecutor(2) as executor:
        result = near_duplicates(paths, tmp_path / "work", MinHash(), executor)
    assert result.duplicates == {
        "a1": ("a1", "a2"),
        "a3": ("a1", "a2"),
        "b9": ("b4", "b4"),
    }
    assert result.cluster_sizes == {2: 1, 3: 1}
    assert result.candidate_pairs >= 3


def test_repeated_ids_in_a_cluster_are_an_error(tmp_path):
    rng = random.Random(1)
    copies = near_copies([f"t{k}" for k in range(200)], 2, rng)
    rows = [{"id": "same", "content": c, "rank": "0"} for c in copies]
    paths = write_inputs(tmp_path / "in", rows, files=1)
    with LocalExecutor(1) as executor, pytest.raises(ValueError, match="unique id"):
        near_duplicates(paths, tmp_path / "work", MinHash(), executor)


def test_empty_inputs(tmp_path):
    empty = write_inputs(tmp_path / "in", [], files=2)
    with LocalExecutor(2) as executor:
        for inputs in (empty, []):
            result = near_duplicates(inputs, tmp_path / "work", MinHash(), executor)
            assert result == NearDupResult(duplicates={}, cluster_sizes={}, candidate_pairs=0)


def test_missing_column_is_a_user_error(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["a"], "text": ["x"]}), path)
    with LocalExecutor(1) as executor, pytest.raises(ValueError, match="no `content` column"):
        near_duplicates([path], tmp_path / "work", MinHash(), executor)


def test_each_stage_reads_only_what_it_needs(planted, tmp_path):
    paths, params = planted.paths, planted.params
    work = tmp_path / "work"
    # Stage 1 needs only `content`: run it on a copy of input 0 that has nothing else.
    content_only = tmp_path / "content.parquet"
    pq.write_table(pq.read_table(paths[0], columns=["content"]), content_only)
    docs = signature_task(SignatureTask(0, content_only, work, params, partitions=16))
    assert docs == pq.read_metadata(paths[0]).num_rows
    bands, _ = params.band_rows()
    for p in range(16):
        part = np.load(work / "signatures" / f"p{p:03d}" / "f000000.npy")
        assert part.dtype == BAND_DTYPE
        assert (part["hash"] % np.uint64(16) == p).all()
        assert (np.diff(part["hash"].astype(np.float64)) >= 0).all()  # sorted by hash
        assert (part["doc"] >> 32 == 0).all()
    assert (
        sum(len(np.load(f)) for f in (work / "signatures").glob("p*/f000000.npy")) == docs * bands
    )

    # Stage 2 needs only its own partition: delete every other one and it gives the same edges.
    full = tmp_path / "full"
    with LocalExecutor(1) as executor:
        near_duplicates(paths, full, params, executor)
    expected = np.load(full / "edges" / "p003.npy")
    lone = tmp_path / "lone"
    for i in range(len(paths)):
        source = full / "signatures" / "p003" / f"f{i:06d}.npy"
        target = lone / "signatures" / "p003" / f"f{i:06d}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    assert bucket_task(BucketTask(3, len(paths), lone)) == len(expected)
    assert np.array_equal(np.load(lone / "edges" / "p003.npy"), expected)
    assert sorted(p.name for p in (lone / "signatures").iterdir()) == ["p003"]

    # Stage 4 needs only `id` and `rank`, of the linked rows.
    no_content = tmp_path / "ranks.parquet"
    pq.write_table(pq.read_table(paths[1], columns=["id", "rank"]), no_content, row_group_size=64)
    wanted = np.array([3, 70, 71, 200])
    index, got_rows, ids, ranks = rank_task(RankTask(1, no_content, wanted))
    table = pq.read_table(paths[1]).take(pa.array(wanted))
    assert index == 1 and np.array_equal(got_rows, wanted)
    assert ids == table.column("id").to_pylist() and ranks == table.column("rank").to_pylist()


def test_optimal_bands_and_overrides():
    assert optimal_bands(0.7, 256) == (25, 10)
    for threshold in (0.5, 0.8, 0.9):
        b, r = optimal_bands(threshold, 128)
        assert b * r <= 128
    # A higher threshold needs longer bands.
    assert optimal_bands(0.9, 256)[1] > optimal_bands(0.7, 256)[1] > optimal_bands(0.5, 256)[1]
    assert MinHash().band_rows() == (25, 10)
    assert MinHash(bands=20).band_rows() == (20, 12)
    assert MinHash(rows=8).band_rows() == (32, 8)
    assert MinHash(bands=16, rows=16).band_rows() == (16, 16)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("ngram", 0, "ngram must be at least 1"),
        ("num_perm", 0, "num_perm must be in"),
        ("threshold", 1.0, "threshold must be between 0 and 1"),
        ("bands", 0, "bands must be at least 1"),
        ("rows", 300, "exceeds num_perm"),
        ("seed", -1, "seed must be a non-negative"),
        ("partitions", 0, "partitions must be in"),
    ],
)
def test_params_are_validated(field, value, message):
    with pytest.raises(UserError, match=message):
        MinHash(**{field: value})
    with pytest.raises(UserError, match="lower bands or rows"):
        MinHash(bands=30, rows=10)


def find(parent: list[int], x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def test_connected_components_matches_a_plain_union_find():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 200))
        src, dst = rng.integers(0, n, size=(2, int(rng.integers(0, 150))))
        parent = list(range(n))
        for u, v in zip(src.tolist(), dst.tolist(), strict=True):
            ru, rv = find(parent, u), find(parent, v)
            parent[max(ru, rv)] = min(ru, rv)
        assert connected_components(src, dst, n).tolist() == [find(parent, x) for x in range(n)]
