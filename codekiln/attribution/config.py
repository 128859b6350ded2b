"""What decides an attribution index: gram width and stride, normalisation, Bloom filter size."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from codekiln.attribution.grams import WHITESPACE_MODES
from codekiln.errors import UserError


@dataclass
class AttributionConfig:
    """Data Portraits' defaults: 50-character grams stored without overlap (stride = width).

    >>> AttributionConfig(stride=25).stride
    25
    """

    width: int = 50  # characters per gram, after normalisation
    stride: int = 50  # distance between the starts of stored grams; queries use stride 1
    false_positive_rate: float = 0.001  # per query gram, for the Bloom filter alone
    whitespace: str = "remove"  # "remove" | "collapse" | "keep" (grams.py says why)
    lowercase: bool = False  # fold ASCII A-Z before hashing
    source_table: bool = True  # also store (gram hash -> document) to name sources

    def __post_init__(self) -> None:
        for name in ("width", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UserError(
                    f"attribution config: {name} must be a positive whole number, got {value!r}"
                )
        if self.width < 8:
            raise UserError(
                f"attribution config: width {self.width} is too short to say anything about "
                "where text came from; use 50 (Data Portraits) or at least 8"
            )
        if self.stride > self.width:
            raise UserError(
                f"attribution config: stride {self.stride} is larger than width {self.width}, "
                "so text between grams would never be stored; use a stride <= width "
                "(= width is Data Portraits' choice)"
            )
        rate = self.false_positive_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < 0.5:
            raise UserError(
                f"attribution config: false_positive_rate must be a number in (0, 0.5), "
                f"e.g. 0.001, got {rate!r}"
            )
        self.false_positive_rate = float(rate)
        if self.whitespace not in WHITESPACE_MODES:
            raise UserError(
                f"attribution config: whitespace must be one of {', '.join(WHITESPACE_MODES)}, "
                f"got {self.whitespace!r}"
            )
        for name in ("lowercase", "source_table"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(
                    f"attribution config: {name} must be true or false, got {getattr(self, name)!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
