"""Query an attribution index: which parts of a document overlap the training data, and where
they came from. The server's `POST /overlap` answers with `overlap_response`.

A query normalises the document as the build did and hashes a gram at every normalised
position (stride 1), so a stored gram is found wherever it sits in the document. Each gram
the Bloom filter reports is then looked up in the source table. With `verify` (the default,
when the index has a source table) grams the table lacks are dropped: the Bloom filter's
false positives disappear, and every span names at least one source. Without a source table,
or with `verify=False`, spans are the Bloom filter's answer alone (Data Portraits'): about
`false_positive_rate` of the grams of unseen text are reported, and `sources` are empty where
the table has nothing.

Hit grams that overlap or touch (in normalised text) merge into one span, reported in
offsets of the original document: Python `str` indices (code points), end exclusive.
`overlap_response` can count them in UTF-16 code units instead, as VS Code's and
JavaScript's strings do (a character beyond U+FFFF counts two), or in UTF-8 bytes.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from codekiln.attribution.bloom import BloomFilter
from codekiln.attribution.build import (
    BLOOM_FILE,
    DOCUMENTS_FILE,
    FORMAT_VERSION,
    METADATA,
    SOURCES_FILE,
    STAGE,
)
from codekiln.attribution.config import AttributionConfig
from codekiln.attribution.grams import code_points, normalise_codes, window_hashes
from codekiln.attribution.sources import lookup, rows_of
from codekiln.errors import UserError
from codekiln.manifest import read_manifest

OFFSET_UNITS = ("code-points", "utf-16", "utf-8")
# Code points that take more than one unit: UTF-16 counts astral ones twice; UTF-8 counts
# each range once more than the one below it.
ASTRAL = re.compile("[\U00010000-\U0010ffff]")
UTF8_WIDER = (re.compile("[^\x00-\x7f]"), re.compile("[^\x00-\u07ff]"), ASTRAL)
MAX_ROWS_PER_GRAM = 256  # a boilerplate gram can be in thousands of files; a few name it


@dataclass(frozen=True)
class Source:
    """A training file a span's grams came from; `grams`: how many of them it holds."""

    repo: str | None
    path: str | None
    license: str | None
    id: str | None
    grams: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Span:
    """Characters [start, end) of the queried document, found in the training data."""

    start: int
    end: int
    sources: tuple[Source, ...] = ()


def merge_grams(positions: np.ndarray, width: int) -> list[tuple[int, int]]:
    """Merge grams of `width` starting at sorted `positions` into (first, last) start pairs
    of runs whose grams overlap or touch.

    >>> merge_grams(np.array([0, 1, 2, 10, 14, 30]), 4)
    [(0, 2), (10, 14), (30, 30)]
    """
    if len(positions) == 0:
        return []
    breaks = np.flatnonzero(np.diff(positions) > width) + 1
    firsts = positions[np.concatenate([[0], breaks])]
    lasts = positions[np.concatenate([breaks - 1, [len(positions) - 1]])]
    return list(zip(firsts.tolist(), lasts.tolist(), strict=True))


