"""IP_ADDRESS: only addresses that `ipaddress` accepts and calls global.

Private, loopback, link-local, multicast, unspecified, reserved, shared (100.64/10) and
documentation ranges (including 3fff::/20) stay, as do the well-known public resolvers
(8.8.8.8, 1.1.1.1, 9.9.9.9, ...): they belong to no one person. So do network and broadcast
addresses (`x.y.z.0`, `x.y.z.255`, an IPv6 prefix with a zero interface part) and
all-single-digit quads (`1.2.3.4`), which are dummies.

Dotted numbers are versions, not addresses, when they sit in a longer dotted run (`1.2.3.4.5`,
OIDs), carry a suffix (`1.2.3.4-beta`), follow `version`/`ver`/`v`/`rev`/`release`/`build`/
`since`/`section`/`rfc` within a few characters, a pip or semver operator (`==`, `>=`, `~`,
`^`) or a `product/` prefix (user agents), or have all four parts below 32 on a line with no
network word (host, addr, server, ssh, ...).

IPv6 candidates must start with a four-digit group in 2000::/3 (the only global unicast block),
which rules out C++ `std::`, times (`12:30:45`), MAC addresses and byte dumps; they also need
three non-empty groups, so a slice such as `x[2000::3]` is not one. The IPv4 tail of an IPv6
literal (`::ffff:1.2.3.4`) is judged as part of the IPv6 address.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from codekiln.curate.pii.spans import PiiSpan, end_of_line, start_of_line

# Anchored on the first dot: a pattern that starts with a literal is scanned for in C, several
# times faster than one that starts with a digit class. The first octet is read back by hand.
_IPV4_TAIL = re.compile(r"\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_IPV6_GATE = re.compile(r":[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]")
# Global unicast is 2000::/3, so a personal IPv6 address starts with a full group 2xxx or 3xxx.
_IPV6 = re.compile(r"[23][0-9A-Fa-f]{3}:[0-9A-Fa-f:]*[0-9A-Fa-f:]")
_VERSION_CONTEXT = re.compile(
    r"(?:versions?|(?<![a-z])(?:ver|rev|revision|release|build|since|sections?|sec|chapter|rfc"
    r"|oid)|§)[\W\d_]{0,10}\Z|(?<![a-z])v ?\Z|(?:[=<>!~]=|[\^~])\s*\Z"
)
_NETWORK_WORDS = re.compile(
    r"(?i)ip|host|addr|server|inet|connect|listen|bind|allow|deny|proxy|peer|route|gateway|dns"
    r"|remote|client|upstream|ssh|http|cidr|subnet|sock|ping|dial|resolve|nameserver|://"
)
_PUBLIC_RESOLVERS = frozenset(
    ("8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112")
    + ("208.67.222.222", "208.67.220.220", "4.2.2.2", "64.6.64.6")
    + ("2001:4860:4860::8888", "2001:4860:4860::8844", "2606:4700:4700::1111")
    + ("2606:4700:4700::1001", "2620:fe::fe", "2620:fe::9")
)
_IPV6_DOCUMENTATION = ipaddress.ip_network("3fff::/20")
_DIGITS = frozenset("0123456789")
_HEX_OR_COLON = frozenset("0123456789abcdefABCDEF:")
_WORDY_NEIGHBOURS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def find_ips(text: str) -> list[PiiSpan]:
    """IP_ADDRESS spans in `text`, IPv4 then IPv6, each in order.

    >>> find_ips("host 93.184.216.34, version 1.20.3.7, 10.0.0.1")
    [PiiSpan(start=5, end=18, kind='IP_ADDRESS', value='93.184.216.34')]
    """
    spans = []
    for m in _IPV4_TAIL.finditer(text):
        end = m.end()
        start = m.start()
        while start > m.start() - 3 and start and text[start - 1] in _DIGITS:
            start -= 1
        if start == m.start():
            continue
        if start and (text[start - 1] in _WORDY_NEIGHBOURS or text[start - 1] == "."):
            continue
        if start >= 2 and text[start - 1] == ":" and text[start - 2] in _HEX_OR_COLON:
            continue  # the IPv4 tail of an IPv6 literal (`::ffff:1.2.3.4`), judged as IPv6
        after = text[end : end + 2]
        if after and after[0] in _WORDY_NEIGHBOURS:
            continue
        # A longer dotted run (`1.2.3.4.5`, an OID) or a suffix (`1.2.3.4-beta`) is a version.
        if len(after) == 2 and after[0] in ".-" and after[1].isalnum():
            continue
        value = text[start:end]
        if _is_personal_ip(value) and not _reads_as_version(text, start, end, value):
            spans.append(PiiSpan(start, end, "IP_ADDRESS", value))
    if _IPV6_GATE.search(text):
        for m in _IPV6.finditer(text):
            start, end = m.span()
            if start and (text[start - 1] in _WORDY_NEIGHBOURS or text[start - 1] in ":."):
                continue
            if text[end : end + 1] == "." or text[end : end + 1] in _WORDY_NEIGHBOURS:
                continue  # an embedded IPv4 tail or a longer word: not a plain address
            value = m.group()
            if value.endswith(":") and not value.endswith("::"):
                value, end = value[:-1], end - 1  # a trailing colon, as in `addr: note`
            if sum(1 for group in value.split(":") if group) < 3:
                continue
            if _is_personal_ip(value):
                spans.append(PiiSpan(start, end, "IP_ADDRESS", value))
    return spans


@lru_cache(maxsize=4096)
def _is_personal_ip(value: str) -> bool:
    """Whether `value` parses as a global, non-service address.

    >>> _is_personal_ip("93.184.216.34"), _is_personal_ip("10.0.0.1"), _is_personal_ip("1.2.3.400")
    (True, False, False)
    """
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return False
    if not ip.is_global or ip.is_multicast or ip.is_reserved:
        return False
    if ip.version == 4:
        octets = value.split(".")
        # x.y.z.0 and x.y.z.255 name a network or its broadcast, not a host; all-single-digit
        # addresses (1.2.3.4, 2.0.1.5) are dummies or versions far more often than anyone's.
        if octets[3] in ("0", "255") or all(len(o) == 1 for o in octets):
            return False
    if ip.version == 6 and (ip in _IPV6_DOCUMENTATION or int(ip) & (1 << 64) - 1 == 0):
        return False  # documentation, or a prefix with no interface part (`2a01:4f8::`)
    return str(ip) not in _PUBLIC_RESOLVERS


def _reads_as_version(text: str, start: int, end: int, value: str) -> bool:
    """Whether a valid dotted quad is more likely a version: a version word or operator just
    before it, a `product/` prefix, or only small parts (versions rarely pass 31, random
    addresses rarely stay under 32 in all four) on a line that says nothing about networks."""
    line_start = start_of_line(text, start)
    window = text[max(line_start, start - 24) : start].lower()
    if _VERSION_CONTEXT.search(window):
        return True
    if window[-1:] == "/" and window[-2:-1].isalnum():
        return True  # `uplink/3.16.17.26`, a user agent
    if all(int(part) < 32 for part in value.split(".")):
        return _NETWORK_WORDS.search(text, line_start, end_of_line(text, end)) is None
    return False
