"""`CodekilnBackend`: incremental decoding of a CodeGPT with a key/value cache.

For each prompt: one forward pass over the prompt (prefill) fills a cache sized once for
prompt + completion, its rows are copied to the n samples, then each step feeds the n newest
tokens (one per sample) through `DecodeStep` (codekiln.generate.step: forward's arithmetic
without its module calls) and samples the next n. Prompts run one after another here; the
server (codekiln.serve.batching, for a backend with `continuous_batching`) runs sequences of
different lengths in one batch, each row with its own positions and mask, and draws exactly
what `stream` draws. A sample that finishes (end of text, a stop string) leaves the batch,
so the rest run on.

Context: a completion stops with finish_reason "length" where prompt + completion fill the
model's context; a prompt that leaves no room for one token is refused with a UserError,
never silently cut (callers that build prompts, like the language server, budget them with
`count_tokens` and `context_length`; the server trims them with `fit_prompt`). An empty
prompt starts after <|endoftext|>, as every training document does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from codekiln.errors import UserError
from codekiln.generate.backend import (
    TokenBackend,
    check_fim_order,
    fim_ids,
    fim_layout,
    model_name,
)
from codekiln.generate.params import Completion, SamplingParams, sample_seed
from codekiln.generate.sampling import next_tokens
from codekiln.generate.step import DecodeStep
from codekiln.generate.text import IncrementalDecoder, StopMatcher
from codekiln.model.gpt import CodeGPT, KVCache
from codekiln.tokenizer.special import EOS

DTYPES = ("float32", "bfloat16", "int8")


@dataclass
class _Sample:
    """One sample's text as it grows: decoded incrementally, checked for stop strings."""

    decoder: IncrementalDecoder
    matcher: StopMatcher
    pending: list[str] = field(default_factory=list)  # deltas not yet streamed
    finish_reason: str | None = None

    def push(self, token: int, eos_ids: frozenset[int], last: bool) -> None:
        if token in eos_ids:
            self._finish("eos")
            return
        delta, stopped = self.matcher.feed(self.decoder.push(token))
        self._emit(delta)
        if stopped:
            self.finish_reason = "stop"
        elif last:
            self._finish("length")

    def completion(self, prompt_tokens: int) -> Completion:
        assert self.finish_reason is not None
        ids = self.decoder.ids
        return Completion(
            text=self.matcher.text,
            tokens=len(ids),
            finish_reason=self.finish_reason,
            prompt_tokens=prompt_tokens,
            token_ids=tuple(ids),
        )

    def _finish(self, reason: str) -> None:
        delta, stopped = self.matcher.feed(self.decoder.flush())
        self._emit(delta)
        if stopped:
            self.finish_reason = "stop"
            return
        self._emit(self.matcher.flush())
        self.finish_reason = reason

    def _emit(self, delta: str) -> None:
        if delta:
            self.pending.append(delta)


