"""'Am I in this dataset?': a repository's, owner's or file's rows in a curated ledger."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds

from codekiln.errors import UserError

_COLUMNS = [
    "id",
    "repo",
    "path",
    "lang",
    "status",
    "reason",
    "detail",
    "duplicate_of",
    "license",
    "pii",
]


@dataclass
class LookupResult:
    query: str
    rows: list[dict]

    @property
    def kept(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "kept"]

    def reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            if row["status"] != "kept":
                counts[row["reason"]] = counts.get(row["reason"], 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def lookup(dataset: str | Path, query: str) -> LookupResult:
    """Rows whose repository is `query` (owner/name, case-insensitive), whose owner is `query`,
    or whose path is `query` or ends with '/' + `query`; sorted by repository and path."""
    ledger = Path(dataset) / "ledger"
    if not ledger.is_dir():
        raise UserError(f"{dataset} is not a curated dataset (no ledger/ folder)")
    query = query.strip().rstrip("/")
    if not query:
        raise UserError("give a repository (owner/name), an owner, or a file path to look up")
    table = ds.dataset(str(ledger), format="parquet").to_table(columns=_COLUMNS)
    repo = pc.utf8_lower(table["repo"])
    low = query.lower()
    mask = pc.or_(
        pc.or_(pc.equal(repo, low), pc.starts_with(repo, low + "/")),
        pc.or_(pc.equal(table["path"], query), pc.ends_with(table["path"], "/" + query)),
    )
    rows = table.filter(mask).to_pylist()
    rows.sort(key=lambda r: (r["repo"], r["path"]))
    survivors = _survivors(ledger, {r["duplicate_of"] for r in rows if r["duplicate_of"]})
    for row in rows:
        row["survivor"] = survivors.get(row["duplicate_of"])
    return LookupResult(query, rows)


def _survivors(ledger: Path, ids: set[str]) -> dict[str, str]:
    """'repo/path' of each surviving id, from a filtered scan of the ledger."""
    if not ids:
        return {}
    wanted = pc.field("id").isin(sorted(ids))
    found = ds.dataset(str(ledger), format="parquet").to_table(
        columns=["id", "repo", "path"], filter=wanted
    )
    return {
        id_: f"{repo}/{path}"
        for id_, repo, path in zip(
            found["id"].to_pylist(),
            found["repo"].to_pylist(),
            found["path"].to_pylist(),
            strict=True,
        )
    }


def row_detail(row: dict) -> str:
    """What to show beside a row's status: the surviving file of a duplicate, the license,
    the ledger's detail, and what PII was redacted.

    >>> row_detail({"status": "dropped", "reason": "license", "license": None, "detail": None,
    ...             "duplicate_of": None, "survivor": None, "pii": None})
    'no license detected'
    """
    parts = []
    if row["duplicate_of"]:
        parts.append(f"duplicate of {row.get('survivor') or row['duplicate_of']}")
    elif row["reason"] == "license":
        parts.append(row["license"] or "no license detected")
    else:
        if row["detail"]:
            parts.append(row["detail"])
        if row["status"] == "kept" and not row["license"]:
            parts.append("no license detected")
    if row["pii"]:
        parts.append(f"redacted {row['pii']}")
    return " ".join(parts)
