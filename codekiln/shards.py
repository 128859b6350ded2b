"""The curated shards every stage after curate reads: `DIR/part-NNNNN.parquet`."""

from __future__ import annotations

from pathlib import Path

from codekiln.errors import UserError


def curated_shards(data: str | Path) -> list[Path]:
    """The curated shards of `data` in name order; a UserError says how to make them if none."""
    data = Path(data)
    if not data.exists():
        raise UserError(
            f"no curated records in {data}: it does not exist; run `codekiln curate SRC -o "
            f"{data}` first, or give the folder it wrote"
        )
    if not data.is_dir():
        raise UserError(
            f"no curated records in {data}: it is a file, not the curated folder (part-*.parquet)"
        )
    files = sorted(data.glob("part-*.parquet"))
    if not files:
        raise UserError(
            f"no curated records in {data}: it holds no curated shards (part-*.parquet); "
            f"run `codekiln curate SRC -o {data}` first"
        )
    return files
