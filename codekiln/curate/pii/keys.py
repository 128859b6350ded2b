"""KEY: API keys, tokens and private keys.

The regex detectors of detect-secrets (AWS, GitHub, GitLab, Slack, Stripe, SendGrid, Twilio,
JWT, PyPI, npm, OpenAI, Azure, Square, Discord, Telegram, Mailchimp, Artifactory, IBM, Cloudant,
SoftLayer and private-key blocks), used through their `denylist` regexes on the whole text
rather than detect-secrets' per-line scan. A private key is redacted from the end of its BEGIN
line to the start of its END line, and only when that body holds key material, so code that
merely names the marker is left alone.

Google API keys (`AIza...`), `Bearer` tokens, and values assigned to names containing key,
secret, token, api, auth or credential (quoted; unquoted on config lines; XML elements;
`#define`) are KEYs when they look random: at least 20 characters of a base64 or hex alphabet,
letters and digits mixed, Shannon entropy above a length-dependent floor, and not made mostly of
words. A name whose parts say it is something else (`sort_key`, `api_key_id`, `token_type`,
`auth_url`, `author`) does not count, and a value must sit next to its name:
`{stripe: "<key>"}` is missed.

Hashes (32, 40, 56, 64, 96 or 128 hex digits after hash, sha, checksum, digest, md5, etag,
commit, ... on the line), UUIDs and placeholders (`xxxx`, `your_...`, `<...>`, `${...}`,
`changeme`, example, dummy, fake, test, sample, runs of one character, `abcde`/`12345`
sequences) are never KEYs, whichever detector found them.

Files without a key-like word (about half of all source files) skip the scans for values
assigned to such names; in the others, those scans read only the lines that hold such a word,
as IBM Cloud IAM's pattern reads only the lines that hold a value of its length.
detect-secrets (which pulls in `requests`) is imported on first use.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache

from codekiln.curate.pii.spans import (
    CONFIG_LINE_PREFIXES,
    NAME_PARTS,
    PiiSpan,
    finditer_lines,
    first_per_line,
    lines_holding,
    start_of_line,
)

# (module, class, literals, gate): a detector's regexes run only when the text holds one of its
# literals (None: no such condition) and its gate regex, if any, matches; every match of the
# detector satisfies both, so skipping is safe. All literals are looked for in one Aho-Corasick
# pass: one `in` test per literal would cost a scan of the text each. Detectors whose only
# literals are too common for that (`A`, `.`, `:`) get a gate regex that starts with a literal,
# which sre finds with a fast search instead of trying its leading class at every character.
# Left out: HighEntropyString and Keyword (replaced by the name-aware rule below), IPPublic
# (replaced by the IP rules) and BasicAuth, which `find_passwords` runs as a PASSWORD rule.
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
# Literals that gate this module's own rules; found in the same pass over the text.
LITERALS = ("AIza", "earer", "define", "</")
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
def detectors() -> tuple[_Detector, ...]:
    """detect-secrets' detectors, built once per process on first use."""
    import importlib

    built = []
    for module, name, literals, gate in _DETECT_SECRETS_PLUGINS:
        try:
            cls = getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), name)
        except (ImportError, AttributeError):
            continue  # an older detect-secrets without this detector
        gate_re = re.compile(gate) if gate else None
        built.append(_Detector(name, cls(), frozenset(literals) if literals else None, gate_re))
    return tuple(built)


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


def find_keys(text: str, present: frozenset[str], lowered: str | None) -> list[PiiSpan]:
    """KEY spans in `text`, which holds the gating literals `present`; `lowered` is the text
    lowercased, if that kept its length."""
    spans: list[PiiSpan] = []
    for det in detectors():
        if det.literals is not None and det.literals.isdisjoint(present):
            continue
        if det.gate is not None and not det.gate.search(text):
            continue
        if det.name == "PrivateKeyDetector":
            spans += _private_keys(text)
            continue
        for regex in det.plugin.denylist:
            if det.name in _LINE_LOCAL:
                matches = finditer_lines(regex, text, _gate_lines(det.gate, text, lowered))
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
        quoted = finditer_lines(_QUOTED_VALUE, text, lines)
        unquoted = finditer_lines(_UNQUOTED_VALUE, text, lines)
    spans += _generic_keys(text, quoted, group=2, named=True)
    spans += _generic_keys(text, unquoted, group=2, named=True)
    if "</" in present:
        spans += _generic_keys(text, _XML_VALUE.finditer(text), group=2, named=True)
    if "define" in present:
        spans += _generic_keys(text, _DEFINE_VALUE.finditer(text), group=2, named=True)
    return spans


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
        return lines_holding(text, [m.start() for m in gate.finditer(text)])
    mapped = text.encode("ascii").translate(_IAM_RUN_MAP)
    return lines_holding(text, first_per_line(mapped, _IAM_RUN, text))


def _key_word_lines(lowered: str) -> list[tuple[int, int]]:
    """The lines of a lowercased text that hold one of `_KEY_NAME_WORDS`."""
    positions = []
    for word in _KEY_NAME_WORDS:
        positions += first_per_line(lowered, word, lowered)
    return lines_holding(lowered, positions)


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
            if not _NOT_KEY_PARTS.isdisjoint(p.lower() for p in NAME_PARTS.findall(name)):
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
    line_start = start_of_line(text, op_start)
    regex = _NAME_BEFORE_ANNOTATED if op.group(1) == "=" else _NAME_BEFORE
    found = regex.search(text, max(line_start, op_start - 80), op_start)
    if found is None:
        return None
    if m.re is _UNQUOTED_VALUE and not _starts_config_line(text, found.start(), line_start):
        return None
    return found.group(1)


def _starts_config_line(text: str, name_start: int, line_start: int) -> bool:
    """Whether a name begins its line (after indent, `export`, `set` or a YAML `- `), or follows
    a `;`, `?` or `&` as in connection and query strings: where unquoted values are literals."""
    before = text[line_start:name_start].strip()
    return before in CONFIG_LINE_PREFIXES or before.endswith((";", "?", "&"))


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
        context = text[max(start_of_line(text, start), start - 60) : start]
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
