"""PII redaction for source code: emails, IP addresses, keys and passwords (StarCoder's PII step).

`find_pii(text)` returns sorted, non-overlapping spans that cover only the sensitive value, and
`redact_pii(text)` swaps each for a stand-in: `<EMAIL>`, `<KEY>`, `<PASSWORD>`, or for an IP
address a fixed documentation address of the same version (IPv4 from 192.0.2.0/24,
198.51.100.0/24 and 203.0.113.0/24, IPv6 from 2001:db8::/32), picked by a CRC-32 of the original
so the output never depends on PYTHONHASHSEED and the code around it stays valid. Every stand-in
is itself ignored by the detectors, so redacting twice changes nothing.

What counts, and what was decided:

- EMAIL: `local@domain.tld` where the TLD is any two letters, a known generic TLD, or any
  alphabetic TLD on a hyphenated domain; so code such as `x@self.weight`, `a@b.T` and
  `icon@2x.png` (file extensions and `@2x` names are refused too) is not read as mail, at the
  cost of missing `ana@studio.photography`-style addresses on unhyphenated new gTLDs.
  Placeholder domains are not personal and stay: example.com/.org/.net and their subdomains,
  the reserved TLDs .example, .invalid, .test, .localhost and .local, and
  yourdomain/yourcompany.com. A login in a URL (`ssh://git@host`, `user:pw@host`) and an
  scp-style remote (`git@github.com:org/x`) name an account on a host, not a mailbox, so they
  are not emails (the URL's password, if any, is a PASSWORD); `mailto:` and `Email:` labels
  are fine. Real maintainers' addresses in headers (`Author: ... <...>`) are PII and go.
- IP_ADDRESS: only addresses that `ipaddress` accepts and calls global. Private, loopback,
  link-local, multicast, unspecified, reserved, shared (100.64/10) and documentation ranges
  (including 3fff::/20) stay, as do the well-known public resolvers (8.8.8.8, 1.1.1.1, 9.9.9.9,
  ...): they belong to no one person. So do network and broadcast addresses (`x.y.z.0`,
  `x.y.z.255`, an IPv6 prefix with a zero interface part) and all-single-digit quads
  (`1.2.3.4`), which are dummies. Dotted numbers are versions, not addresses, when they sit
  in a longer dotted run (`1.2.3.4.5`, OIDs), carry a suffix (`1.2.3.4-beta`), follow
  `version`/`ver`/`v`/`rev`/`release`/`build`/`since`/`section`/`rfc` within a few characters,
  a pip or semver operator (`==`, `>=`, `~`, `^`) or a `product/` prefix (user agents), or
  have all four parts below 32 on a line with no network word (host, addr, server, ssh,
  ...). IPv6 candidates must start with a four-digit group in 2000::/3 (the only global
  unicast block), which rules out C++ `std::`, times (`12:30:45`), MAC addresses and byte
  dumps; they also need three non-empty groups, so a slice such as `x[2000::3]` is not one.
  The IPv4 tail of an IPv6 literal (`::ffff:1.2.3.4`) is judged as part of the IPv6 address.
- KEY: the regex detectors of detect-secrets (AWS, GitHub, GitLab, Slack, Stripe, SendGrid,
  Twilio, JWT, PyPI, npm, OpenAI, Azure, Square, Discord, Telegram, Mailchimp, Artifactory,
  IBM, Cloudant, SoftLayer and private-key blocks), used through their `denylist` regexes on
  the whole text rather than detect-secrets' per-line scan. A private key is redacted from the
  end of its BEGIN line to the start of its END line, and only when that body holds key
  material, so code that merely names the marker is left alone. Google API keys (`AIza...`),
  `Bearer` tokens, and values assigned to names containing key, secret, token, api, auth or
  credential (quoted; unquoted on config lines; XML elements; `#define`) are KEYs when they
  look random: at least 20 characters of a base64 or hex alphabet, letters and digits mixed,
  Shannon entropy above a length-dependent floor, and not made mostly of words. A name whose
  parts say it is something else (`sort_key`, `api_key_id`, `token_type`, `auth_url`,
  `author`) does not count, and a value must sit next to its name: `{stripe: "<key>"}` is
  missed. Hashes (32, 40, 56, 64, 96 or 128 hex digits after hash, sha, checksum, digest, md5,
  etag, commit, ... on the line), UUIDs and placeholders (`xxxx`, `your_...`, `<...>`, `${...}`,
  `changeme`, example, dummy, fake, test, sample, runs of one character, `abcde`/`12345`
  sequences) are never KEYs, whichever detector found them.
- PASSWORD: the value given to a name that ends in password, passwd, passphrase or the part
  `pass`/`pwd` (`DB_PASSWORD`, `smtpPass`, `db_pwd_prod`; not `bypass`, `password_hash`,
  `PASSWORD_MIN_LENGTH`, `HTTPPasswordMgr`): as a quoted string after `=`, `:`, `:=`, `=>`,
  `==`, a setter call (`setPassword("x")`), a settings call (`put("password", "x")`) or a
  SQL/`#define` space; unquoted after a CLI flag (`--password=xyz`, `--password xyz`), on a
  config line (`DB_PASSWORD=abc123`, `password: s3cr3t`, `ENV`, `export`), as a flag's
  argument (`-e DB_PASSWORD=x`), in netrc, or in a connection or query string
  (`;Password=abc;`, `&password=x`); the password in a URL (`scheme://user:pw@host`, by
  detect-secrets' BasicAuth pattern); `IDENTIFIED BY '...'`; and the second of two strings
  given to `auth=(...)`, `.login(...)` or `BasicAuth(...)`. Values that are code
  (`get_password()`, `self.pw`, `os.environ[...]`, the name itself as in
  `password=password`, `None`, type names, a bare identifier after a spaced `=`), empty
  values, values with whitespace (prose; passphrases are missed), paths, placeholders (`***`,
  `<password>`, `${PASSWORD}`, `%(pw)s`, `%s`, `changeme`, `password`, `secret`, `test`, yes/no,
  ...) and prompts (`"Password: "`) are not passwords. A flag is given a value, not named in
  prose: a value after a space must hold a digit or a symbol (`--password hunter2`, not
  "the --password flag", so a one-word password such as `--requirepass letmein` is missed), and
  a flag quoted by itself (`` the `--password` flag ``, `'--password' option`) takes none. A
  name quoted on one side only is the end of prose (`input("password: ")`) and is skipped, as
  is the first target of a tuple assignment (`user, password = "u", "p"`).

When spans overlap, KEY beats PASSWORD beats EMAIL beats IP_ADDRESS, then the longer span wins.

Speed: every literal that gates a detector is looked for in one Aho-Corasick pass, the other
rules run only when a cheap condition holds (`"@" in text`, a keyword), and regexes start
with a literal where possible because sre scans for a literal in C. ASCII text is lowercased
once: the password-name scan then needs one literal-led pattern instead of a case alternation,
and files without a key-like word (key, secret, token, api, auth, credential: about half of all
source files) skip the scans for values assigned to such names; in the others, those scans
read only the lines that hold such a word, as IBM Cloud IAM's pattern reads only the lines
that hold a value of its length. detect-secrets (which
pulls in `requests`) and pyahocorasick are imported on first use and kept in a module-level
cache, so importing this module is cheap and each worker process builds its own copy.
"""

