"""The one interface every engine implements, and what the engines share.

A `Backend` completes prompts (n samples each), fills in the middle between a prefix and a
suffix, and streams one sample as text deltas. The evaluation harness and the server see
only this interface; `codekiln.generate.load_backend` picks the engine that runs a model.
Engines import this module; it imports none of them.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from codekiln.errors import PromptTooLong, UserError
from codekiln.generate.params import Completion, SamplingParams, sample_seed
from codekiln.tokenizer.special import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

FIM_ORDERS = ("psm", "spm")


@runtime_checkable
class Backend(Protocol):
    name: str
    context_length: int  # tokens of prompt + completion the model takes (0: unknown)
    supports_fim: bool

    def complete(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        """params.n completions per prompt, in prompt order."""
        ...

    def infill(
        self, prefixes: Sequence[str], suffixes: Sequence[str], params: SamplingParams
    ) -> list[list[Completion]]:
        """params.n middles per (prefix, suffix) pair; UserError without FIM tokens."""
        ...

    def stream(self, prompt: str, params: SamplingParams, suffix: str | None = None) -> TextStream:
        """One sample (params.n must be 1) as text deltas; a suffix makes it an infill."""
        ...


class TokenBackend:
    """What the backends that tokenize and decode themselves (ours, transformers) share:
    `complete`, `infill` and `stream` over `prompt_ids`, overlong prompts refused before any
    work (or trimmed by `fit_prompt` and streamed with `stream_ids`, as the server does), and
    a seed per prompt. Subclasses give `prompt_ids`, `_fim_parts`, `_generate(ids, params,
    seed)` and `_stream`, and set `context_length`."""

    counts_prompt_tokens = True  # max_length (prompt + completion) can be applied

    def complete(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        check_prompts(prompts)
        return self._generate_all([self.prompt_ids(prompt) for prompt in prompts], params)

    def infill(
        self, prefixes: Sequence[str], suffixes: Sequence[str], params: SamplingParams
    ) -> list[list[Completion]]:
        check_infill_args(prefixes, suffixes)
        prompt_ids = [self.prompt_ids(p, s) for p, s in zip(prefixes, suffixes, strict=True)]
        return self._generate_all(prompt_ids, params)

    def stream(self, prompt: str, params: SamplingParams, suffix: str | None = None) -> TextStream:
        return self.stream_ids(self.prompt_ids(prompt, suffix), params)

    def stream_ids(self, ids: list[int], params: SamplingParams) -> TextStream:
        """`stream` from prompt token ids (a prompt `fit_prompt` trimmed, say)."""
        check_stream_params(params)
        # Refuse an overlong prompt now, not at the first next().
        if self._budget(len(ids), params) == 0:
            return TextStream(_nothing(len(ids)))
        return TextStream(self._stream(ids, params))

    def _generate_all(
        self, prompt_ids: list[list[int]], params: SamplingParams
    ) -> list[list[Completion]]:
        budgets = [self._budget(len(ids), params) for ids in prompt_ids]  # refuse early
        return [
            self._generate(ids, params, sample_seed(params.seed, index))
            if budget
            else [Completion("", 0, "length", prompt_tokens=len(ids)) for _ in range(params.n)]
            for index, (ids, budget) in enumerate(zip(prompt_ids, budgets, strict=True))
        ]

    def prompt_ids(self, prompt: str, suffix: str | None = None) -> list[int]:
        raise NotImplementedError

    def fit_prompt(
        self,
        prompt: str,
        suffix: str | None,
        max_new_tokens: int | None,
        keep: int | None = None,
    ) -> list[int]:
        """`prompt_ids`, trimmed so that `max_new_tokens` still fit the context after them
        (None: no such bound) and to at most `keep` tokens (TGI's `truncate`): the end of the
        prompt stays, and of a fill-in-the-middle the end of the prefix and the start of the
        suffix (see `fit_fim`), the text nearest the cursor."""
        limit = keep
        context = getattr(self, "context_length", 0)
        if max_new_tokens is not None and context:
            room = max(1, context - max_new_tokens)
            limit = room if limit is None else min(limit, room)
        if suffix is None or limit is None:
            ids = self.prompt_ids(prompt, suffix)
            return ids if limit is None else keep_end(ids, max(1, limit))
        prefix_ids, suffix_ids, special = self._fim_parts(prompt, suffix)
        prefix_ids, suffix_ids = fit_fim(prefix_ids, suffix_ids, limit - len(special))
        return fim_layout(prefix_ids, suffix_ids, special, self.fim_order)

    def _fim_parts(self, prefix: str, suffix: str) -> tuple[list[int], list[int], tuple]:
        """The prefix's and the suffix's ids, each encoded on its own as training's FIM
        encodes them, and the (<fim_prefix>, <fim_suffix>, <fim_middle>) ids."""
        raise NotImplementedError

    def _budget(self, prompt_tokens: int, params: SamplingParams) -> int:
        """New tokens a prompt of this length leaves room for (a context of 0: unknown):
        `max_new_tokens`, less where `max_length` (prompt + completion) or the context is
        reached first; 0 when the prompt alone reaches `max_length`."""
        wanted = params.max_new_tokens
        if params.max_length is not None:
            wanted = min(wanted, max(0, params.max_length - prompt_tokens))
            if wanted == 0:
                return 0
        context = getattr(self, "context_length", 0)
        if not context:
            return wanted
        room = context - prompt_tokens
        if room < 1:
            raise PromptTooLong(
                f"the prompt has {prompt_tokens} tokens but the model's context is "
                f"{context}: shorten the prompt to leave room for the completion"
            )
        return min(wanted, room)

    def _generate(self, ids: list[int], params: SamplingParams, seed: int) -> list[Completion]:
        raise NotImplementedError

    def _stream(self, ids: list[int], params: SamplingParams) -> Generator:
        raise NotImplementedError


class TextStream(Iterator[str]):
    """Text deltas of one sample; once exhausted, `completion` holds the whole sample.

    Wraps a generator that yields the deltas and returns the `Completion`. `close()` stops
    generation early (a client that went away), as closing the generator does.
    """

    def __init__(self, chunks: Generator[str, None, Completion]) -> None:
        self._chunks = chunks
        self.completion: Completion | None = None

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        try:
            return next(self._chunks)
        except StopIteration as done:
            self.completion = done.value
            raise

    def close(self) -> None:
        self._chunks.close()


def check_infill_args(prefixes: Sequence[str], suffixes: Sequence[str]) -> None:
    if isinstance(prefixes, str) or isinstance(suffixes, str):
        raise UserError("infill takes lists of prefixes and suffixes, not single strings")
    if len(prefixes) != len(suffixes):
        raise UserError(
            f"infill needs one suffix per prefix, got {len(prefixes)} prefixes and "
            f"{len(suffixes)} suffixes"
        )


def check_prompts(prompts: Sequence[str]) -> None:
    if isinstance(prompts, str):
        raise UserError("complete takes a list of prompts: write complete([prompt], params)")


def check_stream_params(params: SamplingParams) -> None:
    if params.n != 1:
        raise UserError(f"stream gives one sample; got n={params.n}: stream n times instead")


def keep_end(ids: list[int], limit: int) -> list[int]:
    """The last `limit` ids (all of them when they fit).

    >>> keep_end([1, 2, 3, 4], 2), keep_end([1, 2], 5)
    ([3, 4], [1, 2])
    """
    return ids[len(ids) - limit :] if len(ids) > limit else ids


def fit_fim(prefix: list[int], suffix: list[int], limit: int) -> tuple[list[int], list[int]]:
    """A prefix and a suffix trimmed to `limit` ids together: the end of the prefix and the
    start of the suffix stay (the text around the cursor). The suffix gets at most a quarter
    of the room, or more where the prefix leaves it unused; the prefix gets the rest.

    >>> fit_fim(list(range(10)), [20, 21, 22, 23], 8)
    ([4, 5, 6, 7, 8, 9], [20, 21])
    >>> fit_fim([1, 2], [20, 21, 22, 23], 5)
    ([1, 2], [20, 21, 22])
    """
    limit = max(0, limit)
    if len(prefix) + len(suffix) <= limit:
        return prefix, suffix
    suffix_room = min(len(suffix), max(limit // 4, limit - len(prefix)))
    return keep_end(prefix, limit - suffix_room), suffix[:suffix_room]


def fim_layout(
    prefix: list[int], suffix: list[int], ids: tuple[int, int, int], order: str = "psm"
) -> list[int]:
    """The prompt that asks for the middle, laid out as training's FIM (codekiln.pack.fim).

    ids are (<fim_prefix>, <fim_suffix>, <fim_middle>); P, S, M below. PSM puts the prefix
    first; SPM is StarCoder's variant, where the middle continues the prefix directly:

        PSM:  P prefix S suffix M   -> the model writes the middle, then <|endoftext|>
        SPM:  P S suffix M prefix   -> the same

    >>> fim_layout([10, 11], [20], (1, 3, 2))
    [1, 10, 11, 3, 20, 2]
    >>> fim_layout([10, 11], [20], (1, 3, 2), "spm")
    [1, 3, 20, 2, 10, 11]
    """
    p, s, m = ids
    if order == "spm":
        return [p, s, *suffix, m, *prefix]
    return [p, *prefix, s, *suffix, m]


def fim_ids(token_to_id: Any, model: str) -> tuple[int, int, int]:
    """(<fim_prefix>, <fim_suffix>, <fim_middle>) ids, in StarCoder's spelling or
    SantaCoder's (<fim-prefix>, ...); UserError naming what is missing."""
    from codekiln.tokenizer.family import FIM_SPELLINGS

    for spelling in FIM_SPELLINGS:
        ids = [token_to_id(t) for t in (spelling.prefix, spelling.suffix, spelling.middle)]
        if None not in ids:
            return ids[0], ids[1], ids[2]
    names = (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE)
    found = [token_to_id(name) for name in names]
    missing = [name for name, token_id in zip(names, found, strict=True) if token_id is None]
    if missing:
        raise UserError(
            f"model {model} cannot fill in the middle: its tokenizer has no "
            f"{', '.join(missing)}; use completion, or a model trained with FIM"
        )
    return found[0], found[1], found[2]


def check_fim_order(order: str) -> None:
    if order not in FIM_ORDERS:
        raise UserError(f"fim_order must be one of {', '.join(FIM_ORDERS)}, got {order!r}")


def model_name(folder: str | Path) -> str:
    """A model folder's display name: the first folder up its path that is not one of the
    generic names codekiln writes (`model`, `train`), so `runs/demo/train/model` is "demo".

    >>> model_name("runs/demo/train/model"), model_name("checkpoints/santacoder")
    ('demo', 'santacoder')
    """
    path = Path(folder).absolute()
    for part in (path, *path.parents):
        if part.name and part.name not in ("model", "train"):
            return part.name
    return path.name or "model"


def _nothing(prompt_tokens: int) -> Generator[str, None, Completion]:
    """The stream of a prompt that leaves no room under max_length: no text."""
    return Completion("", 0, "length", prompt_tokens=prompt_tokens)
    yield ""  # a generator that yields nothing
