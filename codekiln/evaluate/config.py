"""The evaluate stage's config: what to generate, how many samples, how to run them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from codekiln.errors import UserError
from codekiln.evaluate.multiple.versions import VERSIONS

ISOLATION = ("auto", "bwrap", "none")
HARNESS_MAX_LENGTH = 512  # the BigCode harness's max_length_generation default


@dataclass
class EvalConfig:
    """How `codekiln eval` generates and scores.

    Defaults are the BigCode harness's for HumanEval: temperature 0.2, top-p 0.95, and
    `max_length_generation` 512, which counts the prompt's tokens AND the generated ones (a
    300-token prompt leaves 212 new tokens; a prompt of 512 or more gets an empty
    completion, as in the harness). `max_new_tokens` counts generated tokens only; set one of
    the two. With neither, the harness's 512 applies. `greedy` gives one deterministic sample per
    problem. `data` maps a task name ("" for every task that reads data) to official
    benchmark rows on disk (`codekiln eval --data [TASK=]PATH`).

    >>> EvalConfig(greedy=True, n_samples=5).samples
    1
    >>> EvalConfig().length, EvalConfig(max_new_tokens=128).length
    (('max_length_generation', 512), ('max_new_tokens', 128))
    """

    tasks: list[str] = field(default_factory=lambda: ["humaneval"])
    n_samples: int = 1
    temperature: float = 0.2
    top_p: float = 0.95
    top_k: int = 0
    greedy: bool = False
    max_length_generation: int | None = None  # prompt + generation tokens (harness: 512)
    max_new_tokens: int | None = None  # generated tokens only
    seed: int = 0
    limit: int | None = None  # the first N problems of each task (a quick look)
    batch_size: int = 8  # problems per generation call; generations are saved per batch
    workers: int = 2  # programs run at once in the sandbox
    timeout: float | None = None  # seconds per program; None: the task's (3 s for HumanEval)
    memory_mb: int = 2048  # address space per program
    isolation: str = "auto"  # auto: bubblewrap when present, else rlimits only (warned)
    data: dict[str, str] = field(default_factory=dict)  # task ("" = any) -> official rows
    # The MultiPL-E rows the translator writes offline: "3" (versions.DEFAULT_VERSION) is
    # what the BigCode harness runs now, "2.1.0" what it ran for the StarCoder papers,
    # "2023-09" the files in MultiPL-E's repository (docs/multiple.md).
    multiple_version: str = "3"

    def __post_init__(self) -> None:
        if isinstance(self.tasks, str):
            self.tasks = [t.strip() for t in self.tasks.split(",") if t.strip()]
        if not isinstance(self.tasks, list) or not all(isinstance(t, str) for t in self.tasks):
            raise UserError(f"eval config: tasks must be a list of task names, got {self.tasks!r}")
        for name in ("n_samples", "batch_size", "workers", "memory_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"eval config: {name} must be a positive integer, got {value!r}")
        for name in ("max_length_generation", "max_new_tokens"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise UserError(f"eval config: {name} must be a positive integer, got {value!r}")
        if self.max_length_generation is not None and self.max_new_tokens is not None:
            raise UserError(
                "eval config: give max_length_generation (prompt + generation, as the BigCode "
                "harness) or max_new_tokens (generation only), not both"
            )
        if not isinstance(self.data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.data.items()
        ):
            raise UserError(f"eval config: data must map task names to paths, got {self.data!r}")
        if self.multiple_version not in VERSIONS:
            raise UserError(
                f"eval config: multiple_version must be one of {', '.join(VERSIONS)}, "
                f"got {self.multiple_version!r}"
            )
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1
        ):
            raise UserError(f"eval config: limit must be a positive integer, got {self.limit!r}")
        if not isinstance(self.temperature, int | float) or self.temperature < 0:
            raise UserError(
                f"eval config: temperature must be 0 (greedy) or more, got {self.temperature!r}"
            )
        if not isinstance(self.top_p, int | float) or not 0 < self.top_p <= 1:
            raise UserError(f"eval config: top_p must be in (0, 1], got {self.top_p!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise UserError(f"eval config: top_k must be 0 (off) or more, got {self.top_k!r}")
        if self.timeout is not None and (
            not isinstance(self.timeout, int | float) or self.timeout <= 0
        ):
            raise UserError(f"eval config: timeout must be positive seconds, got {self.timeout!r}")
        if self.isolation not in ISOLATION:
            raise UserError(
                f"eval config: isolation must be one of {', '.join(ISOLATION)}, "
                f"got {self.isolation!r}"
            )

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0

    @property
    def samples(self) -> int:
        """Samples per problem: one under greedy decoding (more would be copies)."""
        return 1 if self.is_greedy else self.n_samples

    @property
    def length(self) -> tuple[str, int]:
        """Which length limit applies and its value: ("max_length_generation", N), counting
        prompt + generation tokens, or ("max_new_tokens", N), counting generation only."""
        if self.max_new_tokens is not None:
            return "max_new_tokens", self.max_new_tokens
        return "max_length_generation", self.max_length_generation or HARNESS_MAX_LENGTH

    def sampling_lengths(self) -> dict[str, int | None]:
        """`SamplingParams` fields for the length rule: {max_new_tokens, max_length}."""
        rule, value = self.length
        if rule == "max_new_tokens":
            return {"max_new_tokens": value, "max_length": None}
        return {"max_new_tokens": value, "max_length": value}  # new tokens <= the total

    def generation_settings(self) -> dict[str, Any]:
        """Everything that decides the generations: a resumed run must match it."""
        keys = ("temperature", "top_p", "top_k", "seed", "batch_size")
        rule, value = self.length
        return {
            "greedy": self.is_greedy,
            "n_samples": self.samples,
            rule: value,
            **{k: getattr(self, k) for k in keys},
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
