"""The benchmarks still run (their figures go in closing notes, not in assertions)."""

import json
import subprocess
import sys
from pathlib import Path

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
    assert "x of read" in result.stdout
