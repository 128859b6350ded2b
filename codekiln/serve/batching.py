"""Continuous batching for codekiln's own decoding: one running decode batch that
sequences join and leave at token boundaries.

One scheduler thread owns the model. Each turn of its loop it
1. drops the sequences of requests whose client went away (or that failed);
2. admits waiting prompts, first come first served, while their rows fit in `max_batch`
   (a prompt takes one row per sample; greedy samples are all the same, so they share one);
3. prefills newcomers, at most `prefill_chunk` prompt tokens in all, one prompt at a time
   into a cache of its own; a prompt whose prefill is done joins the batch, its cache
   copied to each of its samples' rows (n samples, one prefill), and draws its first token;
4. runs one decode step for every row at once: one forward of (B, 1) new tokens with each
   row's own position and a (B, 1, 1, S) mask of the keys that row sees (its own tokens,
   within the sliding window), then samples each row's next token with its own parameters
   and generator.

A long prompt therefore costs the running batch one chunk per step, not a stall, and a
finished or cancelled sequence's row is reused at the next step. Each sequence draws exactly
what `backend.stream(prompt, choice_params(...))` draws: its own torch.Generator, seeded as
the stream path seeds it, over the same logits. Anything that goes wrong fails the requests
it touched (an ApiError for their clients) and the scheduler goes on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import torch
from torch import Tensor

from codekiln.errors import UserError
from codekiln.generate.native import CodekilnBackend, _Sample
from codekiln.generate.params import SamplingParams, sample_seed
from codekiln.generate.sampling import inverse_cdf, sampling_probs, uniforms
from codekiln.model.gpt import KVCache
from codekiln.serve.api import ApiError
from codekiln.serve.config import ServeConfig
from codekiln.serve.generation import (
    Generation,
    Overloaded,
    Sample,
    choice_params,
    fitted_prompt_ids,
)
from codekiln.serve.metrics import Metrics

RATE_WINDOW = 5.0  # seconds of decoding tokens_per_second averages over


class RaggedKVCache:
    """The keys and values of a running batch whose rows hold sequences of different lengths.

    Each layer keeps (rows, n_kv_heads, capacity, head_dim) keys and values; row r holds
    positions 0..lengths[r]-1 of its sequence. The first `count` rows are in use and stay
    packed: `remove(row)` moves the last row into the hole. A decode step (`begin_step`, the
    model's forward, then `advance`) writes each row's new token at that row's own length.
    The capacity grows by doubling, up to `max_length` (the model's context). Storage is
    allocated at the first `insert`, in the dtype and on the device of the model's keys.
    """

    def __init__(self, n_layer: int, rows: int, max_length: int):
        self.n_layer = n_layer
        self.rows = rows
        self.max_length = max_length
        self.capacity = 0
        self.count = 0
        self.lengths: list[int] = []  # per row in use
        self._keys: list[Tensor] = []
        self._values: list[Tensor] = []
        self._write_rows: Tensor | None = None  # (B,) the step's rows and positions
        self._write_at: Tensor | None = None
        self._span = 0  # keys the step attends: the longest row's length + 1

    @property
    def length(self) -> int:
        """The longest row's length (CodeGPT reads it; the step's mask is per row)."""
        return max(self.lengths, default=0)

    def insert(self, prefilled: KVCache, copies: int) -> None:
        """Add `copies` rows holding a one-row cache's tokens (a prompt and its samples)."""
        assert self.count + copies <= self.rows, "more rows than the batch holds"
        length = prefilled.length
        self._reserve(length + 1, prefilled.get(0)[0])
        start, end = self.count, self.count + copies
        for layer in range(self.n_layer):
            keys, values = prefilled.get(layer)  # (1, KV, L, hd)
            self._keys[layer][start:end, :, :length] = keys
            self._values[layer][start:end, :, :length] = values
        self.lengths.extend([length] * copies)
        self.count = end

    def remove(self, row: int) -> None:
        """Free a row; the last row moves into it (remove rows in descending order)."""
        last = self.count - 1
        if row != last:
            length = self.lengths[last]
            for layer in range(self.n_layer):
                self._keys[layer][row, :, :length] = self._keys[layer][last, :, :length]
                self._values[layer][row, :, :length] = self._values[layer][last, :, :length]
            self.lengths[row] = length
        self.lengths.pop()
        self.count = last

    def clear(self) -> None:
        self.lengths.clear()
        self.count = 0

    def begin_step(self, window: int | None) -> tuple[Tensor, Tensor]:
        """position_ids (B, 1) and attn_mask (B, 1, 1, S) for one new token per row."""
        self._reserve(self.length + 1)
        device = self._keys[0].device
        lengths = torch.tensor(self.lengths, device=device)  # (B,)
        self._write_rows = torch.arange(self.count, device=device)
        self._write_at = lengths
        self._span = self.length + 1
        keys = torch.arange(self._span, device=device)[None, :]  # (1, S)
        mask = keys <= lengths[:, None]  # (B, S): the row's tokens and the new one
        if window is not None and self._span > window:
            mask &= keys > lengths[:, None] - window
        return lengths[:, None], mask[:, None, None, :]

    def update(self, layer: int, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Write (B, KV, 1, hd) new keys and values at each row's length; return the
        layer's (B, KV, S, hd) keys and values (the mask hides what a row does not hold)."""
        assert keys.shape[2] == 1, "a decode step adds one token per row"
        rows, at = self._write_rows, self._write_at
        self._keys[layer][rows, :, at] = keys[:, :, 0]
        self._values[layer][rows, :, at] = values[:, :, 0]
        B, S = self.count, self._span
        return self._keys[layer][:B, :, :S], self._values[layer][:B, :, :S]

    def advance(self) -> None:
        """Every layer has the step's token: each row is one longer."""
        self.lengths = [length + 1 for length in self.lengths]

    def _reserve(self, length: int, like: Tensor | None = None) -> None:
        if length <= self.capacity:
            return
        if length > self.max_length:
            raise ValueError(f"a sequence of {length} tokens exceeds the context")
        capacity = max(self.capacity, 64)
        while capacity < length:
            capacity *= 2
        capacity = min(capacity, self.max_length)
        if like is None:
            like = self._keys[0]
        shape = (self.rows, like.shape[1], capacity, like.shape[3])
        keys = [like.new_zeros(shape) for _ in range(self.n_layer)]
        values = [like.new_zeros(shape) for _ in range(self.n_layer)]
        for old, new in ((self._keys, keys), (self._values, values)):
            for layer, tensor in enumerate(old):
                new[layer][:, :, : self.capacity] = tensor
        self._keys, self._values, self.capacity = keys, values, capacity


@dataclass
class _Request:
    """A submitted generation and the scheduler's bookkeeping for it."""

    generation: Generation
    started: bool = False  # a prompt of it has been admitted (it no longer waits)
    first_token: bool = False  # time to first token observed
    cancelled: bool = False  # counted as cancelled


@dataclass
class _Row:
    """One sequence of the running batch; its text goes to `choices` (greedy samples of
    one prompt share a row)."""

    request: _Request
    choices: tuple[int, ...]
    params: SamplingParams
    sample: _Sample
    generator: torch.Generator | None
    eos_ids: frozenset[int]
    budget: int
    prompt_tokens: int = 0
    steps: int = 0
    token: int = -1  # the last token drawn: the next step's input


@dataclass
class _Prompt:
    """One prompt of a request waiting for, or in, its prefill, with the rows it will take."""

    request: _Request
    index: int
    draws: tuple[int, ...]
    rows: int  # batch rows it takes: its draws', or one for greedy
    ids: list[int] = field(default_factory=list)
    done: int = 0  # prompt tokens prefilled
    cache: KVCache | None = None
    members: list[_Row] = field(default_factory=list)


class BatchRunner:
    """The scheduler of one running decode batch (see the module docstring): `submit` a
    Generation (Overloaded when the queue is full), `close` to stop."""

    def __init__(self, backend: CodekilnBackend, config: ServeConfig, metrics: Metrics) -> None:
        self.backend = backend
        self.model = backend.model
        self.config = config
        self.metrics = metrics
        self.device = backend._device
        model_config = self.model.config
        self.window = model_config.sliding_window
        self.cache = RaggedKVCache(model_config.n_layer, config.max_batch, model_config.n_positions)
        self.rows: list[_Row] = []  # aligned with the cache's rows
        self.prefilling: deque[_Prompt] = deque()
        self._queue: deque[_Prompt] = deque()
        self._waiting = 0  # requests none of whose prompts has been admitted
        self._taken = 0  # rows in the batch or reserved by prefills (for submit's thread)
        self._cond = threading.Condition()
        self._closed = False
        self._abort = False
        self._rate: deque[tuple[float, int]] = deque()  # (time, tokens) of recent steps
        self._busy_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="codekiln-batch", daemon=True)
        self._thread.start()

    def submit(self, generation: Generation) -> None:
        request = generation.request
        with self._cond:
            free = self.config.max_batch - self._taken
            if self._closed or self._waiting >= self.config.max_queue + max(0, free):
                self.metrics.add("generations_rejected")
                raise Overloaded
            state = _Request(generation)
            greedy = request.params.is_greedy
            for index in range(len(request.prompts)):
                if greedy:
                    self._queue.append(_Prompt(state, index, tuple(range(request.n)), 1))
                    continue
                step = self.config.max_batch  # more samples than rows: prefilled per batchful
                for first in range(0, request.n, step):
                    draws = tuple(range(first, min(request.n, first + step)))
                    self._queue.append(_Prompt(state, index, draws, len(draws)))
            self._waiting += 1
            self.metrics.set("queue_length", self._waiting)
            self._cond.notify()

    def close(self, timeout: float) -> bool:
        """Admit nothing new, finish what is queued and running (up to `timeout` seconds),
        then stop; past the timeout the rest fail with 503. True if all finished in time."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        with self._cond:
            self._abort = True
            self._cond.notify()
        self._thread.join(5.0)
        return False

    def _reserved(self) -> int:
        """Rows in the batch or reserved by prefills; the scheduler's thread only."""
        return len(self.rows) + sum(prompt.rows for prompt in self.prefilling)

    # The scheduler thread.

    def _run(self) -> None:
        with torch.inference_mode():
            while self._wait_for_work():
                try:
                    self._turn()
                except Exception as exc:  # a bug here must not stop serving
                    self._fail_all(ApiError(500, f"generation failed: {exc}", kind="server_error"))
        self._fail_all(ApiError(503, "the server is shutting down", kind="server_error"))

    def _wait_for_work(self) -> bool:
        with self._cond:
            while not (self._queue or self.rows or self.prefilling):
                if self._closed or self._abort:
                    return False
                self._idle()
                self._cond.wait()
            return not self._abort

    def _turn(self) -> None:
        self._drop_finished()
        self._admit()
        self._prefill()
        if self.rows:
            self._decode()
        self._taken = self._reserved()
        self.metrics.set("batch_occupancy", len(self.rows))

    def _drop_finished(self) -> None:
        """Rows, prefills and queued prompts of requests cancelled or already ended."""
        for row in range(len(self.rows) - 1, -1, -1):
            if self._gone(self.rows[row].request):
                self._remove(row)
        self.prefilling = deque(p for p in self.prefilling if not self._gone(p.request))
        with self._cond:
            if any(prompt.request.generation.cancelled for prompt in self._queue):
                kept = deque()
                for prompt in self._queue:
                    if self._gone(prompt.request):
                        if not prompt.request.started:
                            prompt.request.started = True
                            self._waiting -= 1
                    else:
                        kept.append(prompt)
                self._queue = kept
                self.metrics.set("queue_length", self._waiting)

    def _gone(self, request: _Request) -> bool:
        generation = request.generation
        if generation.cancelled and not generation.finished:
            generation.fail(ApiError(499, "the client went away"))
            if not request.cancelled:
                request.cancelled = True
                self.metrics.add("generations_cancelled")
        return generation.finished

    def _admit(self) -> None:
        """Queued prompts, first come first served, while their rows fit."""
        while True:
            with self._cond:
                if not self._queue:
                    return
                prompt = self._queue[0]
                if self._reserved() + prompt.rows > self.config.max_batch:
                    return
                self._queue.popleft()
                self._taken = self._reserved() + prompt.rows
                if not prompt.request.started:
                    prompt.request.started = True
                    self._waiting -= 1
                    self.metrics.set("queue_length", self._waiting)
            if prompt.request.generation.finished:
                continue
            try:
                self._start(prompt)
            except Exception as exc:  # a prompt too long, no FIM tokens, a tokenizer error
                self._fail(prompt.request, exc)

    def _start(self, prompt: _Prompt) -> None:
        """Tokenize (and trim) the prompt and make its rows; a prompt that leaves no room
        under max_length finishes at once, with no text."""
        request = prompt.request.generation.request
        text = request.prompts[prompt.index]
        prompt.ids = fitted_prompt_ids(self.backend, self.config, request, text)
        budget = self.backend._budget(len(prompt.ids), request.params)
        eos_ids = frozenset() if request.params.ignore_eos else self.backend.eos_ids
        first = prompt.index * request.n
        greedy = request.params.is_greedy
        for draw in prompt.draws[:1] if greedy else prompt.draws:
            params = choice_params(request.params, prompt.index, draw)
            choices = tuple(first + d for d in prompt.draws) if greedy else (first + draw,)
            generator = None
            if not greedy:
                seed = sample_seed(params.seed, 0)  # as the stream path seeds one sample
                generator = torch.Generator(self.device).manual_seed(seed)
            row = _Row(
                prompt.request,
                choices,
                params,
                self.backend._new_sample(params),
                generator,
                eos_ids,
                budget,
                prompt_tokens=len(prompt.ids),
            )
            prompt.members.append(row)
        if budget == 0:
            for row in prompt.members:
                self._emit_done(row, "length")
            return
        prompt.cache = KVCache(self.model.config.n_layer, capacity=len(prompt.ids))
        self.prefilling.append(prompt)

    def _prefill(self) -> None:
        """At most `prefill_chunk` prompt tokens, in admission order."""
        room = self.config.prefill_chunk
        while self.prefilling and room > 0:
            prompt = self.prefilling[0]
            take = min(room, len(prompt.ids) - prompt.done)
            try:
                logits = self._prefill_chunk(prompt, take)
            except Exception as exc:
                self.prefilling.popleft()
                self._fail(prompt.request, exc)
                continue
            room -= take
            if prompt.done < len(prompt.ids):
                continue
            self.prefilling.popleft()
            self.metrics.add("prompt_tokens", len(prompt.ids))
            self._join(prompt, logits)

    def _prefill_chunk(self, prompt: _Prompt, take: int) -> Tensor:
        """Feed the prompt's next `take` tokens; the last position's logits, (1, V)."""
        chunk = prompt.ids[prompt.done : prompt.done + take]
        input_ids = torch.tensor([chunk], device=self.device)
        logits, _ = self.model(input_ids, kv_cache=prompt.cache, logits_to_keep=1)
        prompt.done += take
        return logits[:, -1]

    def _join(self, prompt: _Prompt, logits: Tensor) -> None:
        """The prefilled prompt's rows join the batch and draw their first tokens."""
        try:
            self.cache.insert(prompt.cache, len(prompt.members))
        except Exception as exc:  # no memory for its rows: this request fails, not the batch
            self._fail(prompt.request, exc)
            return
        self.rows.extend(prompt.members)
        start = len(self.rows) - len(prompt.members)
        rows = range(start, len(self.rows))
        tokens = self._draw(logits.expand(len(prompt.members), -1), prompt.members)
        self._record(len(tokens))
        self._advance(list(zip(rows, tokens, strict=True)))

    def _decode(self) -> None:
        """One token for every row: one forward of the whole batch."""
        input_ids = torch.tensor([row.token for row in self.rows], device=self.device)
        positions, mask = self.cache.begin_step(self.window)
        try:
            # The backend's lean decode forward (codekiln.generate.step), per-row positions
            logits = self.backend.step(input_ids[:, None], self.cache, positions, mask)  # (B, V)
        except Exception as exc:
            self._fail_all(ApiError(500, f"generation failed: {exc}", kind="server_error"))
            return
        self.cache.advance()
        tokens = self._draw(logits, self.rows)
        self._record(len(tokens))
        self._advance(list(enumerate(tokens)))

    def _draw(self, logits: Tensor, rows: list[_Row]) -> list[int | None]:
        """Each row's next token from its (V,) logits, with its own parameters: greedy rows
        in one argmax, sampled ones each with its own generator (as the stream path).
        None for a row whose sampling failed (its request fails, the others go on)."""
        tokens: list[int | None] = logits.argmax(dim=-1).tolist()
        groups: dict[tuple[float, int, float], list[int]] = {}
        for i, row in enumerate(rows):
            if row.generator is not None:
                key = (row.params.temperature, row.params.top_k, row.params.top_p)
                groups.setdefault(key, []).append(i)
        # Rows that share their parameters get their distributions in one batched call (a
        # per-row filter cost a third of a 16-row step on the tiny preset); each row then
        # draws with its own generator, as the stream path does.
        for members in groups.values():
            params = rows[members[0]].params
            try:
                index = torch.tensor(members, device=logits.device)
                probs = sampling_probs(logits.index_select(0, index), params)
                draws = [uniforms(1, rows[i].generator, logits.device) for i in members]
                drawn = inverse_cdf(probs, torch.cat(draws)).tolist()
            except Exception as exc:
                for i in members:
                    self._fail(rows[i].request, exc)
                    tokens[i] = None
                continue
            for i, token in zip(members, drawn, strict=True):
                tokens[i] = token
        return tokens

    def _advance(self, drawn: list[tuple[int, int | None]]) -> None:
        """Push each (row, token): stream its text, finish it at a stop, EOS or its budget;
        finished rows, and rows whose request failed, leave the batch."""
        finished = []
        now = time.monotonic()
        for index, token in drawn:
            row = self.rows[index]
            if token is None or row.request.generation.finished:
                finished.append(index)
                continue
            try:
                self._push(row, token, now)
            except Exception as exc:
                self._fail(row.request, exc)
            if row.sample.finish_reason is not None or row.request.generation.finished:
                finished.append(index)
        for index in sorted(finished, reverse=True):
            self._remove(index)

    def _push(self, row: _Row, token: int, now: float) -> None:
        row.steps += 1
        row.token = token
        row.sample.push(token, row.eos_ids, last=row.steps == row.budget)
        generation = row.request.generation
        if not row.request.first_token:
            row.request.first_token = True
            self.metrics.observe("time_to_first_token_seconds", now - generation.submitted)
        if row.sample.pending:
            text = "".join(row.sample.pending)
            row.sample.pending.clear()
            for choice in row.choices:
                generation.emit_delta(choice, text)
        if row.sample.finish_reason is not None:
            self._emit_done(row, row.sample.finish_reason)

    def _emit_done(self, row: _Row, reason: str) -> None:
        completion = row.sample.completion(row.prompt_tokens) if row.steps else None
        text = completion.text if completion else ""
        tokens = completion.tokens if completion else 0
        self.metrics.add("generated_tokens", tokens)
        sample = Sample(text, reason, tokens, row.prompt_tokens)
        for choice in row.choices:
            row.request.generation.emit_done(choice, sample)

    def _remove(self, index: int) -> None:
        """Free a row: the last row moves into it, in the cache and here."""
        self.cache.remove(index)
        last = self.rows.pop()
        if index < len(self.rows):
            self.rows[index] = last

    def _record(self, tokens: int) -> None:
        """tokens_per_second: the tokens of the last RATE_WINDOW seconds over their time."""
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        self._rate.append((now, tokens))
        while self._rate and self._rate[0][0] < now - RATE_WINDOW:
            self._rate.popleft()
        elapsed = now - max(self._busy_since, now - RATE_WINDOW)
        if elapsed > 0:
            self.metrics.set("tokens_per_second", sum(n for _, n in self._rate) / elapsed)

    def _idle(self) -> None:
        self._taken = 0
        self._busy_since = None
        self._rate.clear()
        self.metrics.set("tokens_per_second", 0)
        self.metrics.set("batch_occupancy", 0)

    def _fail(self, request: _Request, exc: Exception) -> None:
        """End one request: an ApiError as it is, a UserError (its input) as 400, else 500."""
        if isinstance(exc, ApiError):
            error = exc
        elif isinstance(exc, UserError):
            error = ApiError(400, str(exc), "prompt")
        else:
            error = ApiError(500, f"generation failed: {exc}", kind="server_error")
        request.generation.fail(error)

    def _fail_all(self, error: ApiError) -> None:
        """Fail every request in the batch, in prefill and (when stopping) queued."""
        for row in self.rows:
            row.request.generation.fail(error)
        for prompt in self.prefilling:
            prompt.request.generation.fail(error)
        self.rows.clear()
        self.prefilling.clear()
        self.cache.clear()
        if error.status == 503:
            with self._cond:
                for prompt in self._queue:
                    prompt.request.generation.fail(error)
                self._queue.clear()
                self._waiting = 0
                self.metrics.set("queue_length", 0)
