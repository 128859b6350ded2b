"""Near-dedup against datatrove's MinHash pipeline, on the Python standard library.

    python bench/dedup.py [--copies 300] [--workers 2] [--files 8] [--out bench/out/dedup]

Builds one corpus, every .py file of the running Python's standard library (no site-packages,
no __pycache__) plus --copies planted near-duplicates (a stdlib file with up to 3% of its
tokens renamed), as Parquet files with `id`, `content` and `rank`, and runs on it, each in a
subprocess of its own with --workers worker processes:

- codekiln's `near_duplicates`: 5-grams, 256 permutations, 25 bands x 10 rows;
- datatrove's MinhashDedupSignature -> MinhashDedupBuckets -> MinhashDedupCluster ->
  MinhashDedupFilter: 5-grams, 25 buckets x 10 hashes per bucket (datatrove draws exactly
  buckets x hashes permutations, so 250), run from bench/.venv-datatrove, which this script
  creates on first run (python -m venv, pip install) so that codekiln never depends on it.

Prints seconds (the pipeline, timed inside the subprocess; and the whole subprocess with its
imports), peak memory (the PSS of the subprocess and all its descendants, summed, sampled every
20 ms), documents removed and clusters, with the ratios ours / datatrove; then how far the two
clusterings agree, as precision and recall of "same cluster" pairs, datatrove as reference.

The tokenizers differ. Ours keeps the runs of [A-Za-z0-9_] as they are. Datatrove first
simplifies the text (lowercase, every number becomes 0, punctuation, `_` included, becomes
space), then splits words with spaCy's English rules: `MAX_SIZE = 1024` is two tokens for
us (MAX_SIZE, 1024) and three for it (max, size, 0). Both take 5-token
shingles, but of different token streams, so a pair's Jaccard differs between the two, and
pairs near the 0.7 threshold can fall on different sides. The agreement section shows both
Jaccards for the pairs only one tool clusters (datatrove's approximated by lowercasing,
numbers to 0 and splitting on non-alphanumerics, without spaCy). Two controls set the scale:
datatrove fed our tokens (its normalisation off, a regex tokenizer), and codekiln with another
seed, since LSH itself is random for pairs near the threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from itertools import combinations
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from codekiln.curate.neardup import MinHash, near_duplicates
from codekiln.executor import LocalExecutor

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-datatrove"
# datatrove imports `tokenizers` at package import; its text normalisation needs `regex`; its
# default shingle hash is xxhash (datatrove pins < 4); its English word tokenizer is spaCy's;
# ParquetReader needs pyarrow.
DATATROVE_PACKAGES = ["datatrove", "tokenizers", "regex", "xxhash<4", "spacy", "pyarrow"]

# Runs in bench/.venv-datatrove: `python SCRIPT JSON_ARGS`.
DATATROVE_SCRIPT = '''
import json, re, struct, sys, time
from importlib import metadata
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.readers import ParquetReader
from datatrove.utils.text import TextNormConfig
from datatrove.utils.word_tokenizers import WordTokenizer


class IdentifierTokenizer(WordTokenizer):
    """codekiln's tokens: the runs of [A-Za-z0-9_]."""

    def word_tokenize(self, text):
        return re.findall(r"[A-Za-z0-9_]+", text)

    def sent_tokenize(self, text):
        return [text]

    def span_tokenize(self, text):
        return [(0, len(text))]


def reader(inputs):
    return ParquetReader(str(inputs), text_key="content", id_key="id", read_metadata=False)


