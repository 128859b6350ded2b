"""Code attribution: a Data-Portraits-style index of the curated training data.

`build_index` cuts every curated document, normalised (whitespace removed by default), into
non-overlapping 50-character grams, puts their hashes in a Bloom filter sized for a chosen
false-positive rate, and keeps a source table from gram hash to document, so that a hit can
name the training files (repository, path, license) it came from. `AttributionIndex.query`
hashes a document's grams at every position and reports the spans found, in the document's
own character offsets. Spans shorter than the gram width cannot be found; a span of at least
width + stride - 1 normalised characters always contains one stored gram.

    result = build_index("curated/", "index/", AttributionConfig())
    index = AttributionIndex.open("index/")
    overlap_response(index, completion)   # {"spans": [[start, end], ...], "sources": [...]}
    overlap_response(index, completion, offsets="utf-16")   # VS Code's offsets
"""

from codekiln.attribution.build import IndexResult, build_index
from codekiln.attribution.config import AttributionConfig
from codekiln.attribution.index import (
    OFFSET_UNITS,
    AttributionIndex,
    Source,
    Span,
    convert_offsets,
    describe_spans,
    overlap_response,
)

__all__ = [
    "OFFSET_UNITS",
    "AttributionConfig",
    "AttributionIndex",
    "IndexResult",
    "Source",
    "Span",
    "build_index",
    "convert_offsets",
    "describe_spans",
    "overlap_response",
]
