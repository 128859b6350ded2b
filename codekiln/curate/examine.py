"""The fate of one input: every per-input step of the curate stage, in order.

`Examiner.examine` turns a `RawInput` into a ledger row and, when the input survives every
step, a candidate record for deduplication. The order of the steps decides which one reason
an input gets when several apply; `REASONS` lists them in that order.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any

from codekiln.curate.config import CurateConfig
from codekiln.curate.filters import FILTERS, Doc, build_filters
from codekiln.curate.languages import AMBIGUOUS, LANGUAGES, detect_language, language_from_path
from codekiln.curate.licenses import header_notice, license_allowed, spdx_header
from codekiln.curate.sources import RawInput

# Reasons in the order the steps apply them; the report's funnel follows this order. Sources
# of issues and commits add their own reasons (issue_*, commit_*) at the "source" step.
REASONS = (
    "unreadable",
    "malformed",
    "symlink",
    "special_file",
    "submodule",
    "opted_out",
    "vendored",
    "lock_file",
    "too_large",
    "binary",
    "encoding",
    "license",
    "unknown_language",
    "language_not_allowed",
    "empty",
    *(step.reason for step in FILTERS),  # the quality filters, in the order they run
    "contaminated",
    "exact_duplicate",
    "near_duplicate",
)

_STATE_REASON = {
    "unreadable": "unreadable",
    "malformed": "malformed",
    "symlink": "symlink",
    "special": "special_file",
    "submodule": "submodule",
}

_LANG_BY_LOWER = {lang.lower(): lang for lang in LANGUAGES}
_MAX_STARS = 10**12 - 1


def record_id(source: str, repo: str, path: str, key: str) -> str:
    """A stable id for an input: the same source, repository, path and key give the same id.

    >>> record_id("stdlib", "stdlib/json", "json/decoder.py", "")
    'b9bc70ffb924ced69877bdd115bbcd49'
    """
    text = "\0".join((source, repo, path, key)).encode("utf-8", "surrogateescape")
    return hashlib.blake2b(text, digest_size=16).hexdigest()


# Folders whose files are more likely copies than originals: a duplicate outside them
# survives one inside them, and one in an example or test folder survives a contrib copy.
_EXAMPLE_DIRS = frozenset(
    "example examples sample samples demo demos tutorial tutorials test tests testing "
    "testdata test_data fixtures __tests__".split()
)
_IMPORTED_DIRS = frozenset(
    "contrib vendor vendors vendored _vendor third_party third-party thirdparty 3rdparty "
    "3rd_party external externals extern deps node_modules bower_components "
    "site-packages".split()
)


def path_tier(path: str) -> int:
    """0 for a core file, 1 inside an example or test folder, 2 inside a contrib or vendor-like
    folder (the highest tier on the path wins; the file name does not count).

    >>> path_tier("src/zlib.c"), path_tier("examples/zlib.c"), path_tier("Contrib/x/tests/a.c")
    (0, 1, 2)
    """
    folders = set(path.lower().split("/")[:-1])
    if folders & _IMPORTED_DIRS:
        return 2
    return 1 if folders & _EXAMPLE_DIRS else 0


def survivor_rank(permissive: bool, stars: int | None, repo: str, path: str, id: str) -> str:
    """A string whose order is the order in which duplicates survive: permissive license
    first, then the core file over a copy in an example, test, contrib or vendor-like folder
    (`path_tier`), then most stars, then repository and path order (and id, so ranks are
    unique).

    >>> survivor_rank(True, 5, "a/b", "x.py", "1") < survivor_rank(False, 900, "a/a", "x.py", "2")
    True
    >>> core = survivor_rank(True, 0, "a/b", "src/x.c", "1")
    >>> core < survivor_rank(True, 9, "a/a", "contrib/x.c", "2")
    True
    """
    inverted = _MAX_STARS - min(max(stars or 0, 0), _MAX_STARS)
    tier = path_tier(path)
    return f"{0 if permissive else 1}{tier}{inverted:012d}\0{repo}\0{path}\0{id}"


@functools.lru_cache(maxsize=4)
def _decontaminator(extra_files: tuple[str, ...]):
    from codekiln.curate.decontam import Decontaminator

    return Decontaminator.default(extra_files)


def preload(config: CurateConfig) -> None:
    """Load now what each worker's first examine would load (detect-secrets and the PII and
    benchmark automatons, about 0.3 CPU-seconds), so that workers forked afterwards share it."""
    if config.pii:
        from codekiln.curate.pii import find_pii

        find_pii("")
    if config.decontaminate:
        _decontaminator(tuple(config.benchmark_files)).find("")


def _table_lang(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return _LANG_BY_LOWER.get(value.lower())


def _owner(repo: str) -> str:
    return repo.split("/", 1)[0] if "/" in repo else repo


# A file that is UTF-8 but for a few stray bytes (a Latin-1 "\xa9" in a copyright line) is
# kept, its stray bytes read as cp1252. Legacy double-byte encodings (Shift-JIS, GBK) and
# binary data have stray bytes in long runs or in bulk, and stay dropped.
MAX_STRAY_FRACTION = 0.02
MAX_STRAY_RUN = 3
_STRAY_RE = re.compile("[\udc80-\udcff]+")
# cp1252 leaves five bytes undefined; a file with one of them is read as Latin-1 instead.
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")
_CP1252 = {
    0xDC00 + b: bytes([b]).decode("cp1252")
    for b in range(0x80, 0x100)
    if b not in _CP1252_UNDEFINED
}
_LATIN1 = {0xDC00 + b: chr(b) for b in range(0x80, 0x100)}


def decode_mostly_utf8(raw: bytes) -> tuple[str | None, str | None]:
    """Text and codec of bytes that are UTF-8 but for a few stray bytes, else (None, None).

    Valid UTF-8 sequences keep their meaning; each stray byte is read as cp1252 (Latin-1
    when one of cp1252's five undefined bytes is among them).

    >>> decode_mostly_utf8(b"/* Copyright \\xa9 2024 Contoso. All rights reserved. */\\n")
    ('/* Copyright © 2024 Contoso. All rights reserved. */\\n', 'cp1252')
    >>> decode_mostly_utf8(bytes(range(128, 256)))
    (None, None)
    """
    text = raw.decode("utf-8", "surrogateescape")
    runs = _STRAY_RE.findall(text)
    stray = sum(map(len, runs))
    if stray > MAX_STRAY_FRACTION * len(raw) or max(map(len, runs), default=0) > MAX_STRAY_RUN:
        return None, None
    if any(ord(c) - 0xDC00 in _CP1252_UNDEFINED for run in runs for c in run):
        return text.translate(_LATIN1), "latin-1"
    return text.translate(_CP1252), "cp1252"


def _decode_utf16(raw: bytes) -> str | None:
    """Text of a file with a UTF-16 byte-order mark, or None when it is not UTF-16 text."""
    try:
        text = raw.decode("utf-16")
    except UnicodeDecodeError:
        return None
    return None if "\0" in text else text


class Examiner:
    """Decides the fate of one input; built once per task on the worker."""

    def __init__(self, config: CurateConfig) -> None:
        self.config = config
        self.filters = build_filters(config)
        self.vendored = frozenset(config.vendored_dirs)
        self.locks = frozenset(config.lock_files)
        self.allowed = frozenset(config.languages) if config.languages else None
        self.opt_out = frozenset(name.strip().lower() for name in config.opt_out if name.strip())
        self.policy = (
            config.licenses if isinstance(config.licenses, str) else tuple(config.licenses)
        )
        self.decontaminator = (
            _decontaminator(tuple(config.benchmark_files)) if config.decontaminate else None
        )

    def path_reason(self, item: RawInput) -> str | None:
        repo = item.repo.lower()
        if self.opt_out and (repo in self.opt_out or _owner(repo) in self.opt_out):
            return "opted_out"
        if item.kind != "file":
            return None
        parts = item.path.split("/")
        if self.vendored.intersection(parts[:-1]):
            return "vendored"
        if parts[-1] in self.locks:
            return "lock_file"
        return None

    def examine(self, item: RawInput) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """A ledger row for the input, and its candidate record when it survives."""
        row: dict[str, Any] = {
            "id": record_id(item.source, item.repo, item.path, item.key),
            "source": item.source,
            "repo": item.repo,
            "path": item.path,
            "lang": None,
            "kind": item.kind,
            "size": item.size,
            "sha256": None,
            "license": item.license,
            "status": "dropped",
            "reason": None,
            "detail": None,
            "duplicate_of": None,
            "pii": None,
        }
        by_name = language_from_path(item.path)
        row["lang"] = _table_lang(item.lang) or (None if by_name == AMBIGUOUS else by_name)
        reason = (
            _STATE_REASON.get(item.state)
            or item.reason
            or self.path_reason(item)
            or ("too_large" if item.size > self.config.max_file_bytes else None)
        )
        if reason is not None:
            row["reason"] = reason
            return row, None
        content, reason = self._decode(item, row)
        if reason is not None:
            row["reason"] = reason
            return row, None
        if item.kind == "file":
            row["license"] = spdx_header(content) or header_notice(content) or item.license
        if not license_allowed(row["license"], self.policy):
            row["reason"] = "license"
            row["detail"] = row["license"]
            return row, None

        lang = _table_lang(item.lang)
        if item.kind == "file" and item.path.endswith(".ipynb"):
            content, lang, reason = self._notebook(content)
            row["kind"] = "notebook"
        elif item.kind == "file":
            lang = lang or detect_language(item.path, content)
        elif item.kind == "commit":
            lang = None if by_name == AMBIGUOUS else by_name
        row["lang"] = lang
        # Statistics are computed once: the filters use them, and so does the candidate record
        # unless PII redaction changes the text.
        doc = Doc(item.path, lang, content)
        if reason is None:
            reason = self._content_reason(row["kind"], doc)
        if reason is not None:
            row["reason"] = reason
            return row, None

        if self.decontaminator is not None:
            task_id = self.decontaminator.find(content)
            if task_id is not None:
                row["reason"] = "contaminated"
                row["detail"] = task_id
                return row, None
        if self.config.pii:
            from codekiln.curate.pii import redact_pii

            content, counts = redact_pii(content)
            if counts:
                row["pii"] = json.dumps(dict(sorted(counts.items())), separators=(",", ":"))

        encoded = content.encode("utf-8")
        row["status"] = "kept"
        stats = doc if content is doc.content else Doc(item.path, lang, content)
        candidate = {
            "id": row["id"],
            "content": content,
            "repo": item.repo,
            "path": item.path,
            "lang": lang,
            "license": row["license"],
            "stars": item.stars,
            "kind": row["kind"],
            "source": item.source,
            "size": len(encoded),
            "max_line_length": stats.max_line_length,
            "avg_line_length": stats.avg_line_length,
            "alphanum_fraction": stats.alphanum_fraction,
            "dedup_hash": hashlib.sha256(encoded).hexdigest(),
            "rank": survivor_rank(
                license_allowed(row["license"], "permissive"),
                item.stars,
                item.repo,
                item.path,
                row["id"],
            ),
        }
        return row, candidate

    def _decode(self, item: RawInput, row: dict[str, Any]) -> tuple[str, str | None]:
        if item.data is not None:
            raw = item.data
            row["sha256"] = hashlib.sha256(raw).hexdigest()
            if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                text = _decode_utf16(raw)
                if text is not None:
                    row["detail"] = "decoded:utf-16"
                    return text, None
            if b"\0" in raw:
                return "", "binary"
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                return raw.decode("utf-8"), None
            except UnicodeDecodeError:
                pass
            text, codec = decode_mostly_utf8(raw)
            if text is None:
                return "", "encoding"
            row["detail"] = f"decoded:{codec}"
            return text, None
        content = item.text or ""
        try:
            encoded = content.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates from a JSON or Parquet table
            return "", "encoding"
        row["sha256"] = hashlib.sha256(encoded).hexdigest()
        if "\0" in content:
            return "", "binary"
        return content.removeprefix("\ufeff"), None

    def _notebook(self, raw: str) -> tuple[str, str | None, str | None]:
        from codekiln.curate.notebooks import (
            notebook_language,
            notebook_script,
            notebook_structured,
            parse_notebook,
        )

        try:
            notebook = parse_notebook(raw)
        except ValueError:
            return raw, "Jupyter Notebook", "malformed"
        if self.config.notebook_format == "script":
            text, lang = notebook_script(notebook), notebook_language(notebook)
        else:
            text, lang = notebook_structured(notebook), "Jupyter Notebook"
        if text is None:
            return raw, lang, "empty"
        return text, lang, None

    def _content_reason(self, kind: str, doc: Doc) -> str | None:
        if kind in ("file", "notebook"):
            if doc.lang is None:
                return "unknown_language"
            if self.allowed is not None and doc.lang not in self.allowed:
                return "language_not_allowed"
        if not doc.content.strip():
            return "empty"
        if kind == "file":
            # The quality filters are made for source files; issues, commits and notebooks
            # have filters of their own in their sources.
            for step in self.filters:
                reason = step.filter(doc)
                if reason is not None:
                    return reason
        return None