class TokenizedBackend(TokenBackend):
    """What every engine that decodes with the model folder's own tokenizer.json shares
    (codekiln's, CTranslate2, vLLM): prompts tokenized and laid out for fill-in-the-middle
    as training laid them out, text decoded incrementally with stop strings, the
    end-of-text ids. Subclasses call `_use_tokenizer` as they start."""

    def _use_tokenizer(
        self, tokenizer: Any, name: str, fim_order: str, eos_ids: Sequence[int] = ()
    ) -> None:
        check_fim_order(fim_order)
        self.tokenizer = tokenizer
        self.name = name
        self.fim_order = fim_order
        eos = set(eos_ids)
        if tokenizer.token_to_id(EOS) is not None:
            eos.add(tokenizer.token_to_id(EOS))
        self.eos_ids = frozenset(eos)
        self.supports_fim = _fim_ids_or_none(tokenizer, name) is not None

    # Streaming and n samples over the subclass's `_decode(ids, params, seed, samples)`, a
    # generator that pushes each sample's tokens and yields after every step.

    def _stream(self, ids: list[int], params: SamplingParams):
        sample = self._new_sample(params)
        for _ in self._decode(ids, params, sample_seed(params.seed, 0), [sample]):
            if sample.pending:
                yield "".join(sample.pending)
                sample.pending.clear()
        return sample.completion(len(ids))

    def _generate(self, ids: list[int], params: SamplingParams, seed: int) -> list[Completion]:
        rows = 1 if params.is_greedy else params.n  # greedy samples are all the same
        samples = [self._new_sample(params) for _ in range(rows)]
        for _ in self._decode(ids, params, seed, samples):
            for sample in samples:
                sample.pending.clear()
        completions = [sample.completion(len(ids)) for sample in samples]
        return [replace(completions[i % rows]) for i in range(params.n)]

    def count_tokens(self, text: str) -> int:
        """Tokens the text encodes to (to budget prompts against context_length)."""
        return len(self._encode(text))

    def prompt_ids(self, prompt: str, suffix: str | None = None) -> list[int]:
        """The token ids generation starts from: the prompt's, or the FIM layout's."""
        if suffix is None:
            return self._encode(prompt) or self._start()
        return self._fim_prompt(prompt, suffix)

    def _new_sample(self, params: SamplingParams) -> _Sample:
        return _Sample(IncrementalDecoder(self._decode_ids), StopMatcher(params.stop))

    def _decode_ids(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def _start(self) -> list[int]:
        start = self.tokenizer.token_to_id(EOS)
        if start is None and not self.eos_ids:
            raise UserError(
                f"model {self.name} has no end-of-text token to start an empty prompt from: "
                "give a prompt"
            )
        return [start if start is not None else min(self.eos_ids)]

    def _fim_prompt(self, prefix: str, suffix: str) -> list[int]:
        return fim_layout(*self._fim_parts(prefix, suffix), self.fim_order)

    def _fim_parts(self, prefix: str, suffix: str) -> tuple[list[int], list[int], tuple]:
        """Each piece is encoded on its own, as training's FIM encodes it."""
        ids = fim_ids(self.tokenizer.token_to_id, self.name)
        return self._encode(prefix, False), self._encode(suffix, False), ids


class CodekilnBackend(TokenizedBackend):
    """A CodeGPT and its tokenizer behind the `Backend` interface (see the module docstring).

    `fim_order` is the layout infill prompts use ("psm", or StarCoder's "spm"; training
    teaches both). Thread-safe: every call keeps its own cache and generator.
    """

    # `codekiln serve` may run this backend's sequences in one decode batch
    # (codekiln.serve.batching reads its model and tokenizer).
    continuous_batching = True

    def __init__(
        self,
        model: CodeGPT,
        tokenizer: Any,
        eos_ids: Sequence[int] = (),
        name: str = "codekiln",
        fim_order: str = "psm",
    ) -> None:
        self._use_tokenizer(tokenizer, name, fim_order, eos_ids)
        self.model = model.eval()
        self.context_length = model.config.n_positions
        self._device = next(model.parameters()).device
        self.step = DecodeStep(self.model)  # one token per row: the decode loops' forward

    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        device: str | None = None,
        dtype: str = "float32",
        fim_order: str = "psm",
    ) -> CodekilnBackend:
        """A gpt_bigcode or starcoder2 folder with tokenizer.json beside the weights, or a
        LoRA adapter folder (peft's format) whose base folder is on this machine: the
        adapter is merged into the base as it loads.

        device: "cpu", "cuda", ... (default: CUDA when there is one; the CPU for int8);
        dtype: "float32", "bfloat16" (on a GPU, or a CPU with AMX) or "int8" (CPU decoding
        with int8 weights, codekiln.generate.int8).
        """
        from codekiln.model.hf import import_hf
        from codekiln.model.lora import import_adapter, is_adapter

        folder = Path(folder)
        if dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if dtype == "int8":
            device = _int8_device(device)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        base = folder
        if is_adapter(folder):
            model, base = import_adapter(folder)
        else:
            model = import_hf(folder)
        if dtype == "int8":
            from codekiln.generate.int8 import quantize_int8

            model = quantize_int8(model.to(device="cpu", dtype=torch.float32))
        else:
            model = model.to(device=device, dtype=getattr(torch, dtype))
        tokenizer_folder = folder if (folder / "tokenizer.json").is_file() else base
        return cls(
            model,
            _read_tokenizer(tokenizer_folder),
            eos_ids=_config_eos_ids(base),
            name=model_name(folder),
            fim_order=fim_order,
        )

    def _decode(
        self, prompt: list[int], params: SamplingParams, seed: int, samples: list[_Sample]
    ) -> Iterator[None]:
        """Generate until every sample finishes, yielding after each step (for streaming).

        Inference mode is entered per step, not around the loop: the loop is a generator,
        and a mode held across a yield would leak into the caller's code.
        """
        budget = self._budget(len(prompt), params)
        generator = torch.Generator(self._device).manual_seed(seed)
        eos_ids = frozenset() if params.ignore_eos else self.eos_ids
        cache = KVCache(self.model.config.n_layer, capacity=len(prompt) + budget)
        with torch.inference_mode():
            logits = self._prefill(prompt, cache)  # (1, V)
            if len(samples) > 1:
                cache.expand(len(samples))
                logits = logits.expand(len(samples), -1)
        active = list(range(len(samples)))  # the sample each batch row belongs to
        for step in range(budget):
            with torch.inference_mode():
                tokens = next_tokens(logits, params, generator).tolist()
            running = []  # batch rows whose sample goes on
            for row, (index, token) in enumerate(zip(active, tokens, strict=True)):
                samples[index].push(token, eos_ids, last=step == budget - 1)
                if samples[index].finish_reason is None:
                    running.append(row)
            yield
            if not running:
                return
            with torch.inference_mode():
                if len(running) < len(active):
                    active = [active[row] for row in running]
                    tokens = [tokens[row] for row in running]
                    cache.keep(torch.tensor(running, device=self._device))
                input_ids = torch.tensor(tokens, device=self._device).unsqueeze(1)  # (B, 1)
                logits = self.step(input_ids, cache)  # (B, V)

    def _prefill(self, prompt: list[int], cache: KVCache) -> Tensor:
        """The last position's logits, (1, V), after filling the cache with the prompt."""
        input_ids = torch.tensor([prompt], device=self._device)
        logits, _ = self.model(input_ids, kv_cache=cache, logits_to_keep=1)
        return logits[:, -1]


