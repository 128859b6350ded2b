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
    probs = sampling_probs(logits, params)
    return inverse_cdf(probs, uniforms(probs.shape[0], generator, probs.device))


def uniforms(rows: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """(rows, 1) draws from [0, 1): one per row to sample, in row order."""
    return torch.rand(rows, 1, generator=generator, device=device)


def inverse_cdf(probs: Tensor, draws: Tensor) -> Tensor:
    """The token each row's uniform draw picks from its (V,) distribution, as (B,) int64.

    One uniform per row and a search in the cumulative sum: torch.multinomial draws V
    exponentials per row, ~0.2 ms a row on a CPU, more than a small model's decode step.
    A token of probability 0 is never picked.

    >>> inverse_cdf(torch.tensor([[0.5, 0.0, 0.5]]), torch.tensor([[0.6]])).tolist()
    [2]
    """
    cdf = probs.cumsum(dim=-1)
    picked = torch.searchsorted(cdf, draws * cdf[:, -1:], right=True)
    return picked.squeeze(1).clamp_(max=probs.shape[-1] - 1)


def sampling_probs(logits: Tensor, params: SamplingParams) -> Tensor:
    """The (B, V) distribution each row of (B, V) logits is sampled from under `params`.

    Rows are computed independently, so a row's probabilities are the same alone or in a
    batch (the server batches rows that share parameters, then draws each row with its own
    generator, and must draw what one request alone would).
    """
    return torch.softmax(filter_logits(logits / params.temperature, params.top_k, params.top_p), -1)


TOP_P_CANDIDATES = 64  # tokens top-p looks at first


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
        # Only the most likely tokens can survive top-p: look at the top `k` of each row,
        # and widen k until they hold top_p of the mass (every token beyond them is then
        # dropped). Sorting the whole vocabulary instead cost ~0.6 ms a row per token.
        probs = torch.softmax(logits, dim=-1)
        k = min(vocab, TOP_P_CANDIDATES)
        while True:
            top, order = torch.topk(probs, k, dim=-1)  # (B, k), most likely first
            if k == vocab or bool((top.sum(dim=-1) >= top_p).all()):
                break
            k = min(vocab, 8 * k)
        # Keep a token while the more likely ones have not reached top_p without it.
        keep = top.cumsum(dim=-1) - top < top_p
        keep[..., 0] = True
        kept = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, order, keep)
        logits = logits.masked_fill(~kept, float("-inf"))
    return logits