def top_sources(rows: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """The `limit` most frequent rows as (row, count), most frequent first, then lowest row.

    >>> top_sources(np.array([7, 3, 7, 5, 3, 7]), 2)
    [(7, 3), (3, 2)]
    """
    if len(rows) == 0 or limit <= 0:
        return []
    values, counts = np.unique(rows, return_counts=True)
    order = np.lexsort((values, -counts))[:limit]
    return list(zip(values[order].tolist(), counts[order].tolist(), strict=True))


class AttributionIndex:
    """An index folder opened for queries; the arrays are memory-mapped, not read whole."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        bloom: BloomFilter,
        keys: np.ndarray | None,
        documents: pa.Table,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.config = AttributionConfig(**manifest["config"])
        self.bloom = bloom
        self.keys = keys
        self.doc_bits = int(manifest["sources"]["doc_bits"])
        self.documents = documents

    @classmethod
    def open(cls, path: str | Path) -> AttributionIndex:
        path = Path(path)
        manifest = read_manifest(path)
        if manifest is None or manifest.get("stage") != STAGE:
            raise UserError(
                f"{path} is not a finished attribution index (no attribution manifest.json): "
                f"build one with `codekiln attribution build DATA -o {path}`"
            )
        if manifest.get("index_format") != FORMAT_VERSION:
            raise UserError(
                f"{path} is an attribution index of format {manifest.get('index_format')}; this "
                f"codekiln reads format {FORMAT_VERSION}: rebuild it with `codekiln attribution "
                "build`"
            )
        try:
            bloom = BloomFilter.load(path / BLOOM_FILE, int(manifest["bloom"]["hashes"]))
            keys = None
            if manifest["config"]["source_table"]:
                keys = np.load(path / SOURCES_FILE, mmap_mode="r")
            table = pq.read_table(path / DOCUMENTS_FILE, columns=list(METADATA))
        except (OSError, ValueError) as exc:
            raise UserError(
                f"{path}: the index files cannot be read ({exc}); rebuild it with "
                "`codekiln attribution build`"
            ) from None
        return cls(path, manifest, bloom, keys, table)

    def _grams(self, document: str) -> tuple[np.ndarray, np.ndarray]:
        """(hash of the gram at every normalised position, original offset of each position)."""
        config = self.config
        codes, origin = normalise_codes(code_points(document), config.whitespace, config.lowercase)
        return window_hashes(codes, config.width), origin

    def _ranges(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.keys is None:
            empty = np.zeros(len(hashes), dtype=np.int64)
            return empty, empty
        return lookup(self.keys, hashes, self.doc_bits)

    def gram_hits(self, document: str, verify: bool = True) -> np.ndarray:
        """A bool for each gram of the normalised document (one per position where a whole
        gram fits): found in the index. `verify=False` gives the Bloom filter's answer."""
        hashes, _ = self._grams(document)
        hits = self.bloom.contains(hashes)
        if verify and self.keys is not None:
            lo, hi = self._ranges(hashes[hits])
            hits[np.flatnonzero(hits)[hi == lo]] = False
        return hits

    def query(self, document: str, max_sources: int = 3, verify: bool = True) -> list[Span]:
        """The spans of `document` found in the training data, each with up to `max_sources`
        training files, those holding most of the span's grams first."""
        hashes, origin = self._grams(document)
        positions = np.flatnonzero(self.bloom.contains(hashes))
        lo, hi = self._ranges(hashes[positions])
        if verify and self.keys is not None:
            found = hi > lo
            positions, lo, hi = positions[found], lo[found], hi[found]
        width = self.config.width
        spans = []
        for first, last in merge_grams(positions, width):
            members = slice(*np.searchsorted(positions, [first, last + 1]))
            sources = ()
            if self.keys is not None and max_sources > 0:
                rows = rows_of(
                    self.keys, lo[members], hi[members], self.doc_bits, MAX_ROWS_PER_GRAM
                )
                sources = tuple(self._source(r, n) for r, n in top_sources(rows, max_sources))
            spans.append(Span(int(origin[first]), int(origin[last + width - 1]) + 1, sources))
        return spans

    def contains(self, text: str) -> bool:
        """Whether any gram of `text` is in the training data (False for text shorter than a
        gram)."""
        return bool(self.gram_hits(text).any())

    def _source(self, row: int, grams: int) -> Source:
        fields = {name: self.documents.column(name)[row].as_py() for name in METADATA}
        return Source(grams=grams, **fields)


def describe_spans(document: str, spans: list[Span]) -> list[str]:
    """One line per span for a terminal: lines, characters, and the sources found.

    >>> spans = [Span(4, 60, (Source("acme/x", "a.py", "MIT", "1", 2),)), Span(70, 130)]
    >>> for line in describe_spans("ab\\ncd\\n" + "x" * 200, spans):
    ...     print(line)
    lines 2-3, characters 4-60 (56): acme/x a.py (MIT)
    lines 3-3, characters 70-130 (60): no source named (Bloom filter only)
    """
    lines = []
    for span in spans:
        first = document.count("\n", 0, span.start) + 1
        last = first + document.count("\n", span.start, max(span.end - 1, span.start))
        names = "; ".join(
            f"{s.repo or '?'} {s.path or '?'} ({s.license or 'no license'})" for s in span.sources
        )
        lines.append(
            f"lines {first}-{last}, characters {span.start}-{span.end} "
            f"({span.end - span.start}): {names or 'no source named (Bloom filter only)'}"
        )
    return lines


def overlap_response(
    index: AttributionIndex, document: str, max_sources: int = 3, offsets: str = "code-points"
) -> dict[str, list]:
    """The body of `POST /overlap`: llm-vscode's `{"spans": [[start, end], ...]}` plus
    `"sources"`, a list parallel to `spans` of each span's training files
    (`{"repo", "path", "license", "id", "grams"}`). `offsets` is the unit of the span
    offsets (`OFFSET_UNITS`; llm-vscode needs "utf-16")."""
    if not isinstance(document, str):
        raise UserError(f"document must be a string, got {type(document).__name__}")
    spans = index.query(document, max_sources=max_sources)
    ends = convert_offsets(document, [p for span in spans for p in (span.start, span.end)], offsets)
    return {
        "spans": [[ends[2 * i], ends[2 * i + 1]] for i in range(len(spans))],
        "sources": [[source.to_dict() for source in span.sources] for span in spans],
    }


def convert_offsets(document: str, positions: list[int], unit: str) -> list[int]:
    """Code-point offsets into `document` counted in `unit` instead ("code-points",
    "utf-16" code units or "utf-8" bytes).

    >>> convert_offsets("a😀b𝔘c", [0, 1, 2, 3, 4, 5], "utf-16")
    [0, 1, 3, 4, 6, 7]
    >>> convert_offsets("aé€😀", [1, 2, 3, 4], "utf-8")
    [1, 3, 6, 10]
    """
    if unit not in OFFSET_UNITS:
        raise UserError(f"offsets must be one of {', '.join(OFFSET_UNITS)}, got {unit!r}")
    if unit == "code-points" or not positions:
        return list(positions)
    patterns = (ASTRAL,) if unit == "utf-16" else UTF8_WIDER
    # Each position moves by how many wider code points precede it, per pattern.
    wider = [[m.start() for m in pattern.finditer(document)] for pattern in patterns]
    return [p + sum(bisect.bisect_left(starts, p) for starts in wider) for p in positions]