def main():
    args = json.loads(sys.argv[1])
    inputs, work = Path(args["inputs"]), Path(args["work"])
    files, workers, bands = args["files"], args["workers"], args["bands"]
    language, norm = "en", TextNormConfig()
    if args["tokens"] == "codekiln":
        # No lowercasing, number folding or punctuation removal: the text reaches the
        # tokenizer as it is, so the shingles are codekiln's.
        language = IdentifierTokenizer()
        norm = TextNormConfig(
            lowercase=False, norm_whitespace=False, remove_punctuation=False,
            norm_unicode_diacritics=False, norm_numbers=False,
        )
    config = MinhashConfig(
        n_grams=args["ngram"], num_buckets=bands, hashes_per_bucket=args["rows"],
        seed=args["seed"], norm_config=norm,
    )
    sigs, buckets, remove = str(work / "sigs"), str(work / "buckets"), str(work / "remove")
    stages = {
        "signature": LocalPipelineExecutor(
            [reader(inputs), MinhashDedupSignature(sigs, config=config, language=language)],
            tasks=files, workers=workers, logging_dir=str(work / "logs/signature"),
        ),
        "buckets": LocalPipelineExecutor(
            [MinhashDedupBuckets(sigs, buckets, config=config)],
            tasks=bands, workers=workers, logging_dir=str(work / "logs/buckets"),
        ),
        "cluster": LocalPipelineExecutor(
            [MinhashDedupCluster(buckets, remove, config=config, save_cluster_id=True)],
            tasks=1, workers=1, logging_dir=str(work / "logs/cluster"),
        ),
        "filter": LocalPipelineExecutor(
            [reader(inputs), MinhashDedupFilter(remove)],
            tasks=files, workers=workers, logging_dir=str(work / "logs/filter"),
        ),
    }
    stage_seconds = {}
    for name, stage in stages.items():
        started = time.perf_counter()
        stage.run()
        stage_seconds[name] = time.perf_counter() - started

    # Untimed: turn (signature task, index of the document in that task) into ids.
    removed, clusters = [], {}
    for rank in range(files):
        ids = [doc.id for doc in reader(inputs).run(rank=rank, world_size=files)]
        path = work / "remove" / f"{rank:06d}.remove"
        if path.exists():
            removed += [ids[d] for (d,) in struct.iter_unpack("<I", path.read_bytes())]
        path = work / "remove" / f"{rank:06d}.clusters"
        if path.exists():
            for doc, cluster in struct.iter_unpack("<2I", path.read_bytes()):
                clusters.setdefault(cluster, []).append(ids[doc])
    result = {
        "seconds": sum(stage_seconds.values()),
        "stages": stage_seconds,
        "version": metadata.version("datatrove"),
        "removed": sorted(removed),
        "clusters": sorted(sorted(m) for m in clusters.values()),
    }
    Path(args["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
'''

_TOKEN = re.compile(r"[A-Za-z0-9_]+")


def stdlib_files() -> list[tuple[str, str]]:
    """(relative path, text) of every stdlib .py file that decodes as UTF-8, sorted."""
    root = Path(sysconfig.get_path("stdlib"))
    out = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "__pycache__"))
        for name in sorted(files):
            if name.endswith(".py"):
                path = Path(directory) / name
                try:
                    out.append((str(path.relative_to(root)), path.read_text(encoding="utf-8")))
                except UnicodeDecodeError:
                    continue
    return out


def planted_copy(text: str, fraction: float, rng: random.Random, tag: str) -> str:
    """`text` with `fraction` of its token occurrences renamed."""
    spans = [m.span() for m in _TOKEN.finditer(text)]
    chosen = sorted(rng.sample(spans, round(fraction * len(spans))))
    pieces, last = [], 0
    for k, (start, end) in enumerate(chosen):
        pieces += [text[last:start], f"renamed_{tag}_{k}"]
        last = end
    return "".join(pieces) + text[last:]


def build_corpus(out: Path, copies: int, files: int, seed: int) -> tuple[list[Path], dict]:
    """Write the corpus as `files` Parquet files; return them and {copy id: original id}."""
    rows = [{"id": path, "content": text, "rank": f"0:{path}"} for path, text in stdlib_files()]
    rng = random.Random(seed)
    sources = [r for r in rows if len(_TOKEN.findall(r["content"])) >= 100]
    planted = {}
    for k in range(copies):
        source = rng.choice(sources)
        copy_id = f"{source['id']}#copy{k}"
        text = planted_copy(source["content"], rng.uniform(0.0, 0.03), rng, str(k))
        rows.append({"id": copy_id, "content": text, "rank": f"1:{copy_id}"})
        planted[copy_id] = source["id"]
    rng.shuffle(rows)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(files):
        part = rows[k::files]
        table = pa.table({name: pa.array([r[name] for r in part], pa.string()) for name in rows[0]})
        paths.append(out / f"part-{k:05d}.parquet")
        pq.write_table(table, paths[-1])
    return paths, planted


def run_ours(args_json: str) -> None:
    """The codekiln side, in its own process (`bench/dedup.py --ours JSON`)."""
    args = json.loads(args_json)
    params = MinHash(ngram=args["ngram"], bands=args["bands"], rows=args["rows"], seed=args["seed"])
    started = time.perf_counter()
    with LocalExecutor(args["workers"]) as executor:
        result = near_duplicates(
            sorted(Path(args["inputs"]).glob("*.parquet")), Path(args["work"]), params, executor
        )
    seconds = time.perf_counter() - started
    clusters: dict[str, set[str]] = {}
    for dropped, (cluster, survivor) in result.duplicates.items():
        clusters.setdefault(cluster, {survivor}).add(dropped)
    record = {
        "seconds": seconds,
        "removed": sorted(result.duplicates),
        "clusters": sorted(sorted(m) for m in clusters.values()),
        "candidate_pairs": result.candidate_pairs,
    }
    Path(args["result"]).write_text(json.dumps(record))


def ensure_datatrove() -> Path:
    """The Python of bench/.venv-datatrove, created with datatrove on first use."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import datatrove.pipeline.dedup, pyarrow, regex, spacy, xxhash"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {VENV} with {' '.join(DATATROVE_PACKAGES)} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + DATATROVE_PACKAGES, check=True)
    return python


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # The command name (field 2) may hold spaces; the parent pid follows its ')'.
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    return children


def _memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, peak RSS) of one process in kB; PSS splits pages shared after fork fairly."""
    pss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except OSError:
        pass
    return pss, hwm


def measure(command: list[str], log: Path) -> dict:
    """Run a command; its wall time, and the peak of its process tree's summed PSS."""
    peak = {"pss_kb": 0, "max_rss_kb": 0}
    with open(log, "w") as handle:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                children, tree, total = _children(), [process.pid], 0
                for pid in tree:
                    tree.extend(children.get(pid, []))
                    pss, hwm = _memory_kb(pid)
                    total += pss
                    peak["max_rss_kb"] = max(peak["max_rss_kb"], hwm)
                peak["pss_kb"] = max(peak["pss_kb"], total)
                done.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
    if code != 0:
        raise SystemExit(f"{' '.join(command[:3])} ... failed ({code}); see {log}")
    return {
        "wall_s": wall,
        "peak_mb": peak["pss_kb"] / 1024,
        "max_rss_mb": peak["max_rss_kb"] / 1024,
    }


def same_cluster_pairs(clusters: list[list[str]]) -> set[tuple[str, str]]:
    return {pair for members in clusters for pair in combinations(sorted(members), 2)}


def _shingles(tokens: list[str]) -> set[tuple[str, ...]]:
    if len(tokens) < 5:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + 5]) for i in range(len(tokens) - 4)}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def _datatrove_like(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", re.sub(r"[0-9]+", "0", text.lower()))


def pair_jaccards(pairs: set[tuple[str, str]], texts: dict[str, str]) -> list[tuple[float, float]]:
    """(our J, datatrove-like J) of each pair."""
    out = []
    for a, b in sorted(pairs):
        ours = _jaccard(_shingles(_TOKEN.findall(texts[a])), _shingles(_TOKEN.findall(texts[b])))
        theirs = _jaccard(
            _shingles(_datatrove_like(texts[a])), _shingles(_datatrove_like(texts[b]))
        )
        out.append((ours, theirs))
    return out


def agreement(a: list[list[str]], b: list[list[str]]) -> tuple[int, int, int]:
    """(pairs in a, pairs in b, pairs in both) of "same cluster" pairs."""
    pairs_a, pairs_b = same_cluster_pairs(a), same_cluster_pairs(b)
    return len(pairs_a), len(pairs_b), len(pairs_a & pairs_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=300, help="planted near-duplicates")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--files", type=int, default=8, help="Parquet files (and tasks)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the planted copies")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "dedup")
    parser.add_argument("--ours", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ours:
        run_ours(args.ours)
        return

    datatrove_python = ensure_datatrove()
    shutil.rmtree(args.out, ignore_errors=True)
    inputs, planted = build_corpus(args.out / "inputs", args.copies, args.files, args.seed)
    texts: dict[str, str] = {}
    for path in inputs:
        table = pq.read_table(path, columns=["id", "content"])
        texts.update(zip(table["id"].to_pylist(), table["content"].to_pylist(), strict=True))
    bands, rows = MinHash().band_rows()
    size = sum(len(t.encode()) for t in texts.values())
    print(
        f"corpus: {len(texts):,} docs ({len(planted)} planted copies), {size / 1e6:.1f} MB in "
        f"{args.files} files; {args.workers} workers of {os.cpu_count()} CPUs; 5-grams, "
        f"b x r = {bands} x {rows}"
    )
    common = {"inputs": str(args.out / "inputs"), "workers": args.workers, "ngram": 5}
    common |= {"bands": bands, "rows": rows, "files": args.files}

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(DATATROVE_SCRIPT)
    ours, theirs = [sys.executable, __file__, "--ours"], [str(datatrove_python), script.name]
    runs = {  # name: (command, extra arguments)
        "codekiln": (ours, {"seed": 42}),
        "codekiln seed 1": (ours, {"seed": 1}),
        "datatrove": (theirs, {"seed": 1, "tokens": "spacy"}),
        "datatrove our tokens": (theirs, {"seed": 1, "tokens": "codekiln"}),
    }
    figures, results = {}, {}
    try:
        for name, (command, extra) in runs.items():
            slug = name.replace(" ", "-")
            run_args = common | extra
            run_args |= {"work": str(args.out / slug), "result": str(args.out / f"{slug}.json")}
            figures[name] = measure(command + [json.dumps(run_args)], args.out / f"{slug}.log")
            results[name] = json.loads(Path(run_args["result"]).read_text())
    finally:
        os.unlink(script.name)

    print(f"\n{'tool':<22}{'pipeline s':>11}{'process s':>10}{'peak MB':>9}{'max RSS':>9}", end="")
    print(f"{'removed':>9}{'clusters':>9}")
    table = {}
    for name in runs:
        f, r = figures[name], results[name]
        table[name] = [r["seconds"], f["wall_s"], f["peak_mb"], f["max_rss_mb"]]
        table[name] += [len(r["removed"]), len(r["clusters"])]
        s, w, m, x, rm, cl = table[name]
        print(f"{name:<22}{s:>11.2f}{w:>10.2f}{m:>9.0f}{x:>9.0f}{rm:>9d}{cl:>9d}")
    ratios = [a / b for a, b in zip(table["codekiln"], table["datatrove"], strict=True)]
    print(f"{'codekiln / datatrove':<22}{ratios[0]:>11.2f}{ratios[1]:>10.2f}", end="")
    print("".join(f"{x:>9.2f}" for x in ratios[2:]))
    print("peak MB: summed PSS of the process tree; max RSS: its largest single process")
    print(f"datatrove {results['datatrove']['version']}, seconds per stage:")
    for name in ("datatrove", "datatrove our tokens"):
        stages = ", ".join(f"{k} {v:.1f}" for k, v in results[name]["stages"].items())
        print(f"  {name}: {stages}")

    print("\nagreement of 'same cluster' pairs (precision and recall of A against B):")
    print(f"{'A':<22}{'B':<22}{'pairs A':>8}{'pairs B':>8}{'both':>6}{'prec':>7}{'recall':>7}")
    comparisons = [
        ("codekiln", "datatrove"),
        ("codekiln", "datatrove our tokens"),
        ("datatrove our tokens", "datatrove"),
        ("codekiln", "codekiln seed 1"),
    ]
    agreements = {}
    for a, b in comparisons:
        n_a, n_b, both = agreement(results[a]["clusters"], results[b]["clusters"])
        agreements[f"{a} vs {b}"] = (n_a, n_b, both)
        print(f"{a:<22}{b:<22}{n_a:>8}{n_b:>8}{both:>6}", end="")
        print(f"{both / max(1, n_a):>7.3f}{both / max(1, n_b):>7.3f}")
    removed = [set(results[t]["removed"]) for t in ("codekiln", "datatrove")]
    print(
        f"docs removed by both {len(removed[0] & removed[1])}, only codekiln "
        f"{len(removed[0] - removed[1])}, only datatrove {len(removed[1] - removed[0])} "
        "(survivors differ: codekiln keeps the lowest rank, datatrove a union-find root)"
    )
    for name in runs:
        cluster_of = {d: k for k, m in enumerate(results[name]["clusters"]) for d in m}
        found = sum(
            1
            for copy, source in planted.items()
            if copy in cluster_of and cluster_of[copy] == cluster_of.get(source)
        )
        print(f"planted copies clustered with their original, {name}: {found}/{len(planted)}")
    ours_pairs = same_cluster_pairs(results["codekiln"]["clusters"])
    their_pairs = same_cluster_pairs(results["datatrove"]["clusters"])
    for label, pairs in (
        ("only codekiln", ours_pairs - their_pairs),
        ("only datatrove", their_pairs - ours_pairs),
    ):
        js = pair_jaccards(pairs, texts)
        if js:
            print(
                f"{label}: {len(js)} pairs, mean J {sum(j for j, _ in js) / len(js):.2f} with "
                f"our tokens, {sum(j for _, j in js) / len(js):.2f} with datatrove-like tokens"
            )
    summary = {"figures": figures, "table": table, "ratios": ratios, "agreement": agreements}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
