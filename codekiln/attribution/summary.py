"""What `codekiln attribution build` (and `run`) print about the index."""

from __future__ import annotations

from rich.console import Console


def print_attribution_summary(console: Console, result) -> None:
    def show(value) -> str:
        if isinstance(value, float):
            return f"{value:.2%}" if value < 1 else f"{value:,.1f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    counts = ", ".join(f"{k} {show(v)}" for k, v in result.counts.items())
    console.print(f"attribution index in {result.out_dir}: {counts}")
    console.print("sizes: " + ", ".join(f"{k} {show(v)}" for k, v in result.sizes.items()))
