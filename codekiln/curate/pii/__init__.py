"""PII redaction for source code: emails, IP addresses, keys and passwords (StarCoder's PII step).

`find_pii(text)` returns sorted, non-overlapping spans that cover only the sensitive value, and
`redact_pii(text)` swaps each for a stand-in: `<EMAIL>`, `<KEY>`, `<PASSWORD>`, or for an IP
address a fixed documentation address of the same version (IPv4 from 192.0.2.0/24,
198.51.100.0/24 and 203.0.113.0/24, IPv6 from 2001:db8::/32), picked by a CRC-32 of the original
so the output never depends on PYTHONHASHSEED and the code around it stays valid. Every stand-in
is itself ignored by the detectors, so redacting twice changes nothing.

What counts, and what was decided, is written in the module of each kind: `emails` (EMAIL),
`ips` (IP_ADDRESS), `keys` (KEY) and `passwords` (PASSWORD); `spans` holds what they share.
When spans overlap, KEY beats PASSWORD beats EMAIL beats IP_ADDRESS, then the longer span wins.

Speed: every literal that gates a detector is looked for in one Aho-Corasick pass
(`_present_literals`), the other rules run only when a cheap condition holds (`"@" in text`, a
keyword), and regexes start with a literal where possible because sre scans for a literal in C.
ASCII text is lowercased once, for the KEY and PASSWORD name scans. detect-secrets (which pulls
in `requests`) and pyahocorasick are imported on first use and kept in a module-level cache, so
importing this package is cheap and each worker process builds its own copy.
"""

from __future__ import annotations

import bisect
import zlib
from collections import Counter
from functools import cache

from codekiln.curate.pii.emails import find_emails
from codekiln.curate.pii.ips import find_ips
from codekiln.curate.pii.keys import LITERALS as KEY_LITERALS
from codekiln.curate.pii.keys import detectors, find_keys
from codekiln.curate.pii.passwords import LITERALS as PASSWORD_LITERALS
from codekiln.curate.pii.passwords import find_passwords
from codekiln.curate.pii.spans import PII_KINDS, PiiSpan

__all__ = ["PII_KINDS", "PiiSpan", "find_pii", "redact_pii", "replacement"]

_PRIORITY = {"KEY": 0, "PASSWORD": 1, "EMAIL": 2, "IP_ADDRESS": 3}
_TOKENS = {"EMAIL": "<EMAIL>", "KEY": "<KEY>", "PASSWORD": "<PASSWORD>"}


def find_pii(text: str) -> list[PiiSpan]:
    """All PII in `text`, sorted by position and non-overlapping.

    >>> find_pii('owner = "Ada <ada.l@analytical.io>"  # host 93.184.216.34')
    ... # doctest: +NORMALIZE_WHITESPACE
    [PiiSpan(start=14, end=33, kind='EMAIL', value='ada.l@analytical.io'),
     PiiSpan(start=44, end=57, kind='IP_ADDRESS', value='93.184.216.34')]
    """
    found: list[PiiSpan] = []
    if "@" in text:
        found += find_emails(text)
    if "." in text or ":" in text:
        found += find_ips(text)
    present = _present_literals(text)
    # ASCII text only: lower() keeps its length, so positions found in it hold in `text`.
    lowered = text.lower() if text.isascii() else None
    found += find_keys(text, present, lowered)
    found += find_passwords(text, present, lowered)
    return _without_overlaps(found)


def redact_pii(text: str) -> tuple[str, dict[str, int]]:
    """Replace the PII in `text`; return the new text and how many of each kind were replaced.

    >>> redact_pii("password = 'hunter2'; email = 'bob@corp.io'; ip = '93.184.216.34'")
    ("password = '<PASSWORD>'; email = '<EMAIL>'; ip = '203.0.113.9'", \
{'EMAIL': 1, 'IP_ADDRESS': 1, 'PASSWORD': 1})
    """
    spans = find_pii(text)
    if not spans:
        return text, {}
    parts = []
    pos = 0
    for span in spans:
        parts.append(text[pos : span.start])
        parts.append(replacement(span))
        pos = span.end
    parts.append(text[pos:])
    counts = Counter(span.kind for span in spans)
    return "".join(parts), {kind: counts[kind] for kind in PII_KINDS if counts[kind]}


# Documentation addresses: never routed, so a stand-in can't point at anybody.
_IPV4_STANDINS = (
    "192.0.2.14",
    "192.0.2.87",
    "198.51.100.23",
    "198.51.100.164",
    "203.0.113.9",
    "203.0.113.200",
)
_IPV6_STANDINS = ("2001:db8::1", "2001:db8::8a2e:370:7334", "2001:db8:85a3::42", "2001:db8:1f::b0")


def replacement(span: PiiSpan) -> str:
    """The stand-in for one span; an IP address maps to a fixed address of its own version.

    >>> replacement(PiiSpan(0, 7, "EMAIL", "a@b.io"))
    '<EMAIL>'
    >>> replacement(PiiSpan(0, 15, "IP_ADDRESS", "2606:4700::1111"))
    '2001:db8:1f::b0'
    """
    if span.kind != "IP_ADDRESS":
        return _TOKENS[span.kind]
    # crc32, not hash(): str hashes change with PYTHONHASHSEED.
    pool = _IPV6_STANDINS if ":" in span.value else _IPV4_STANDINS
    return pool[zlib.crc32(span.value.encode()) % len(pool)]


def _without_overlaps(spans: list[PiiSpan]) -> list[PiiSpan]:
    """Keep the stronger of overlapping spans (kind priority, then length), sorted by start.

    >>> a, b = PiiSpan(0, 9, "EMAIL", "x"), PiiSpan(5, 9, "PASSWORD", "y")
    >>> _without_overlaps([a, b, PiiSpan(9, 12, "KEY", "z")])  # doctest: +NORMALIZE_WHITESPACE
    [PiiSpan(start=5, end=9, kind='PASSWORD', value='y'),
     PiiSpan(start=9, end=12, kind='KEY', value='z')]
    """
    starts: list[int] = []  # of the kept spans, which are disjoint, so ends sort the same way
    kept: list[PiiSpan] = []
    for span in sorted(spans, key=lambda s: (_PRIORITY[s.kind], s.start - s.end, s.start)):
        i = bisect.bisect_right(starts, span.start)
        if i and kept[i - 1].end > span.start or i < len(kept) and kept[i].start < span.end:
            continue
        starts.insert(i, span.start)
        kept.insert(i, span)
    return kept


@cache
def _literal_automaton():
    """An automaton of every literal that gates a KEY or PASSWORD rule, built once per process
    on first use (with detect-secrets' detectors, whose literals it holds)."""
    import ahocorasick

    automaton = ahocorasick.Automaton()
    for literal in KEY_LITERALS + PASSWORD_LITERALS:
        automaton.add_word(literal, literal)
    for detector in detectors():
        for literal in detector.literals or ():
            automaton.add_word(literal, literal)
    automaton.make_automaton()
    return automaton


def _present_literals(text: str) -> frozenset[str]:
    """Which gating literals occur in `text`, in one pass."""
    return frozenset(literal for _, literal in _literal_automaton().iter(text))
