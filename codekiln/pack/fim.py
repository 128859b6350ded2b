"""Fill-in-the-Middle, the way StarCoder trained it (Bavarian et al. 2022, Megatron-LM's BigCode
fork): a document fragment is cut at two uniform points over its characters and rearranged so
that a left-to-right model learns to write the middle after seeing prefix and suffix.

StarCoder's settings are the defaults here: FIM on half of the fragments (`fim_rate` 0.5),
and half of those in SPM order (`spm_rate` 0.5); FIM applies per document fragment inside a
context, after the context was cut from the token stream ("context-level" FIM).

A fragment is left as it is when FIM cannot rearrange it faithfully:

- it has fewer than 2 characters (nothing to move);
- it already holds a FIM sentinel (<fim_prefix>, <fim_middle>, <fim_suffix>, <fim_pad>, or
  the pack's own spelling of them, e.g. SantaCoder's <fim-prefix>), which a second layer of
  sentinels would make ambiguous;
- its text does not tokenize back to its own ids. Contexts are cut at token boundaries, so a
  fragment may start or end inside a multi-byte character; decoding turns that piece into
  U+FFFD, and FIM would train on characters the document never had. Skipping keeps the
  fragment's tokens exactly as packed (it is still trained on, left to right).

Special tokens inside a fragment (the <reponame>/<filename>/<gh_stars> metadata prefix) stay
single tokens: each counts as one character when cutting and is put back as its id. Text is
re-tokenized with special-token matching off, so a document that contains the *text*
"<fim_middle>" never gains a real sentinel.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from codekiln.errors import UserError
from codekiln.tokenizer.family import FIM_SPELLINGS, FimTokens
from codekiln.tokenizer.special import EOS


@dataclass(frozen=True)
class FimIds:
    """The ids FIM writes: three sentinels, the padding and the document separator."""

    prefix: int
    middle: int
    suffix: int
    pad: int
    eos: int

    @classmethod
    def from_tokenizer(cls, tokenizer, tokens: FimTokens | None = None, eos: str = EOS) -> FimIds:
        """The ids of `tokens` (StarCoder's <fim_prefix>... when None; a pack's meta.json
        names its own) and `eos` in the tokenizer. Without a pad token, padding is the eos:
        padding is kept out of the loss, so any id does."""
        tokens = tokens or FIM_SPELLINGS[0]
        names = [tokens.prefix, tokens.middle, tokens.suffix, eos]
        if tokens.pad is not None:
            names.append(tokens.pad)
        found = {name: tokenizer.token_to_id(name) for name in names}
        missing = [name for name, token_id in found.items() if token_id is None]
        if missing:
            raise UserError(
                f"the tokenizer lacks {', '.join(missing)}, which Fill-in-the-Middle needs: "
                "train one with `codekiln tokenizer train`, add StarCoder's special tokens to "
                "it, or set fim_rate = 0"
            )
        pad = found[tokens.pad] if tokens.pad is not None else found[eos]
        return cls(
            found[tokens.prefix], found[tokens.middle], found[tokens.suffix], pad, found[eos]
        )

    @property
    def sentinels(self) -> tuple[int, int, int, int]:
        return self.prefix, self.middle, self.suffix, self.pad


def fim_cut_points(length: int, rng: np.random.Generator) -> tuple[int, int]:
    """Two cut points drawn uniformly from 0..length (both ends included), in order.

    Megatron draws them the same way (`randint(0, len + 1, size=2)`, sorted), so an empty
    prefix, middle or suffix is possible, as at inference.

    >>> fim_cut_points(10, np.random.default_rng(0))
    (7, 9)
    """
    lo, hi = sorted(rng.integers(0, length + 1, size=2).tolist())
    return lo, hi


def fim_split(text: str, rng: np.random.Generator) -> tuple[str, str, str]:
    """Cut text at two uniform character positions into (prefix, middle, suffix).

    >>> fim_split("def add(a, b):", np.random.default_rng(20))
    ('def ', 'add(a, b)', ':')
    """
    lo, hi = fim_cut_points(len(text), rng)
    return text[:lo], text[lo:hi], text[hi:]


def fim_tokens(
    fragment_ids: Sequence[int] | np.ndarray,
    tokenizer,
    ids: FimIds,
    rng: np.random.Generator,
    spm_rate: float,
) -> np.ndarray:
    """One document fragment rearranged for Fill-in-the-Middle (int64 ids).

    The fragment's text is cut with `fim_cut_points`, then, with P = <fim_prefix>,
    S = <fim_suffix>, M = <fim_middle>:

        PSM (probability 1 - spm_rate):  P prefix S suffix M middle
        SPM (probability spm_rate):      P S suffix M prefix middle

    SPM is StarCoder's (Megatron's) variant: both sentinels come first, so the prefix and
    the middle form one stretch of text that the model continues across. For the text
    "def add(a, b):" cut as ("def ", "add(a, b)", ":"):

        PSM:  P "def " S ":" M "add(a, b)"
        SPM:  P S ":" M "def " "add(a, b)"

    where each quoted piece is that text tokenized on its own. Draws from rng: the two cut
    points, then one number for the order. A fragment FIM cannot rearrange faithfully (see
    the module docstring) comes back unchanged and draws nothing.
    """
    fragment = np.asarray(fragment_ids, dtype=np.int64)
    if np.isin(fragment, ids.sentinels).any():
        return fragment
    units = _units(fragment, tokenizer)
    length = sum(len(u) if isinstance(u, str) else 1 for u in units)
    if length < 2:
        return fragment
    with _plain_text(tokenizer):
        if _encode(units, tokenizer) != fragment.tolist():
            return fragment
        lo, hi = fim_cut_points(length, rng)
        prefix = _encode(_slice(units, 0, lo), tokenizer)
        middle = _encode(_slice(units, lo, hi), tokenizer)
        suffix = _encode(_slice(units, hi, length), tokenizer)
    if rng.random() < spm_rate:
        layout = [ids.prefix, ids.suffix, *suffix, ids.middle, *prefix, *middle]
    else:
        layout = [ids.prefix, *prefix, ids.suffix, *suffix, ids.middle, *middle]
    return np.array(layout, dtype=np.int64)


def apply_fim(
    sequence: np.ndarray,
    tokenizer,
    ids: FimIds,
    rng: np.random.Generator,
    fim_rate: float,
    spm_rate: float,
) -> tuple[np.ndarray, np.ndarray]:
    """FIM on each document fragment of a context; returns (tokens, loss_mask), same length.

    The fragments are the runs between eos ids (a context of L + 1 tokens usually starts
    and ends inside a document); every eos stays where it separates fragments. Each
    non-empty fragment is rearranged with probability fim_rate (one rng draw per non-empty
    fragment, in order, then `fim_tokens`' draws). Sentinels make the result longer, so it
    is cut back to the context's length, losing the end of the last fragment, as Megatron
    does; a shorter result is padded with <fim_pad>, which the mask keeps out of the loss.
    """
    length = len(sequence)
    sequence = np.asarray(sequence, dtype=np.int64)
    if fim_rate == 0:
        return sequence.copy(), np.ones(length, dtype=bool)
    parts = []
    start = 0
    for end in [*np.flatnonzero(sequence == ids.eos).tolist(), length]:
        fragment = sequence[start:end]
        if len(fragment) and rng.random() < fim_rate:
            fragment = fim_tokens(fragment, tokenizer, ids, rng, spm_rate)
        parts.append(fragment)
        parts.append(sequence[end : end + 1])  # the eos; empty after the last fragment
        start = end + 1
    return fit_length(np.concatenate(parts), length, ids.pad)


def fit_length(tokens: np.ndarray, length: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Truncate or pad tokens to length; the mask is False on padding.

    >>> fit_length(np.array([7, 8, 9]), 5, pad=4)
    (array([7, 8, 9, 4, 4]), array([ True,  True,  True, False, False]))
    >>> fit_length(np.array([7, 8, 9]), 2, pad=4)
    (array([7, 8]), array([ True,  True]))
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    mask = np.ones(length, dtype=bool)
    if len(tokens) >= length:
        return tokens[:length].copy(), mask
    mask[len(tokens) :] = False
    padding = np.full(length - len(tokens), pad, dtype=np.int64)
    return np.concatenate([tokens, padding]), mask


def _units(fragment: np.ndarray, tokenizer) -> list[str | int]:
    """The fragment as text runs and special-token ids, in order."""
    special = sorted(_special_ids(tokenizer))
    units: list[str | int] = []
    start = 0
    for position in np.flatnonzero(np.isin(fragment, special)).tolist():
        if position > start:
            units.append(tokenizer.decode(fragment[start:position].tolist()))
        units.append(int(fragment[position]))
        start = position + 1
    if start < len(fragment):
        units.append(tokenizer.decode(fragment[start:].tolist()))
    return units


def _slice(units: list[str | int], lo: int, hi: int) -> list[str | int]:
    """Units covering characters lo..hi, where a special token counts as one character."""
    out: list[str | int] = []
    position = 0
    for unit in units:
        if isinstance(unit, str):
            piece = unit[max(lo - position, 0) : max(hi - position, 0)]
            if piece:
                out.append(piece)
            position += len(unit)
        else:
            if lo <= position < hi:
                out.append(unit)
            position += 1
    return out


def _encode(units: list[str | int], tokenizer) -> list[int]:
    ids: list[int] = []
    for unit in units:
        if isinstance(unit, str):
            ids.extend(tokenizer.encode(unit, add_special_tokens=False).ids)
        else:
            ids.append(unit)
    return ids


def _special_ids(tokenizer) -> frozenset[int]:
    return frozenset(
        token_id
        for token_id, token in tokenizer.get_added_tokens_decoder().items()
        if token.special
    )


@contextmanager
def _plain_text(tokenizer):
    """Within the block, the tokenizer encodes special-token text as ordinary text.

    `encode_special_tokens` is a switch on the tokenizer itself, so it is set for the block
    and put back after it; a loader holds its own copy of the tokenizer, so no other user
    sees the switch flipped.
    """
    previous = tokenizer.encode_special_tokens
    tokenizer.encode_special_tokens = True
    try:
        yield
    finally:
        tokenizer.encode_special_tokens = previous