def _int8_device(device: str | None) -> str:
    """int8 decoding runs on the CPU: the device it takes, or a UserError for another."""
    if device is not None and torch.device(device).type != "cpu":
        raise UserError(
            f"int8 is for decoding on the CPU, not {device}: on a GPU use bfloat16 "
            "(or --engine vllm)"
        )
    from codekiln.generate.int8 import check_int8_support

    check_int8_support()
    return "cpu"


def _fim_ids_or_none(tokenizer: Any, name: str) -> tuple[int, int, int] | None:
    try:
        return fim_ids(tokenizer.token_to_id, name)
    except UserError:
        return None


def _read_tokenizer(folder: Path):
    from codekiln.tokenizer.family import load_any_tokenizer

    if not (folder / "tokenizer.json").exists() and not (folder / "vocab.json").exists():
        raise UserError(
            f"no tokenizer.json in {folder}: export the model with its tokenizer "
            "(export_hf(..., tokenizer_dir=...)), or copy the tokenizer stage's files there"
        )
    return load_any_tokenizer(folder)


def _config_eos_ids(folder: Path) -> list[int]:
    """eos_token_id of config.json and generation_config.json (an int or a list each)."""
    ids: list[int] = []
    for name in ("config.json", "generation_config.json"):
        try:
            value = json.loads((folder / name).read_text(encoding="utf-8")).get("eos_token_id")
        except (OSError, ValueError, AttributeError):
            continue
        for token_id in value if isinstance(value, list) else [value]:
            if isinstance(token_id, int) and not isinstance(token_id, bool):
                ids.append(token_id)
    return ids