from __future__ import annotations

import bisect
import ipaddress
import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import cache, lru_cache

PII_KINDS = ("EMAIL", "IP_ADDRESS", "KEY", "PASSWORD")

_PRIORITY = {"KEY": 0, "PASSWORD": 1, "EMAIL": 2, "IP_ADDRESS": 3}
_TOKENS = {"EMAIL": "<EMAIL>", "KEY": "<KEY>", "PASSWORD": "<PASSWORD>"}


@dataclass(frozen=True)
class PiiSpan:
    """One piece of PII: `text[start:end] == value`, of one of `PII_KINDS`."""

    start: int
    end: int
    kind: str
    value: str


def find_pii(text: str) -> list[PiiSpan]:
    """All PII in `text`, sorted by position and non-overlapping.

    >>> find_pii('owner = "Ada <ada.l@analytical.io>"  # host 93.184.216.34')
    ... # doctest: +NORMALIZE_WHITESPACE
    [PiiSpan(start=14, end=33, kind='EMAIL', value='ada.l@analytical.io'),
     PiiSpan(start=44, end=57, kind='IP_ADDRESS', value='93.184.216.34')]
    """
    found: list[PiiSpan] = []
    if "@" in text:
        found += _find_emails(text)
    if "." in text or ":" in text:
        found += _find_ips(text)
    present = _present_literals(text)
    # ASCII text only: lower() keeps its length, so positions found in it hold in `text`.
    lowered = text.lower() if text.isascii() else None
    found += _find_keys(text, present, lowered)
    found += _find_passwords(text, present, lowered)
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


# How far context checks look along a line. Bounded so that a minified file, one line of
# megabytes, costs linear time instead of a full-line scan per candidate.
_LINE_WINDOW = 1000


def _line_start(text: str, pos: int) -> int:
    """Start of the line holding `pos`, or `_LINE_WINDOW` characters back on a longer line."""
    lo = max(0, pos - _LINE_WINDOW)
    newline = text.rfind("\n", lo, pos)
    return newline + 1 if newline != -1 else lo


def _line_end(text: str, pos: int) -> int:
    """End of the line holding `pos`, or `_LINE_WINDOW` characters on."""
    hi = min(len(text), pos + _LINE_WINDOW)
    newline = text.find("\n", pos, hi)
    return newline if newline != -1 else hi


# Emails

_EMAIL_LOCAL_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-"
)
_EMAIL_DOMAIN = re.compile(
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24}))"
    r"(?![A-Za-z0-9-]|\.[A-Za-z0-9])"
)
_GENERIC_TLDS = frozenset(
    """com org net edu gov mil int info biz name pro mobi aero coop museum travel jobs asia
    app dev tech xyz online site cloud email systems digital solutions company works team
    network social blog page website space store shop academy agency center club design fun
    global group host life live media ninja one plus rocks studio today tools world zone codes
    software science services technology consulting engineering foundation institute
    international ltd llc inc gmbh wiki berlin london nyc paris tokyo amsterdam moscow""".split()
)
_FILE_EXTENSIONS = frozenset(
    """png jpg jpeg gif svg webp ico bmp tif tiff css js jsx ts tsx json yaml yml xml html htm
    txt lock map min tmp bak log cfg ini toml mp3 mp4 wav pdf zip gz tar py md sh rs cc
    hh""".split()
)
_PLACEHOLDER_DOMAINS = ("example.com", "example.org", "example.net", "yourdomain.com")
_PLACEHOLDER_DOMAINS += ("your-domain.com", "yourcompany.com")
_PLACEHOLDER_TLDS = frozenset(("example", "invalid", "test", "localhost", "local"))
_LABEL_BEFORE = re.compile(r"[\w-]*\Z")
_MAIL_LABELS = frozenset(("mailto", "email", "e-mail", "mail", "from", "to", "cc", "contact"))
_NOT_MAIL_HOSTS = frozenset(("self", "this", "cls", "np", "torch", "tf", "jnp", "math"))


def _find_emails(text: str) -> list[PiiSpan]:
    spans = []
    at = text.find("@")
    while at != -1:
        span = _email_at(text, at)
        if span is not None:
            spans.append(span)
            at = text.find("@", span.end)
        else:
            at = text.find("@", at + 1)
    return spans


