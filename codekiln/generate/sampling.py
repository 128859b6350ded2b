"""Picking the next token from logits: greedy, or temperature, top-k and top-p sampling.

The order is transformers' (temperature, then top-k, then top-p), so a setting means the
same here as in `model.generate`. Randomness comes only from the `torch.Generator` passed in,
which the caller seeds per prompt: the same seed gives the same samples, whatever else runs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from codekiln.generate.params import SamplingParams


def next_tokens(logits: Tensor, params: SamplingParams, generator: torch.Generator) -> Tensor:
    """One token id per row of (B, V) float logits, as a (B,) int64 tensor.

    >>> logits = torch.tensor([[0.0, 3.0, 1.0]])
    >>> next_tokens(logits, SamplingParams(greedy=True), torch.Generator()).tolist()
    [1]
    >>> next_tokens(logits, SamplingParams(top_k=1), torch.Generator()).tolist()
    [1]
    """
    if params.is_greedy:
        return logits.argmax(dim=-1)
    return torch.multinomial(sampling_probs(logits, params), 1, generator=generator).squeeze(1)


def sampling_probs(logits: Tensor, params: SamplingParams) -> Tensor:
    """The (B, V) distribution each row of (B, V) logits is sampled from under `params`.

    Rows are computed independently, so a row's probabilities are the same alone or in a
    batch (the server batches rows that share parameters, then draws each row with its own
    generator, and must draw what one request alone would).
    """
    return torch.softmax(filter_logits(logits / params.temperature, params.top_k, params.top_p), -1)


def filter_logits(logits: Tensor, top_k: int, top_p: float) -> Tensor:
    """logits with every token outside the top k, and outside the smallest set of most likely
    tokens whose probability reaches top_p, set to -inf. The most likely token always stays.

    >>> filter_logits(torch.tensor([[2.0, 1.0, 0.0, -1.0]]), top_k=3, top_p=0.8).tolist()
    [[2.0, 1.0, -inf, -inf]]
    """
    vocab = logits.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the more likely ones already reach top_p without it.
        drop = probs.cumsum(dim=-1) - probs >= top_p
        drop[..., 0] = False
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    return logits
