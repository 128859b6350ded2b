"""PASSWORD: the value given to a name that ends in password, passwd, passphrase or the part
`pass`/`pwd` (`DB_PASSWORD`, `smtpPass`, `db_pwd_prod`; not `bypass`, `password_hash`,
`PASSWORD_MIN_LENGTH`, `HTTPPasswordMgr`).

The value counts as a quoted string after `=`, `:`, `:=`, `=>`, `==`, a setter call
(`setPassword("x")`), a settings call (`put("password", "x")`) or a SQL/`#define` space;
unquoted after a CLI flag (`--password=xyz`, `--password xyz`), on a config line
(`DB_PASSWORD=abc123`, `password: s3cr3t`, `ENV`, `export`), as a flag's argument
(`-e DB_PASSWORD=x`), in netrc, or in a connection or query string (`;Password=abc;`,
`&password=x`). Also: the password in a URL (`scheme://user:pw@host`, by detect-secrets'
BasicAuth pattern); `IDENTIFIED BY '...'`; and the second of two strings given to `auth=(...)`,
`.login(...)` or `BasicAuth(...)`.

Values that are code (`get_password()`, `self.pw`, `os.environ[...]`, the name itself as in
`password=password`, `None`, type names, a bare identifier after a spaced `=`), empty values,
values with whitespace (prose; passphrases are missed), paths, placeholders (`***`,
`<password>`, `${PASSWORD}`, `%(pw)s`, `%s`, `changeme`, `password`, `secret`, `test`, yes/no,
...) and prompts (`"Password: "`) are not passwords. A flag is given a value, not named in
prose: a value after a space must hold a digit or a symbol (`--password hunter2`, not "the
--password flag", so a one-word password such as `--requirepass letmein` is missed), and a flag
quoted by itself (`` the `--password` flag ``, `'--password' option`) takes none. A name quoted
on one side only is the end of prose (`input("password: ")`) and is skipped, as is the first
target of a tuple assignment (`user, password = "u", "p"`).

ASCII text is lowercased once, so that the password-name scan needs one literal-led pattern
instead of a case alternation.
"""

from __future__ import annotations

import re
from functools import cache

from codekiln.curate.pii.spans import (
    CONFIG_LINE_PREFIXES,
    NAME_PARTS,
    PiiSpan,
    end_of_line,
    start_of_line,
)

# Literals that gate this module's rules; found in the package's one pass over the text.
LITERALS = ("</", "://", "dentified", "DENTIFIED", "auth=(", "auth = (", ".login(", "BasicAuth(")

_PW_KEYWORD = re.compile(r"pass|pwd|PASS|Pass|PWD|Pwd")
_PW_KEYWORDS = frozenset(("pass", "pwd", "PASS", "Pass", "PWD", "Pwd"))
# On lowercased text one literal `p` leads the pattern, which sre scans for far faster than the
# class [pP] that leads `_PW_KEYWORD`.
_PW_KEYWORD_LOWER = re.compile(r"p(?:ass|wd)")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.$-")
_NAME_RIGHT = re.compile(r"[\w.$-]*")
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


@cache
def _basic_auth_regexes() -> tuple[re.Pattern, ...]:
    from detect_secrets.plugins.basic_auth import BasicAuthDetector

    return tuple(BasicAuthDetector.denylist)


def find_passwords(text: str, present: frozenset[str], lowered: str | None) -> list[PiiSpan]:
    """PASSWORD spans in `text`, which holds the gating literals `present`; `lowered` is the
    text lowercased, if that kept its length."""
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
    before = text[start_of_line(text, name_start) : name_start]
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
    parts = [p.lower() for p in NAME_PARTS.findall(name)]
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
    config_line = stripped in CONFIG_LINE_PREFIXES
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
        rest = text[end : end_of_line(text, end)].strip()
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