def _email_at(text: str, at: int) -> PiiSpan | None:
    start = at
    while start > at - 64 and start and text[start - 1] in _EMAIL_LOCAL_CHARS:
        start -= 1
    if start == at or (start and text[start - 1] in _EMAIL_LOCAL_CHARS):
        return None  # no local part, or one longer than the 64 characters RFC 5321 allows
    dom = _EMAIL_DOMAIN.match(text, at)
    if dom is None:
        return None
    while start < at and not text[start].isalnum():
        start += 1
    if start and text[start - 1] == "\\":
        start += 1  # `\nbob@...` inside a string literal: the n belongs to the escape
    if start == at or ".." in text[start:at]:
        return None
    if start and text[start - 1] == ":":
        label = _LABEL_BEFORE.search(text, max(0, start - 12), start - 1).group().lower()
        if label not in _MAIL_LABELS:
            return None  # `user:pw@host`: credentials in a URL without its scheme
    domain, tld = dom.group(1).lower(), dom.group(2).lower()
    # Unknown long TLDs pass only on hyphenated domains, which no attribute chain
    # (`x@self.weight`) can spell.
    if len(tld) > 2 and tld not in _GENERIC_TLDS and "-" not in domain or tld in _FILE_EXTENSIONS:
        return None
    if tld in _PLACEHOLDER_TLDS or domain.endswith(_PLACEHOLDER_DOMAINS):
        return None
    first_label = domain.split(".", 1)[0]
    if first_label in _NOT_MAIL_HOSTS or re.fullmatch(r"\d+(?:\.\d+)?x", first_label):
        return None
    end = dom.end()
    # scp-style remote (`git@github.com:org/repo.git`): an account on a host.
    if (
        end + 1 < len(text)
        and text[end] == ":"
        and (text[end + 1].isalnum() or text[end + 1] in "/~")
    ):
        return None
    # URL userinfo (`scheme://user@host`, `scheme://user:pw@host`): a login, not a mailbox.
    lo = max(0, start - 256)
    token_start = max(text.rfind(c, lo, start) for c in " \t\n\"'`<(") + 1
    if "://" in text[token_start:start]:
        return None
    return PiiSpan(start, end, "EMAIL", text[start:end])


# IP addresses

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


def _find_ips(text: str) -> list[PiiSpan]:
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
    line_start = _line_start(text, start)
    window = text[max(line_start, start - 24) : start].lower()
    if _VERSION_CONTEXT.search(window):
        return True
    if window[-1:] == "/" and window[-2:-1].isalnum():
        return True  # `uplink/3.16.17.26`, a user agent
    if all(int(part) < 32 for part in value.split(".")):
        return _NETWORK_WORDS.search(text, line_start, _line_end(text, end)) is None
    return False


# Keys

# (module, class, literals, gate): a detector's regexes run only when the text holds one of its
# literals (None: no such condition) and its gate regex, if any, matches; every match of the
# detector satisfies both, so skipping is safe. All literals are looked for in one Aho-Corasick
# pass: one `in` test per literal would cost a scan of the text each. Detectors whose only
# literals are too common for that (`A`, `.`, `:`) get a gate regex that starts with a literal,
# which sre finds with a fast search instead of trying its leading class at every character.
# Left out: HighEntropyString and Keyword (replaced by the name-aware rule below), IPPublic
# (replaced by the IP rules) and BasicAuth, which `_find_passwords` runs as a PASSWORD rule.
_IAM_GATE = r"(?i)[a-zA-Z0-9_\-]{44}"  # IBM Cloud IAM's value, with its pattern's flags
_DETECT_SECRETS_PLUGINS = (
    ("aws", "AWSKeyDetector", ("A3T", "ABIA", "ACCA", "AKIA", "ASIA", "aws", "AWS", "Aws"), None),
    ("artifactory", "ArtifactoryDetector", None, r"A(?:KC|P[\dA-F])[a-zA-Z0-9]{8}"),
    ("azure_storage_key", "AzureStorageKeyDetector", ("AccountKey=",), None),
    ("cloudant", "CloudantDetector", ("cloudant", "Cloudant", "CLOUDANT"), None),
    ("discord", "DiscordBotTokenDetector", None, r"\.[a-zA-Z\d_-]{6}\.[a-zA-Z\d_-]{27}"),
    ("github_token", "GitHubTokenDetector", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), None),
    (
        "gitlab_token",
        "GitLabTokenDetector",
        ("glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "GR1348941", "glcbt-", "glimt-")
        + ("glptt-", "glagent-", "gloas-"),
        None,
    ),
    # The IBM and SoftLayer patterns also fit unbranded `api_key = "..."` lines, which the
    # name-aware rule covers; running them only in files that name the vendor keeps them cheap.
    # Its pattern tries every position of the text (a lookbehind leads it); the gate, the
    # 44-character value with the pattern's own class and flags, is a far cheaper scan.
    ("ibm_cloud_iam", "IbmCloudIamDetector", ("ibm", "IBM", "Ibm"), _IAM_GATE),
    ("ibm_cos_hmac", "IbmCosHmacDetector", ("secret", "SECRET", "Secret"), r"[0-9a-f]{48}"),
    ("jwt", "JwtTokenDetector", ("eyJ",), None),
    ("mailchimp", "MailchimpDetector", ("-us",), r"-us\d"),
    ("npm", "NpmDetector", ("_authToken",), None),
    ("openai", "OpenAIDetector", ("T3BlbkFJ",), None),
    ("private_key", "PrivateKeyDetector", ("PRIVATE KEY", "PuTTY-User-Key-File"), None),
    ("pypi_token", "PypiTokenDetector", ("pypi-AgE",), None),
    ("sendgrid", "SendGridDetector", ("SG.",), None),
    ("slack", "SlackDetector", ("xox", "XOX", "Xox", "hooks.slack.com", "HOOKS.SLACK.COM"), None),
    ("softlayer", "SoftlayerDetector", ("softlayer", "SoftLayer", "Softlayer", "SOFTLAYER"), None),
    ("square_oauth", "SquareOAuthDetector", ("sq0csp-",), None),
    ("stripe", "StripeDetector", ("k_live_",), None),
    ("telegram_token", "TelegramBotTokenDetector", None, r":[0-9A-Za-z_-]{35}"),
    # Both patterns start with a literal already, so they are as cheap as any gate.
    ("twilio", "TwilioKeyDetector", None, None),
)
# Literals that gate this module's own rules; found in the same pass.
_OWN_LITERALS = ("AIza", "earer", "define", "</", "://", "dentified", "DENTIFIED", "auth=(")
_OWN_LITERALS += ("auth = (", ".login(", "BasicAuth(")
# Detectors whose matches lie within one line and hold a match of their gate: only the lines
# where the gate matches are scanned (IBM Cloud IAM's pattern tries every position, and its gate
# passes in files with any 44-character identifier run).
_LINE_LOCAL = frozenset(("IbmCloudIamDetector",))
# Detectors that match on shape alone: their hits must also look random.
_SHAPE_ONLY = frozenset(
    ("ArtifactoryDetector", "DiscordBotTokenDetector", "TelegramBotTokenDetector")
    + ("TwilioKeyDetector", "MailchimpDetector", "IbmCloudIamDetector", "CloudantDetector")
    + ("SoftlayerDetector", "IbmCosHmacDetector", "AWSKeyDetector")
)


