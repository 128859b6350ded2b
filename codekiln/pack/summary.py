"""What `codekiln pack` (and `run`) print about the token shards."""

from __future__ import annotations

from rich.console import Console


def print_pack_summary(console: Console, result) -> None:
    if result.skipped:
        console.print(f"{result.out_dir} is already packed with these settings; nothing to do.")
    splits = result.meta["splits"]
    parts = [
        f"{name}: {s['tokens']:,} tokens in {s['documents']:,} documents"
        for name, s in splits.items()
    ]
    console.print("pack: " + "; ".join(parts) + f" ({result.meta['dtype']})")
    console.print(f"token shards: {result.out_dir}")
