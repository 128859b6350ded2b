"""What a run reports as it goes: metrics.jsonl, MFU, the loss plot and the progress bar.

    DIR/metrics.jsonl   one JSON object per log step, and one per evaluation
    DIR/loss.png        the loss curves

MFU = flops_per_token x tokens/s / (peak x ranks), PaLM's definition (its appendix B): the
FLOPs a step needs, 6N + 12 L C T per token (model/config.py's `flops_per_token`: N without
the position table, the tied embedding in it as the output matmul; attention over the full
T x T square), whatever is recomputed under activation checkpointing. The peak is
`peak_flops` when set; else, under bf16 on a GPU whose `torch.cuda.get_device_name` is in
PEAK_BF16_FLOPS (exact names: "NVIDIA H100 PCIe" and "NVIDIA H100 80GB HBM3" differ by a
third), the datasheet's dense bf16 figure; else a large matmul measured at start-up in the
compute dtype, and `peak_flops` says so (on CPU, MFU is then the share of what the BLAS
achieves on one GEMM, not of a datasheet figure).
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from codekiln.manifest import write_atomic
from codekiln.train.config import TrainConfig

# Dense bf16 tensor-core peak FLOP/s (no sparsity) from NVIDIA's datasheets, keyed by the
# exact name torch.cuda.get_device_name reports. The A10G (AWS's A10 variant) has no
# published figure, so it is measured like any name not here.
PEAK_BF16_FLOPS = {
    "NVIDIA B200": 2250e12,
    "NVIDIA H200": 989e12,  # SXM
    "NVIDIA H200 NVL": 836e12,
    "NVIDIA H100 80GB HBM3": 989e12,  # SXM
    "NVIDIA H100 NVL": 836e12,
    "NVIDIA H100 PCIe": 756e12,
    "NVIDIA GH200 480GB": 989e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA A100-PCIE-40GB": 312e12,
    "NVIDIA A30": 165e12,
    "NVIDIA A40": 149.7e12,
    "NVIDIA A10": 125e12,
    "NVIDIA L40S": 362e12,
    "NVIDIA L40": 181e12,
    "NVIDIA L4": 121e12,
}


def measured_matmul_flops(device: torch.device, dtype: torch.dtype, size: int = 1024) -> float:
    """FLOP/s of the best of a few (size x size) @ (size x size) matmuls on `device`."""
    a = torch.full((size, size), 0.5, device=device, dtype=dtype)
    b = torch.full((size, size), 0.25, device=device, dtype=dtype)
    repeats = 4
    best = math.inf
    for _ in range(4):
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best


def datasheet_peak(name: str) -> float | None:
    """The dense bf16 peak of the GPU named exactly `name`, None for a name not in the table.

    >>> datasheet_peak("NVIDIA H100 80GB HBM3"), datasheet_peak("NVIDIA H100 PCIe")
    (989000000000000.0, 756000000000000.0)
    >>> datasheet_peak("NVIDIA H100"), datasheet_peak("NVIDIA A10G")
    (None, None)
    """
    return PEAK_BF16_FLOPS.get(name.strip())


def peak_flops(
    config: TrainConfig,
    device: torch.device,
    dtype: torch.dtype,
    say: Callable[[str], None] | None = None,
) -> float:
    """Per-device peak for MFU: the config's, else the datasheet's dense bf16 figure for a
    GPU named exactly in PEAK_BF16_FLOPS under bf16, else a matmul measured here (on CPU:
    what the BLAS achieves); on a GPU `say` is told why it was measured."""
    if config.peak_flops is not None:
        return config.peak_flops
    peak, why = device_peak(device, dtype)
    if why and say is not None and device.type == "cuda":
        say(f"MFU: {why}; set peak_flops to use a datasheet figure")
    return peak


def device_peak(device: torch.device, dtype: torch.dtype) -> tuple[float, str | None]:
    """(peak FLOP/s, None) from the datasheet table, or (a measured matmul's FLOP/s, why it
    was measured)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        known = datasheet_peak(name)
        if known is not None and dtype == torch.bfloat16:
            return known, None
        why = (
            f"{name!r} is not in the datasheet table (exact names)"
            if known is None
            else f"the compute dtype is {str(dtype).removeprefix('torch.')}, not bfloat16"
        )
    else:
        why = "a CPU has no datasheet figure"
    size = 4096 if device.type == "cuda" else 1024
    measured = measured_matmul_flops(device, dtype, size)
    return (
        measured,
        f"{why}: the peak is a measured {size}^3 matmul ({measured / 1e12:,.1f} TFLOP/s)",
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl; a torn last line (a killed write) is left out."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def keep_metrics_through(path: Path, step: int) -> None:
    """Drop rows after `step`: a resumed run logs those steps again."""
    rows = [row for row in read_metrics(path) if row.get("step", 0) <= step]
    write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def plot_losses(metrics: Path, out: Path) -> None:
    """loss.png: training loss (and validation loss, where there is one) against step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = read_metrics(metrics)
    train_rows = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    valid_rows = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    figure = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    if train_rows:
        axes.plot(*zip(*train_rows, strict=True), ".-", label="train")
    if valid_rows:
        axes.plot(*zip(*valid_rows, strict=True), "o-", label="validation")
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats per token)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    write_atomic(out, png.getvalue())


class TrainProgress:
    """A rich progress bar of optimizer steps on rank 0, or nothing.

    Unlike codekiln.progress.StageProgress it starts part-way (a resumed run), shows the
    estimated time left, and its text is the latest loss and tokens/s rather than totals.
    """

    def __init__(self, enabled: bool, total: int, start: int) -> None:
        self.enabled = enabled
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps · {task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self._bar.start()
            self._task = self._bar.add_task("train", total=total, completed=start, status="")

    def update(self, step: int, status: str | None = None) -> None:
        if self.enabled:
            fields = {} if status is None else {"status": status}
            self._bar.update(self._task, completed=step, **fields)

    def close(self) -> None:
        if self.enabled:
            self._bar.stop()