@dataclass(frozen=True)
class _Detector:
    name: str
    plugin: object
    literals: frozenset[str] | None
    gate: re.Pattern | None


@cache
def _detectors() -> tuple[tuple[_Detector, ...], object]:
    """detect-secrets' detectors and an automaton of every gating literal, built once per
    process on first use."""
    import importlib

    import ahocorasick

    built = []
    automaton = ahocorasick.Automaton()
    for literal in _OWN_LITERALS:
        automaton.add_word(literal, literal)
    for module, name, literals, gate in _DETECT_SECRETS_PLUGINS:
        try:
            cls = getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), name)
        except (ImportError, AttributeError):
            continue  # an older detect-secrets without this detector
        for literal in literals or ():
            automaton.add_word(literal, literal)
        gate_re = re.compile(gate) if gate else None
        built.append(_Detector(name, cls(), frozenset(literals) if literals else None, gate_re))
    automaton.make_automaton()
    return tuple(built), automaton


def _present_literals(text: str) -> frozenset[str]:
    """Which gating literals occur in `text`, in one pass."""
    automaton = _detectors()[1]
    return frozenset(literal for _, literal in automaton.iter(text))


@cache
def _basic_auth_regexes() -> tuple[re.Pattern, ...]:
    from detect_secrets.plugins.basic_auth import BasicAuthDetector

    return tuple(BasicAuthDetector.denylist)


