"""What to generate and what came back: `SamplingParams` in, `Completion`s out.

Both are plain data shared by every backend, the evaluation harness and the server, so they
import nothing heavy. The defaults are the BigCode harness's for HumanEval (temperature 0.2,
top-p 0.95).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from codekiln.errors import UserError

FINISH_REASONS = ("stop", "length", "eos")


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop.

    Greedy decoding when `greedy` is set or `temperature` is 0; otherwise temperature, then
    top-k (0: off), then top-p (1: off) shape the distribution, as transformers applies them.
    `stop` strings are matched on the decoded text, across token boundaries; the returned
    text ends before the first stop string. `ignore_eos` keeps decoding past the end-of-text
    token (for benchmarks that need exactly max_new_tokens tokens).

    `max_length`, when set, caps prompt plus completion in tokens, as transformers'
    `max_length` and the BigCode harness's `max_length_generation` do: a prompt of p tokens
    gets at most `max_length - p` new tokens (and still at most `max_new_tokens`); a prompt
    of `max_length` tokens or more gets none, an empty completion, as in the harness (which
    truncates such a prompt to `max_length` tokens, and keeps the input as the generation
    when transformers refuses to extend it). Backends that cannot count prompt tokens (an
    HTTP endpoint) use `max_new_tokens` alone.

    >>> SamplingParams(temperature=0).is_greedy, SamplingParams(stop=["\\ndef"]).stop
    (True, ('\\ndef',))
    """

    max_new_tokens: int = 512
    temperature: float = 0.2
    top_p: float = 0.95
    top_k: int = 0
    n: int = 1  # samples per prompt
    seed: int = 0
    stop: tuple[str, ...] = ()
    greedy: bool = False
    ignore_eos: bool = False
    max_length: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            raise UserError(
                f"sampling: stop must be a list of strings, got the string {self.stop!r}: "
                f"write stop=[{self.stop!r}]"
            )
        object.__setattr__(self, "stop", tuple(self.stop))
        for name in ("max_new_tokens", "n"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise UserError(f"sampling: {name} must be a positive integer, got {value!r}")
        if self.max_length is not None and (not _is_int(self.max_length) or self.max_length < 1):
            raise UserError(
                f"sampling: max_length must be a positive integer, got {self.max_length!r}"
            )
        if not _is_int(self.top_k) or self.top_k < 0:
            raise UserError(
                f"sampling: top_k must be a non-negative integer (0 turns it off), "
                f"got {self.top_k!r}"
            )
        if not _is_int(self.seed):
            raise UserError(f"sampling: seed must be an integer, got {self.seed!r}")
        if not isinstance(self.temperature, int | float) or not self.temperature >= 0:
            raise UserError(
                f"sampling: temperature must be 0 (greedy) or positive, got {self.temperature!r}"
            )
        if not isinstance(self.top_p, int | float) or not 0 < self.top_p <= 1:
            raise UserError(
                f"sampling: top_p must be in (0, 1] (1 turns it off), got {self.top_p!r}"
            )
        for stop in self.stop:
            if not isinstance(stop, str) or not stop:
                raise UserError(
                    f"sampling: every stop sequence must be a non-empty string, got {stop!r}"
                )

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0


@dataclass
class Completion:
    """One sample: the text after the prompt, cut before any stop string.

    `tokens` counts the tokens generated (not the end-of-text token); `token_ids` holds them
    where the backend knows them (not over HTTP). `finish_reason` is "stop" (a stop string),
    "eos" (the model ended the text) or "length" (max_new_tokens, or the context, ran out).
    An OpenAI-compatible server reports the end of text as "stop" too.
    """

    text: str
    tokens: int
    finish_reason: str
    prompt_tokens: int = 0
    token_ids: tuple[int, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        assert self.finish_reason in FINISH_REASONS, self.finish_reason


def sample_seed(seed: int, *indices: int) -> int:
    """A 63-bit seed for one prompt (or one sample) of a request seeded with `seed`.

    Hashing keeps streams apart that `seed + index` would share (seed 1's first prompt and
    seed 0's second), and makes a prompt's samples independent of the other prompts.

    >>> sample_seed(0, 1) == sample_seed(0, 1) != sample_seed(1, 0)
    True
    """
    key = ":".join(str(part) for part in (seed, *indices)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
