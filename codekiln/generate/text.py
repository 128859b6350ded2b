"""From token ids to text, one token at a time, and stop strings matched on that text.

A token is not a unit of text: byte-level BPE splits a multi-byte character over tokens, and
a stop string such as "\\ndef" may end in a token that also holds "ault". So generation
decodes incrementally (`IncrementalDecoder`, the scheme TGI and vLLM use) and looks for stop
strings in the text (`StopMatcher`), holding back a tail that could still become a stop
string, so a stream never emits text it later has to take back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

REPLACEMENT = "\ufffd"  # what decoding makes of an incomplete UTF-8 sequence


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """text up to the earliest stop string, and whether one was found.

    >>> cut_at_stop("    return x\\ndef f():", ["\\ndef", "\\nclass"])
    ('    return x', True)
    >>> cut_at_stop("x = 1", ["\\ndef"])
    ('x = 1', False)
    """
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def held_back(text: str, stop: Sequence[str]) -> int:
    """How many characters at the end of text could begin a stop string.

    >>> held_back("x = 1\\nde", ["\\ndef"])
    3
    >>> held_back("x = 1", ["\\ndef"])
    0
    """
    hold = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    return hold


class StopMatcher:
    """Feeds text deltas in, lets out what is safe to show, and says when a stop string ends
    the text.

    >>> matcher = StopMatcher(["\\ndef"])
    >>> matcher.feed("x = 1\\nd"), matcher.feed("ef f"), matcher.text
    (('x = 1', False), ('', True), 'x = 1')
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = tuple(stop)
        self._longest = max((len(s) for s in self.stop), default=0)
        self._text = ""
        self._emitted = 0
        self.stopped = False

    @property
    def text(self) -> str:
        """Everything let out so far (the whole text, cut at the stop, once finished)."""
        return self._text[: self._emitted]

    def feed(self, delta: str) -> tuple[str, bool]:
        """Append delta; return (text now safe to emit, whether a stop string was found)."""
        assert not self.stopped, "feed after a stop"
        # A stop string that ends in the new text starts at most len(stop) - 1 before it.
        start = max(0, len(self._text) - self._longest + 1)
        self._text += delta
        if not self.stop:
            return self._release(len(self._text)), False
        cut = min((i for i in (self._text.find(s, start) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._text = self._text[:cut]
            return self._release(cut), True
        return self._release(len(self._text) - held_back(self._text, self.stop)), False

    def flush(self) -> str:
        """The held-back tail, when the text ends without a stop string."""
        return self._release(len(self._text))

    def _release(self, end: int) -> str:
        out = self._text[self._emitted : end]
        self._emitted = max(self._emitted, end)
        return out


class IncrementalDecoder:
    """Decodes a growing list of token ids one token at a time.

    Each step decodes the ids from `prefix_offset` twice, with and without the newest ones,
    and emits the difference: decoding a window rather than the single new token keeps the
    spaces that tokenizers such as SentencePiece attach to a token's neighbours, and a window
    that ends in an incomplete character waits for the token that completes it.

    >>> decoder = IncrementalDecoder(lambda ids: bytes(ids).decode("utf-8", "replace"))
    >>> [decoder.push(b) for b in "é!".encode()], decoder.flush()
    (['', 'é', '!'], '')
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self.ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes ('' while a character is unfinished)."""
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
        text = self._decode(self.ids[self._prefix_offset :])
        if len(text) > len(prefix) and not text.endswith(REPLACEMENT):
            self._prefix_offset = self._read_offset
            self._read_offset = len(self.ids)
            return text[len(prefix) :]
        return ""

    def flush(self) -> str:
        """Whatever the last tokens decode to, complete character or not."""
        prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
        text = self._decode(self.ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self.ids)
        return text[len(prefix) :]