# BEGIN and END markers are paired in one pass: a lazy BEGIN...END regex would rescan to the
# next END from every unmatched BEGIN.
_PEM_MARKER = re.compile(r"-----(BEGIN|END)[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
_PEM_EDGE = frozenset(" \t\r\n\"',")
_PEM_PLACEHOLDER = re.compile(r"(?i)\.\.\.|xxxx|<|>|your|redacted|example|placeholder|\$\{")
_PUTTY_BLOCK = re.compile(
    r"Private-Lines: *\d+[ \t]*\r?\n(.{0,16384}?)\r?\n[ \t]*Private-MAC", re.S
)
_GOOGLE_API_KEY = re.compile(r"AIza[0-9A-Za-z_\-]{35}")
_BEARER = re.compile(r"[Bb]earer[ \t]+([A-Za-z0-9\-._~+/]{20,}=*)")
# A quoted value; `_OP_BEFORE` then requires an assignment, a key/value separator, a call or an
# argument separator before it (anchoring on the quote is several times faster than on the op).
_QUOTED_VALUE = re.compile(r"""(["'`])([A-Za-z0-9+/=_\-.~]{20,})\1""")
_OP_BEFORE = re.compile(r"(=>|:=|[=:(,])[ \t]*[rbuRBU]?\Z")
# An unquoted value that runs to the end of the line, as in .env, YAML and .properties files.
_UNQUOTED_VALUE = re.compile(
    r"([=:])[ \t]*([A-Za-z0-9+/_\-~.]{20,}={0,2})[ \t]*(?=[\r\n#;,]|$)", re.M
)
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_XML_VALUE = re.compile(r"<([\w:.-]+)>[ \t]*([A-Za-z0-9+/=_\-.~]{20,})[ \t]*</\1>")
_DEFINE_VALUE = re.compile(r"#[ \t]*define[ \t]+(\w+)[ \t]+\"([^\"\n]+)\"")
_NAME_BEFORE = re.compile(r"""([A-Za-z_$@-][\w.$-]*)["'`]?\]?[ \t]*\Z""")
_NAME_BEFORE_ANNOTATED = re.compile(
    r"""([A-Za-z_$@-][\w.$-]*)(?:[ \t]*:[ \t]*[\w.\[\]&'<> ]+)?[ \t]*\Z"""
)
_KEY_NAME_WORDS = ("key", "secret", "token", "api", "auth", "credential")
# On non-ASCII text (?i) also matches a few other letters (Kelvin K, long s, dotless i).
_KEY_NAME = re.compile("(?i)" + "|".join(_KEY_NAME_WORDS))
# Name parts that make a key-ish name about something else: a data-structure key
# (`sort_key`, `primary_key`), a key's metadata (`api_key_id`, `token_type`, `auth_url`), or
# another word (`author`, `monkey`, `keyboard`).
_NOT_KEY_PARTS = frozenset(
    """author authors keyword keywords keyboard monkey hotkey keymap keycode keystroke tokenizer
    tokenize type url uri urls endpoint path file filename name dir header prefix suffix
    version format id ids length len size count field label hash digest checksum sha sha1
    sha256 md5 etag scope primary foreign sort cache partition lookup dict map row column
    index unique composite""".split()
)
_HASH_CONTEXT = re.compile(
    r"(?i)hash|sha|checksum|digest|md5|etag|commit|rev|fingerprint|integrity|crc|blob|tree"
)
_HASH_LENGTHS = frozenset((32, 40, 56, 64, 96, 128))
_HEX = re.compile(r"[0-9a-fA-F]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PLACEHOLDER = re.compile(
    r"(?i)xxx|your[_-]?|<|>|\$\{|\{\{|%\(|changeme|change_me|example|dummy|fake|test|sample"
    r"|placeholder|redacted|replace|insert|(.)\1{3}"
)
_WORD = re.compile(r"[A-Z]?[a-z]{3,}")
_CAPS_WORD = re.compile(r"(?<![A-Z0-9])[A-Z]{3,}(?![A-Z0-9])")
_VOWELS = frozenset("aeiouyAEIOUY")


def _find_keys(text: str, present: frozenset[str], lowered: str | None) -> list[PiiSpan]:
    spans: list[PiiSpan] = []
    for det in _detectors()[0]:
        if det.literals is not None and det.literals.isdisjoint(present):
            continue
        if det.gate is not None and not det.gate.search(text):
            continue
        if det.name == "PrivateKeyDetector":
            spans += _private_keys(text)
            continue
        for regex in det.plugin.denylist:
            if det.name in _LINE_LOCAL:
                matches = _finditer_lines(regex, text, _gate_lines(det.gate, text, lowered))
            else:
                matches = regex.finditer(text)
            for m in matches:
                start, end = _match_value(m)
                if det.name == "AzureStorageKeyDetector":
                    start += len("AccountKey=")
                value = text[start:end]
                if det.name == "JwtTokenDetector" and not det.plugin.is_formally_valid(value):
                    continue
                if det.name in _SHAPE_ONLY and not _looks_random(value, min_len=16):
                    continue
                if _is_key_placeholder(value, text, start):
                    continue
                spans.append(PiiSpan(start, end, "KEY", value))
    if "AIza" in present:
        spans += _generic_keys(text, _GOOGLE_API_KEY.finditer(text), group=0, named=False)
    if "earer" in present:
        spans += _generic_keys(text, _BEARER.finditer(text), group=1, named=False)
    # A value counts only when its name matches `_KEY_NAME`, and name, operator and value sit
    # on one line, so in ASCII text only the lines holding a key word are scanned: about half
    # of all source files hold none, and the others few (a few per cent of all lines).
    if lowered is None:
        quoted, unquoted = _QUOTED_VALUE.finditer(text), _UNQUOTED_VALUE.finditer(text)
    else:
        lines = _key_word_lines(lowered)
        if not lines:
            return spans
        quoted = _finditer_lines(_QUOTED_VALUE, text, lines)
        unquoted = _finditer_lines(_UNQUOTED_VALUE, text, lines)
    spans += _generic_keys(text, quoted, group=2, named=True)
    spans += _generic_keys(text, unquoted, group=2, named=True)
    if "</" in present:
        spans += _generic_keys(text, _XML_VALUE.finditer(text), group=2, named=True)
    if "define" in present:
        spans += _generic_keys(text, _DEFINE_VALUE.finditer(text), group=2, named=True)
    return spans


def _lines_holding(text: str, positions: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each line, newline excluded, that holds one of `positions`, in order."""
    lines: list[tuple[int, int]] = []
    last_end = -1
    for pos in sorted(positions):
        if pos <= last_end:
            continue
        end = text.find("\n", pos)
        last_end = len(text) if end == -1 else end
        lines.append((text.rfind("\n", 0, pos) + 1, last_end))
    return lines


# Runs of 44 of IBM Cloud IAM's value characters, found in ASCII text as a substring of the
# text mapped to "a" (a value character) and " " (any other): sre would try the class at every
# position.
_IAM_RUN_MAP = bytes(
    ord("a") if chr(c).isascii() and (chr(c).isalnum() or chr(c) in "_-") else ord(" ")
    for c in range(256)
)
_IAM_RUN = b"a" * 44


def _gate_lines(gate: re.Pattern, text: str, lowered: str | None) -> list[tuple[int, int]]:
    """The lines where a `_LINE_LOCAL` detector's gate matches."""
    if lowered is None or gate.pattern != _IAM_GATE:
        # Non-ASCII text: (?i) lets the class match a few other letters (Kelvin K, long s).
        return _lines_holding(text, [m.start() for m in gate.finditer(text)])
    mapped = text.encode("ascii").translate(_IAM_RUN_MAP)
    return _lines_holding(text, _first_per_line(mapped, _IAM_RUN, text))


def _key_word_lines(lowered: str) -> list[tuple[int, int]]:
    """The lines of a lowercased text that hold one of `_KEY_NAME_WORDS`."""
    positions = []
    for word in _KEY_NAME_WORDS:
        positions += _first_per_line(lowered, word, lowered)
    return _lines_holding(lowered, positions)


def _first_per_line(haystack: str | bytes, needle: str | bytes, text: str) -> list[int]:
    """Offsets of the first `needle` on each line of `haystack` that holds one; lines end at
    the newlines of `text`, which has the same length (the text itself, or a mapped copy)."""
    positions = []
    pos = haystack.find(needle)
    while pos != -1:
        positions.append(pos)
        end = text.find("\n", pos)
        pos = -1 if end == -1 else haystack.find(needle, end)
    return positions


def _finditer_lines(regex: re.Pattern, text: str, lines: list[tuple[int, int]]):
    """`regex.finditer(text)` for a regex whose matches never span a newline, scanning only
    `lines`: the same matches as the whole text gives there. With pos and endpos, lookbehinds
    still see the text before the line, and a lookahead at the line's end sees its end, as at
    a newline."""
    for start, end in lines:
        yield from regex.finditer(text, start, end)


def _match_value(m: re.Match) -> tuple[int, int]:
    """The span of a detector match's secret.

    Detectors capture the secret in a group (`aws...key = "(...)"`), or capture a prefix
    (`(ghp|gho)_...`), or include delimiters (`(?:=|:)AKC...`), so: the longest group if it
    is long enough to be a secret, else the whole match; trimmed of delimiters, and extended
    over token characters a fixed-length pattern stopped short of, so no tail is left behind.
    """
    s = m.string
    groups = [m.span(i) for i in range(1, (m.re.groups or 0) + 1) if m.group(i)]
    start, end = max(groups, key=lambda g: g[1] - g[0], default=m.span())
    if end - start < 16:
        start, end = m.span()
    while start < end and s[start] in " \t\r\n\"'`=:":
        start += 1
    while end > start and s[end - 1] in " \t\r\n\"'`":
        end -= 1  # npm's pattern runs to the end of the line, closing quote included
    while end < len(s) and (s[end].isascii() and s[end].isalnum() or s[end] in "_-"):
        end += 1
    return start, end


def _private_keys(text: str) -> list[PiiSpan]:
    bodies = [m.span(1) for m in _PUTTY_BLOCK.finditer(text)]
    begin = None
    for m in _PEM_MARKER.finditer(text):
        if m.group(1) == "BEGIN":
            begin = m.end()
        elif begin is not None:
            bodies.append((begin, m.start()))
            begin = None
    spans = []
    for body_start, body_end in bodies:
        start, end = _strip_line_breaks(text, body_start, body_end)
        body = text[start:end]
        # Not `_PLACEHOLDER`: DER-encoded keys hold runs like AAAA.
        if sum(c.isalnum() or c in "+/=" for c in body) >= 64 and not _PEM_PLACEHOLDER.search(body):
            spans.append(PiiSpan(start, end, "KEY", body))
    return spans


def _strip_line_breaks(text: str, start: int, end: int) -> tuple[int, int]:
    r"""Narrow a span past whitespace, escaped line breaks (`\n` in JSON) and the quotes and
    commas of a key split over string literals, at both ends.

    >>> _strip_line_breaks('"\\nMIIB\\n",', 0, 11)
    (3, 7)
    """
    while start < end:
        if text[start] in _PEM_EDGE:
            start += 1
        elif text[start : start + 2] in ("\\n", "\\r"):
            start += 2
        else:
            break
    while end > start:
        if text[end - 1] in _PEM_EDGE:
            end -= 1
        elif text[end - 2 : end] in ("\\n", "\\r"):
            end -= 2
        else:
            break
    return start, end


def _generic_keys(text: str, matches, group: int, named: bool) -> list[PiiSpan]:
    """KEY spans for the values in `matches` that look random and, if `named`, are assigned to
    a key-like name."""
    spans = []
    for m in matches:
        start, end = m.span(group)
        value = m.group(group)
        if m.re is _UNQUOTED_VALUE and _DOTTED_NAME.fullmatch(value):
            # `api_key = settings.API_KEY_V2` is code; `hvs.CAES...` (Vault) is a token.
            if not any(_looks_random(part, min_len=16) for part in value.split(".")):
                continue
        if named:
            name = _assigned_name(text, m)
            if name is None or not _KEY_NAME.search(name):
                continue
            if not _NOT_KEY_PARTS.isdisjoint(p.lower() for p in _NAME_PARTS.findall(name)):
                continue
        if not _looks_random(value) or _is_key_placeholder(value, text, start):
            continue
        spans.append(PiiSpan(start, end, "KEY", value))
    return spans


def _assigned_name(text: str, m: re.Match) -> str | None:
    """The name a value is assigned to: the element of an XML match, the macro of a #define,
    else the identifier (or quoted key) just before the operator, on the same line."""
    if m.re is _XML_VALUE or m.re is _DEFINE_VALUE:
        return m.group(1)
    if m.re is _QUOTED_VALUE:
        op = _OP_BEFORE.search(text, max(0, m.start() - 8), m.start())
        if op is None:
            return None
    else:
        op = m
    op_start = op.start(1)
    line_start = _line_start(text, op_start)
    regex = _NAME_BEFORE_ANNOTATED if op.group(1) == "=" else _NAME_BEFORE
    found = regex.search(text, max(line_start, op_start - 80), op_start)
    if found is None:
        return None
    if m.re is _UNQUOTED_VALUE and not _starts_config_line(text, found.start(), line_start):
        return None
    return found.group(1)


# What may precede a name on a line that assigns a literal: shell `export`/`set`, Dockerfile
# `ENV`/`ARG`, a YAML list dash.
_CONFIG_LINE_PREFIXES = frozenset(("", "export", "set", "SET", "-", "ENV", "ARG"))


def _starts_config_line(text: str, name_start: int, line_start: int) -> bool:
    """Whether a name begins its line (after indent, `export`, `set` or a YAML `- `), or follows
    a `;`, `?` or `&` as in connection and query strings: where unquoted values are literals."""
    before = text[line_start:name_start].strip()
    return before in _CONFIG_LINE_PREFIXES or before.endswith((";", "?", "&"))


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`'s own character distribution.

    >>> shannon_entropy("aabb"), round(shannon_entropy("abcdefgh"), 2)
    (1.0, 3.0)
    """
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0


def _looks_random(value: str, min_len: int = 20) -> bool:
    """Whether `value` reads like generated key material rather than words or a name.

    The entropy floors sit near the 1st percentile of random strings of that length over a
    36-character alphabet (hex: 16), so few real keys fall under them while words, which
    repeat letters, mostly do; the word test catches the long identifiers that do not.

    >>> _looks_random("Zq8vP2mWx9LtR4kNc7Hy"), _looks_random("MyApplicationSettingsKey1")
    (True, False)
    """
    n = len(value)
    if n < min_len or not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return False
    if _HEX.fullmatch(value):
        return shannon_entropy(value) >= (3.0 if n >= 32 else 2.8)
    # Random upper-case keys hold letter runs too, so capitals count as words only between
    # separators, as in SECRET_KEY_V2.
    words = (_WORD if any(c.islower() for c in value) else _CAPS_WORD).findall(value)
    if sum(len(w) for w in words if _VOWELS.intersection(w)) >= 0.5 * n:
        return False
    floor = 3.2 if n < 25 else 3.5 if n < 40 else 3.8
    return shannon_entropy(value) >= floor


def _is_key_placeholder(value: str, text: str, start: int) -> bool:
    """Whether a key-shaped value is a hash, a UUID, a placeholder or a counting sequence."""
    if _PLACEHOLDER.search(value) or _UUID.fullmatch(value) or _has_sequence(value):
        return True
    if len(value) in _HASH_LENGTHS and _HEX.fullmatch(value):
        context = text[max(_line_start(text, start), start - 60) : start]
        return _HASH_CONTEXT.search(context) is not None
    return False


def _has_sequence(value: str, run: int = 5) -> bool:
    """Whether `value` holds `run` consecutive ascending characters, like `abcde` or `34567`.

    >>> _has_sequence("k9abcdeQ"), _has_sequence("k9abdeQ")
    (True, False)
    """
    streak = 1
    for a, b in zip(value, value[1:], strict=False):
        streak = streak + 1 if ord(b) == ord(a) + 1 and b.isalnum() else 1
        if streak >= run:
            return True
    return False


# Passwords

_PW_KEYWORD = re.compile(r"pass|pwd|PASS|Pass|PWD|Pwd")
_PW_KEYWORDS = frozenset(("pass", "pwd", "PASS", "Pass", "PWD", "Pwd"))
# On lowercased text one literal `p` leads the pattern, which sre scans for far faster than the
# class [pP] that leads `_PW_KEYWORD`.
_PW_KEYWORD_LOWER = re.compile(r"p(?:ass|wd)")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.$-")
_NAME_RIGHT = re.compile(r"[\w.$-]*")
_NAME_PARTS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
# A password name ends in a password word, maybe followed by a qualifier (`DB_PASSWORD_PROD`);
# anything else at the end (`password_hash`, `PASSWORD_MIN_LENGTH`, `HTTPPasswordMgr`) makes it
# a name about a password rather than one that holds it.
_PW_QUALIFIERS = frozenset(
    "prod production dev development staging stage test local old new plain plaintext raw str "
    "value val default".split()
)
# Whole last parts that name a password; `requirepass` is Redis's.
_PW_LAST_PARTS = frozenset(("pass", "pwd", "requirepass", "masterauth"))
# Call names that take a password as their first argument: `setPassword("x")`, `.password("x")`.
_PW_SETTERS = frozenset(
    "password passwd pwd pass passphrase setpassword setpasswd setpwd setpass setpassphrase "
    "withpassword".split()
)
_PW_AFTER = re.compile(
    r"""(?P<q>["'`])?\]?[ \t]*
    (?::[ \t]*[\w.\[\]&'<>]+[ \t]*(?==))?
    (?P<op>:=|=>|==|!=|=|:|\(|,|[ \t])[ \t]*
    (?:[rbuRBU]?(?P<vq>["'`])(?P<qval>[^"'`\r\n]*)(?P=vq)|(?P<val>[^\s"'`,;()\[\]{}&#]+))""",
    re.X,
)
# Calls whose first argument names a setting and whose second gives its value.
_PAIR_CALL = re.compile(
    r"(?i)\b(?:put|set|setproperty|setdefault|get|getenv|getproperty|getordefault|option|define"
    r"|setvalue|putstring|setenv|putenv)\([ \t]*\Z"
)
_XML_ELEMENT = re.compile(r"<([\w:.-]+)>[ \t]*([^<>\s]{1,200})[ \t]*</\1>")
_NETRC = re.compile(r"(?:^|\s)(?:machine|login)\s")
# A password passed by position: `auth=("user", "pw")`, `.login("user", "pw")`,
# `HTTPBasicAuth("user", "pw")`.
_POSITIONAL_PASSWORD = re.compile(
    r"""(?:\bauth[ \t]*=[ \t]*\(|\.login\(|BasicAuth\()[ \t]*[rbu]?(["'])[^"'\n]*\1[ \t]*,[ \t]*"""
    r"""[rbu]?(["'])([^"'\s]+)\2[ \t]*\)"""
)
_TUPLE_TARGETS = re.compile(r"\s*(?:[\w.\[\]]+\s*,\s*)+")
_IDENTIFIED_BY = re.compile(r"(?i)identified[ \t]+by[ \t]+(['\"])([^'\"\r\n]+)\1")
_CODE_VALUE = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+|[$%{<].*")
_PW_TEMPLATE = re.compile(
    r"(?i)xxx|^your|<.*>|\$\{|\{\{|%\(|changeme|change_me|^(.)\1*$|^\$\w+$|^%\w+%$|\{\w*\}"
    r"|%[sdr]|^\$\(|^(?:/|~/|\./|\.\./|[A-Za-z]:\\)"
)
_PW_PLACEHOLDERS = frozenset(
    """password passwd pass pwd secret changeme change_me changeit test testing example sample
    dummy fake placeholder xxx xxxx none null nil undefined empty default redacted hidden mask
    masked foo bar baz foobar todo fixme str string int bytes bool any optional text required
    true false yes no on off enabled disabled self this args kwargs mypassword yourpassword
    your_password""".split()
)


def _find_passwords(text: str, present: frozenset[str], lowered: str | None) -> list[PiiSpan]:
    spans = []
    if "://" in present:
        for regex in _basic_auth_regexes():
            for m in regex.finditer(text):
                if not _is_pw_placeholder(m.group(1)):
                    spans.append(PiiSpan(*m.span(1), "PASSWORD", m.group(1)))
    if "dentified" in present or "DENTIFIED" in present:
        for m in _IDENTIFIED_BY.finditer(text):
            if not _is_pw_placeholder(m.group(2)):
                spans.append(PiiSpan(*m.span(2), "PASSWORD", m.group(2)))
    if not present.isdisjoint(("auth=(", "auth = (", ".login(", "BasicAuth(")):
        for m in _POSITIONAL_PASSWORD.finditer(text):
            if not _is_pw_placeholder(m.group(3)):
                spans.append(PiiSpan(*m.span(3), "PASSWORD", m.group(3)))
    if "</" in present:
        for m in _XML_ELEMENT.finditer(text):
            if _is_password_name(m.group(1)) and not _is_pw_placeholder(m.group(2)):
                spans.append(PiiSpan(*m.span(2), "PASSWORD", m.group(2)))
    done = 0
    for hit in _password_words(text, lowered):
        if hit < done:
            continue  # still inside the name handled last
        name_start = hit
        while name_start > hit - 64 and name_start and text[name_start - 1] in _NAME_CHARS:
            name_start -= 1
        name_end = _NAME_RIGHT.match(text, hit).end()
        m = _PW_AFTER.match(text, name_end)
        if m is None or not _is_password_name(text[name_start:name_end]):
            done = name_end
            continue
        # The value is never a name, even when rejected: in `password pass account x` (netrc)
        # the second `pass` is a placeholder value, not a key whose value is `account`.
        done = m.end()
        span = _password_after(text, name_start, name_end, m)
        if span is not None:
            spans.append(span)
    return spans


def _password_words(text: str, lowered: str | None) -> list[int]:
    """Where `_PW_KEYWORD` matches, in order. No two of its matches can overlap, so these are
    the positions of every pass/pwd written in one of its cases; `lowered` is the text
    lowercased, if that kept its length."""
    if lowered is None:
        return [m.start() for m in _PW_KEYWORD.finditer(text)]
    return [
        m.start()
        for m in _PW_KEYWORD_LOWER.finditer(lowered)
        if text[m.start() : m.end()] in _PW_KEYWORDS
    ]


def _password_after(text: str, name_start: int, name_end: int, m: re.Match) -> PiiSpan | None:
    """The password a name is given by the `_PW_AFTER` match `m`, unless context or value say
    it is code, prose or a placeholder."""
    name = text[name_start:name_end]
    before = text[_line_start(text, name_start) : name_start]
    op = m.group("op")
    quoted_name = m.group("q") is not None
    flag = name.startswith("-")
    # A flag or a `;Password=...;` pair may sit inside a string; any other name must be quoted
    # on both sides or on neither, or it is the end of prose like "Password: ".
    embedded = op == "=" and before.rstrip().endswith((";", "?", "&"))
    if not (flag or embedded) and quoted_name != (before[-1:] in ("'", '"', "`")):
        return None
    if flag and quoted_name and op in " \t":
        return None  # "the `--password` flag": a flag named in prose, not given a value
    if _TUPLE_TARGETS.fullmatch(before):
        return None  # `user, password = "u", "p"`: the first value is not the password
    if m.group("vq") is not None:
        start, end = m.span("qval")
        value = m.group("qval")
        if op in " \t" and not (flag or name.isupper() or before.rstrip().endswith("define")):
            return None  # `--password "x"`, SQL `PASSWORD 'x'`, `#define PW "x"`, not prose
        if op == "(" and (quoted_name or not _is_setter(name)):
            return None  # `setPassword("x")`, not `splitpasswd("user:pw")`
        if op == "," and not (quoted_name and _PAIR_CALL.search(before[:-1])):
            return None  # `props.put("password", "x")`, not `pbkdf2(b"password", b"salt")`
        if any(c.isspace() for c in value):
            return None
    else:
        start, end = m.span("val")
        value = m.group("val")
        if not _unquoted_is_literal(text, name, before, op, value, end):
            return None
    if _is_pw_placeholder(value, name):
        return None
    return PiiSpan(start, end, "PASSWORD", value)


def _is_setter(name: str) -> bool:
    return name.rsplit(".", 1)[-1].replace("_", "").lower() in _PW_SETTERS


def _is_password_name(name: str) -> bool:
    """Whether a variable, key or flag name holds a password.

    >>> [_is_password_name(n) for n in ("DB_PASSWORD", "smtpPass", "bypass", "password_hash")]
    [True, True, False, False]
    """
    parts = [p.lower() for p in _NAME_PARTS.findall(name)]
    while parts and (parts[-1].isdigit() or parts[-1] in _PW_QUALIFIERS):
        parts.pop()
    if not parts:
        return False
    last = parts[-1]
    return last.endswith(("password", "passwd", "passphrase")) or last in _PW_LAST_PARTS


def _unquoted_is_literal(text: str, name: str, before: str, op: str, value: str, end: int) -> bool:
    """Whether an unquoted value is a literal (config line, CLI flag, connection string) rather
    than code (`password=get_pw()`, `pwd = self.pwd`, `password: str`)."""
    nxt = text[end : end + 1]
    if (nxt and nxt in "([{.") or _CODE_VALUE.fullmatch(value):
        return False
    if name.startswith("-"):
        # `--password hunter2` gives a value; in "the --password flag" the next word is prose.
        return op == "=" or op in " \t" and not value.rstrip(".").isalpha()
    if op in " \t" and name == "password" and _NETRC.search(before):
        return True  # `machine host login me password hunter2`
    if op not in ("=", ":"):
        return False
    stripped = before.strip()
    config_line = stripped in _CONFIG_LINE_PREFIXES
    # `docker run -e DB_PASSWORD=x`, `--build-arg PASS=x`: a flag's NAME=VALUE argument.
    last_word = stripped.rsplit(None, 1)[-1] if stripped else ""
    flag_argument = op == "=" and last_word in ("-e", "--env", "--build-arg")
    if not (config_line or flag_argument or stripped.endswith((";", "?", "&"))):
        return False
    if nxt == ",":
        return False  # a keyword argument in a multi-line call
    # `PGPASSWORD=x psql ...` may go on; `password: The password.` (prose) may not.
    spaced = text[end - len(value) - 1] in " \t"
    if config_line and not (op == "=" and not spaced):
        rest = text[end : _line_end(text, end)].strip()
        if rest and not rest.startswith(("#", ";", "//")):
            return False  # `password: The password to use.` is prose in a docstring
    # `password = pw` is code; `password = hunter2` in an INI file has a digit or a symbol.
    return not (op == "=" and spaced and value.isidentifier() and not any(map(str.isdigit, value)))


def _is_pw_placeholder(value: str, name: str = "") -> bool:
    """Whether a password value is empty, masked, templated, a prompt or a stock word.

    >>> [_is_pw_placeholder(v) for v in ("hunter2", "***", "${DB_PASS}", "changeme", "Password: ")]
    [False, True, True, True, True]
    """
    lowered = value.lower()
    if len(value) < 3 or lowered in _PW_PLACEHOLDERS or lowered == name.lower().strip("-$"):
        return True
    if not any(c.isalnum() for c in value) or value.rstrip().endswith((":", "?")):
        return True
    if lowered.startswith(("example", "dummy", "fake", "placeholder", "redacted")):
        return True
    return _PW_TEMPLATE.search(value) is not None
