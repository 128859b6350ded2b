"""A stored loss curve: a tiny seeded training run must reproduce it step by step.

The run is test_train's: the smallest preset (`tiny`) cut to two layers of width 64, on its
pack of repetitive Python files, float32 on the CPU, with a loss row every step. Its per-step
training losses and its validation losses are compared with tests/data/loss_curve.json at a
tolerance that survives another x86 CPU or thread count (float32 sums in another order) but
not a changed initialisation, learning rate, schedule or data order: those move the first
steps' losses by far more than 1e-3.

When a change is meant to change the curve, regenerate the file and commit it with the
change, saying why:

    CODEKILN_UPDATE_GOLDEN=1 python -m pytest tests/test_loss_curve.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import test_train

from codekiln.train.loop import train
from codekiln.train.metrics import read_metrics

GOLDEN = Path(__file__).parent / "data" / "loss_curve.json"
UPDATE = os.environ.get("CODEKILN_UPDATE_GOLDEN") == "1"
RTOL, ATOL = 1e-3, 1e-4

packed = test_train.packed  # the fixture: a pack of repetitive Python files and its tokenizer


def _curve(run: Path) -> dict[str, list[list[float]]]:
    rows = read_metrics(run / "metrics.jsonl")
    return {
        "loss": [[r["step"], r["loss"]] for r in rows if "loss" in r],
        "val_loss": [[r["step"], r["val_loss"]] for r in rows if "val_loss" in r],
    }


def _dumps(curve: dict[str, list[list[float]]]) -> str:
    """The curve as JSON, one [step, loss] pair a line (reviewable diffs)."""
    parts = []
    for key, pairs in curve.items():
        rows = ",\n".join(f"  [{step}, {loss!r}]" for step, loss in pairs)
        parts.append(f' "{key}": [\n{rows}\n ]')
    return "{\n" + ",\n".join(parts) + "\n}\n"


@pytest.mark.slow
def test_a_tiny_seeded_run_reproduces_the_stored_loss_curve(packed, tmp_path):
    data, tokenizer = packed
    config = test_train.tiny(
        tokenizer,
        max_steps=16,
        warmup_steps=4,
        log_every=1,
        eval_every=8,
        checkpoint_every=0,
        seed=1234,
        compile=False,
        prefetch=0,
    )
    train(data, tmp_path / "run", config, progress=False)
    curve = _curve(tmp_path / "run")
    if UPDATE:
        GOLDEN.write_text(_dumps(curve))
        pytest.skip(f"wrote {GOLDEN}")
    stored = json.loads(GOLDEN.read_text())
    assert [step for step, _ in curve["loss"]] == list(range(1, 17))
    for key in ("loss", "val_loss"):
        assert [s for s, _ in curve[key]] == [s for s, _ in stored[key]], key
        for (step, got), (_, want) in zip(curve[key], stored[key], strict=True):
            assert got == pytest.approx(want, rel=RTOL, abs=ATOL), f"{key} at step {step}"
