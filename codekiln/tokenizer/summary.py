"""What `codekiln tokenizer train` (and `run`) print about the tokenizer it trained."""

from __future__ import annotations

from rich.console import Console


def print_tokenizer_summary(console: Console, result) -> None:
    if result.skipped:
        console.print(f"{result.out_dir} is already trained with these settings; nothing to do.")
    overall = result.fertility.get("overall", {})
    console.print(
        f"tokenizer: {result.vocab_size:,} tokens, trained on {result.sample_documents:,} "
        f"documents ({result.sample_bytes / 1e6:,.1f} MB); "
        f"{overall.get('chars_per_token', 0):.2f} characters per token on held-out text"
    )
    console.print(f"tokenizer folder: {result.out_dir}")
