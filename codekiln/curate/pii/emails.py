"""EMAIL: `local@domain.tld` where the TLD is any two letters, a known generic TLD, or any
alphabetic TLD on a hyphenated domain.

So code such as `x@self.weight`, `a@b.T` and `icon@2x.png` (file extensions and `@2x` names are
refused too) is not read as mail, at the cost of missing `ana@studio.photography`-style
addresses on unhyphenated new gTLDs. Placeholder domains are not personal and stay:
example.com/.org/.net and their subdomains, the reserved TLDs .example, .invalid, .test,
.localhost and .local, and yourdomain/yourcompany.com. A login in a URL (`ssh://git@host`,
`user:pw@host`) and an scp-style remote (`git@github.com:org/x`) name an account on a host, not
a mailbox, so they are not emails (the URL's password, if any, is a PASSWORD); `mailto:` and
`Email:` labels are fine. Real maintainers' addresses in headers (`Author: ... <...>`) are PII
and go.
"""

from __future__ import annotations

import re

from codekiln.curate.pii.spans import PiiSpan

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


def find_emails(text: str) -> list[PiiSpan]:
    """EMAIL spans in `text`, in order.

    >>> find_emails("mail bob@corp.io, not x@self.weight")
    [PiiSpan(start=5, end=16, kind='EMAIL', value='bob@corp.io')]
    """
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
