"""`TransformersBackend`: any Hugging Face causal LM folder, through `model.generate`.

The reference engine: whatever transformers runs (Llama, Qwen, DeepSeek-Coder, StarCoder
itself) can be evaluated and served, and codekiln's own decoding is tested against it.
transformers is an optional dependency, imported on first use.

- Sampling: the same `SamplingParams` mapped onto `generate` (do_sample, temperature, top_p,
  top_k, num_return_sequences, max_new_tokens). `generate` draws from torch's global RNG, so
  each prompt runs under `torch.random.fork_rng` seeded with `sample_seed(seed, index)`, one
  call at a time (a lock): the global state is left as it was and results reproduce.
- Stop strings: a stopping criterion ends a sample early when the tail of its text holds one;
  the text is then cut at the earliest stop string, exactly as `CodekilnBackend` cuts it.
- Infilling: the tokenizer's <fim_prefix>/<fim_suffix>/<fim_middle>, in the PSM (or SPM)
  layout of `backend.fim_layout`; a tokenizer without them refuses with a UserError.
- Context: as `CodekilnBackend`, the completion is cut where the context ends and a prompt
  that fills it is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from codekiln.errors import UserError
from codekiln.generate.backend import (
    TokenBackend,
    check_fim_order,
    fim_ids,
    fim_layout,
    model_name,
)
from codekiln.generate.params import Completion, SamplingParams, sample_seed
from codekiln.generate.text import StopMatcher, cut_at_stop

DTYPES = ("float32", "bfloat16", "float16", "auto")


def _transformers():
    try:
        import transformers
    except ImportError:
        raise UserError(
            "the transformers engine needs the transformers package: pip install transformers"
        ) from None
    return transformers


class TransformersBackend(TokenBackend):
    """A folder `AutoModelForCausalLM` and `AutoTokenizer` load (see the module docstring)."""

    def __init__(
        self,
        folder: str | Path,
        device: str | None = None,
        dtype: str = "float32",
        fim_order: str = "psm",
        trust_remote_code: bool = False,
    ) -> None:
        transformers = _transformers()
        check_fim_order(fim_order)
        if dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"model folder {folder} does not exist")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                folder, trust_remote_code=trust_remote_code
            )
            model = transformers.AutoModelForCausalLM.from_pretrained(
                folder,
                dtype=dtype if dtype == "auto" else getattr(torch, dtype),
                trust_remote_code=trust_remote_code,
            )
        except (OSError, ValueError, KeyError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise UserError(f"transformers cannot load {folder}: {first_line}") from None
        self.model = model.to(device).eval()
        self.name = model_name(folder)
        self.fim_order = fim_order
        self._device = torch.device(device)
        self._lock = threading.Lock()
        config = self.model.config
        context = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )
        if context is None and self.tokenizer.model_max_length < 10**8:
            context = self.tokenizer.model_max_length
        self.context_length = int(context or 0)
        eos = _as_ids(self.model.generation_config.eos_token_id)
        eos |= _as_ids(self.tokenizer.eos_token_id)
        self.eos_ids = frozenset(eos)
        pad = self.tokenizer.pad_token_id
        self._pad = pad if pad is not None else min(self.eos_ids, default=0)
        self._fim = self._fim_ids_or_none()
        self.supports_fim = self._fim is not None

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    def prompt_ids(self, prompt: str, suffix: str | None = None) -> list[int]:
        """The token ids generation starts from: the prompt's, or the FIM layout's."""
        if suffix is not None:
            return fim_layout(*self._fim_parts(prompt, suffix), self.fim_order)
        ids = self._encode(prompt)
        if not ids:
            start = self.tokenizer.bos_token_id
            if start is None:
                start = min(self.eos_ids, default=None)
            if start is None:
                raise UserError(f"model {self.name} has no token to start an empty prompt from")
            ids = [start]
        return ids

    def _fim_parts(self, prefix: str, suffix: str) -> tuple[list[int], list[int], tuple]:
        ids = self._fim or fim_ids(self._token_id, self.name)  # raises the UserError
        return self._encode(prefix, False), self._encode(suffix, False), ids

    def _generate(self, ids: list[int], params: SamplingParams, seed: int) -> list[Completion]:
        rows = 1 if params.is_greedy else params.n  # greedy samples are all the same
        sequences = self._run(ids, params, seed, rows)
        completions = [self._completion(ids, row, params) for row in sequences]
        return [replace(completions[i % rows]) for i in range(params.n)]

    def _run(
        self,
        ids: list[int],
        params: SamplingParams,
        seed: int,
        rows: int,
        streamer: Any = None,
        cancel: threading.Event | None = None,
    ) -> list[list[int]]:
        """generate's new tokens, one list per row (padded rows included)."""
        transformers = _transformers()
        budget = self._budget(len(ids), params)
        input_ids = torch.tensor([ids], device=self._device)
        criteria = transformers.StoppingCriteriaList()
        if params.stop or cancel is not None:
            criteria.append(_StopOnText(self.tokenizer, params.stop, len(ids), cancel))
        # None, not the folder's generation_config defaults (top_k 50), where greedy.
        greedy = params.is_greedy
        settings: dict[str, Any] = {
            "do_sample": not greedy,
            "temperature": None if greedy else params.temperature,
            "top_p": None if greedy else params.top_p,
            "top_k": None if greedy else params.top_k,
        }
        if params.ignore_eos:
            settings["min_new_tokens"] = budget
        devices = [self._device.index or 0] if self._device.type == "cuda" else []
        with self._lock, torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=budget,
                max_length=None,  # the folder's generation_config may set one; budget rules
                num_return_sequences=rows,
                pad_token_id=self._pad,
                stopping_criteria=criteria,
                streamer=streamer,
                **settings,
            )
        return out[:, len(ids) :].tolist()

    def _completion(self, ids: list[int], row: list[int], params: SamplingParams) -> Completion:
        ends = set() if params.ignore_eos else self.eos_ids | {self._pad}
        end = next((i for i, token in enumerate(row) if token in ends), None)
        tokens = row if end is None else row[:end]
        text, stopped = cut_at_stop(self._decode(tokens), params.stop)
        reason = "stop" if stopped else "eos" if end is not None else "length"
        return Completion(text, len(tokens), reason, len(ids), tuple(tokens))

    def _stream(self, ids: list[int], params: SamplingParams):
        transformers = _transformers()
        streamer = transformers.TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True
        )
        cancel = threading.Event()
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["rows"] = self._run(
                    ids, params, sample_seed(params.seed, 0), 1, streamer, cancel
                )
            except BaseException as exc:  # re-raised in the consumer's thread below
                result["error"] = exc
                streamer.end()

        thread = threading.Thread(target=run, name="codekiln-generate", daemon=True)
        thread.start()
        matcher = StopMatcher(params.stop)
        try:
            for delta in streamer:
                out, stopped = matcher.feed(delta)
                if out:
                    yield out
                if stopped:
                    break
            else:
                if "error" not in result:
                    tail = matcher.flush()
                    if tail:
                        yield tail
        finally:
            cancel.set()
            thread.join()
        if "error" in result:
            raise result["error"]
        completion = self._completion(ids, result["rows"][0], params)
        if matcher.stopped:
            completion.text, completion.finish_reason = matcher.text, "stop"
        return completion

    def _encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _fim_ids_or_none(self) -> tuple[int, int, int] | None:
        try:
            return fim_ids(self._token_id, self.name)
        except UserError:
            return None

    def _token_id(self, token: str) -> int | None:
        """The id of a token in the vocabulary; None (not the unknown token) when absent."""
        return self.tokenizer.get_vocab().get(token)


class _StopOnText:
    """A stopping criterion: a row is done once the tail of its new text holds a stop string
    (or every row, once `cancel` is set). Only the last tokens are decoded, enough to hold
    the longest stop string even one byte per token, so a step costs O(1), not O(length)."""

    def __init__(
        self,
        tokenizer: Any,
        stop: Sequence[str],
        prompt_length: int,
        cancel: threading.Event | None,
    ) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.prompt_length = prompt_length
        self.cancel = cancel
        self.window = 4 * max((len(s) for s in self.stop), default=0) + 2

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        rows = input_ids.shape[0]
        if self.cancel is not None and self.cancel.is_set():
            return torch.ones(rows, dtype=torch.bool, device=input_ids.device)
        done = [False] * rows
        if self.stop:
            start = max(self.prompt_length, input_ids.shape[1] - self.window)
            tails = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
            done = [any(s in tail for s in self.stop) for tail in tails]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _as_ids(value: Any) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value}
