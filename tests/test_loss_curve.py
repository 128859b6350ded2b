"""A stored loss curve: a tiny seeded training run must reproduce it step by step.

The run is the smallest preset (`tiny`, at two layers) on a pack made here from a few
repetitive Python files, float32 on the CPU, with a loss row every step. Its per-step
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

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import small_bpe

from codekiln.pack.pack import PackConfig, pack
from codekiln.tokenizer.special import SPECIAL_TOKENS
from codekiln.train.config import TrainConfig
from codekiln.train.loop import train
from codekiln.train.metrics import read_metrics

GOLDEN = Path(__file__).parent / "data" / "loss_curve.json"
UPDATE = os.environ.get("CODEKILN_UPDATE_GOLDEN") == "1"
RTOL, ATOL = 1e-3, 1e-4

SNIPPETS = [
    "def add(a, b):\n    return a + b\n",
    "def scale(values, factor):\n    return [v * factor for v in values]\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "for i in range(10):\n    print(i, i * i)\n",
    "import os\n\n\ndef names(root):\n    return sorted(os.listdir(root))\n",
]


def _pack(root: Path) -> tuple[Path, Path]:
    """(pack dir, tokenizer dir): ~6k tokens of 32 files in eight repositories."""
    rows = []
    for i in range(32):
        content = SNIPPETS[i % len(SNIPPETS)] * 4 + SNIPPETS[(i + 2) % len(SNIPPETS)]
        rows.append(
            {
                "id": f"{i:08x}",
                "content": content,
                "repo": f"owner/repo{i % 8}",
                "path": f"pkg/mod{i}.py",
                "lang": "Python",
                "license": "MIT",
                "stars": i,
                "kind": "file",
                "source": "fixture",
                "size": len(content),
                "max_line_length": max(len(line) for line in content.splitlines()),
                "avg_line_length": 20.0,
                "alphanum_fraction": 0.7,
            }
        )
    curated = root / "curated"
    curated.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), curated / "part-00000.parquet")
    tokenizer = root / "tokenizer"
    tokenizer.mkdir()
    small_bpe(SNIPPETS * 4, SPECIAL_TOKENS, vocab_size=300).save(str(tokenizer / "tokenizer.json"))
    pack(curated, tokenizer, root / "tokens", PackConfig(valid_fraction=0.2), progress=False)
    return root / "tokens", tokenizer


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
def test_a_tiny_seeded_run_reproduces_the_stored_loss_curve(tmp_path):
    data, tokenizer = _pack(tmp_path)
    config = TrainConfig(
        model="tiny",
        model_overrides={"n_layer": 2},
        tokenizer=str(tokenizer),
        seq_len=32,
        batch_size=4,
        max_steps=16,
        warmup_steps=4,
        lr=3e-3,
        min_lr=3e-4,
        log_every=1,
        eval_every=8,
        eval_batches=2,
        checkpoint_every=0,
        seed=1234,
        dtype="float32",  # "auto" would pick bf16 on AMX CPUs
        compile=False,
        peak_flops=1e11,  # skip measuring a matmul
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
