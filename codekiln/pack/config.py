"""What pack is asked to do (`PackConfig`) and the document layout that gives with a given
tokenizer (`resolve_layout`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codekiln.errors import UserError
from codekiln.pack.documents import Layout
from codekiln.tokenizer.family import FAMILIES, detect_format, model_context_length

DEFAULT_CONTEXT_LENGTH = 4096  # StarCoder2's pretraining context, where no model folder says


@dataclass
class PackConfig:
    """How curated records become token shards.

    `format` picks the document layout: "auto" (the tokenizer's special tokens decide, see
    codekiln.tokenizer.family), "starcoder", "starcoder2" or "plain". The last three settings
    are StarCoder2's: `fim_rate` the share of files put in Fill-in-the-Middle form while
    packing (None: 0.5 where the tokenizer has FIM tokens; the other layouts leave FIM to
    training), `repo_metadata_probability` the share of repositories with <repo_name> and
    paths, `context_length` the most tokens one repository document holds (None: the
    tokenizer folder's config.json says, else 4096).

    >>> PackConfig(valid_fraction=0).valid_fraction
    0.0
    >>> PackConfig(format="starcoder2", fim_rate=0).fim_rate
    0.0
    """

    valid_fraction: float = 0.01  # share of repositories in the validation split
    metadata_probability: float = 0.2  # each of <reponame>, <filename>, <gh_stars> on its own
    seed: int = 42
    shard_tokens: int = 500_000_000  # tokens per .bin shard before a new one starts
    batch_records: int = 256  # records per encode batch: the unit of parallel work
    format: str = "auto"  # auto | starcoder | starcoder2 | plain
    fim_rate: float | None = None  # starcoder2: files in FIM form (None: 0.5 with FIM tokens)
    repo_metadata_probability: float = 0.5  # starcoder2: repositories with <repo_name>, paths
    context_length: int | None = None  # starcoder2: tokens per repository document at most

    def __post_init__(self) -> None:
        for name in ("valid_fraction", "metadata_probability", "repo_metadata_probability"):
            self._number(name)
        if self.fim_rate is not None:
            self._number("fim_rate")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise UserError(
                f"pack config: valid_fraction is a share of repositories in [0, 1) "
                f"(e.g. 0.01; 0 for no validation split), got {self.valid_fraction}"
            )
        for name, usual in (
            ("metadata_probability", "StarCoder: 0.2"),
            ("repo_metadata_probability", "StarCoder2: 0.5"),
            ("fim_rate", "StarCoder2: 0.5; none to choose by the tokenizer"),
        ):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise UserError(f"pack config: {name} must be in [0, 1] ({usual}), got {value}")
        for name in ("seed", "shard_tokens", "batch_records", "context_length"):
            value = getattr(self, name)
            if name == "context_length" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise UserError(f"pack config: {name} must be a whole number, got {value!r}")
        if self.seed < 0:
            raise UserError(f"pack config: seed must be 0 or more, got {self.seed}")
        for name in ("shard_tokens", "batch_records", "context_length"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"pack config: {name} must be positive, got {value}")
        if self.format not in ("auto", *FAMILIES):
            raise UserError(
                f"pack config: format must be auto, {', '.join(FAMILIES)}; got {self.format!r}"
            )

    def _number(self, name: str) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"pack config: {name} must be a number, got {value!r}")
        # 0 and 0.0 are one setting: a float keeps the saved config (and its hash) the same.
        setattr(self, name, float(value))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_layout(config: PackConfig, tokenizer, folder: str | Path | None = None) -> Layout:
    """The layout `config` asks of this tokenizer (and its folder: eos, context length); a
    UserError (one line) where the tokenizer cannot do it or a setting does not apply."""
    document_format = detect_format(tokenizer, folder, config.format)
    family = document_format.family
    asked = config.fim_rate
    if document_format.fim is None:
        if asked:
            raise UserError(
                f"pack config: fim_rate {asked} needs FIM tokens (<fim_prefix>, <fim_middle>, "
                "<fim_suffix>, or SantaCoder's <fim-prefix>...), which the tokenizer lacks: "
                "set fim_rate=0 or leave it unset"
            )
        fim = "none"
    elif family == "starcoder2":
        fim = "file"
    else:
        if asked:
            raise UserError(
                f"pack config: fim_rate {asked} is for the starcoder2 layout; the {family} "
                "layout does FIM while training (context level): leave pack's fim_rate unset "
                "and set the training fim_rate"
            )
        fim = "context"
    if family != "starcoder2":
        if config.context_length is not None:
            raise UserError(
                f"pack config: context_length is for the starcoder2 layout, and this pack is "
                f"{family}: leave it unset, or set format=starcoder2"
            )
        return Layout(document_format, fim, 0.0, None, None)
    rate = (0.5 if asked is None else asked) if fim == "file" else 0.0
    context = config.context_length or model_context_length(folder) or DEFAULT_CONTEXT_LENGTH
    return Layout(document_format, fim, rate, config.repo_metadata_probability, context)
