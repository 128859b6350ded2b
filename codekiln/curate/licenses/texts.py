"""License files: which files hold a repository's license, and which license their text is.

Text detection looks for a few distinctive phrases of each license in a flattened copy of the
text (lowercased, every run of punctuation and whitespace turned into one space), in the fixed
order of `_RULES`; see the comment there for why the order matters.
"""

from __future__ import annotations

import re
from posixpath import basename

from codekiln.curate.licenses.spdx import normalize_expression, spdx_header

_LICENSE_NAME_RE = re.compile(
    r"(?:un)?licen[cs]e|copying"
    r"|(?:(?:un)?licen[cs]e|copying)[-_][a-z0-9][a-z0-9+_-]*(?:\.\d+)*"
    # A dotted suffix only names a license (COPYING.LESSER), never a language (license.py).
    r"|(?:licen[cs]e|copying)\.(?:lesser|library|lib|gpl|lgpl|agpl|mit|apache|apache2|bsd|mpl)"
    r"|[a-z0-9][a-z0-9.+_-]*[-_]licen[cs]e",
)
_DOC_SUFFIX_RE = re.compile(r"\.(?:md|markdown|txt|text|rst|adoc|org|html?)$")


def is_license_file(path: str) -> bool:
    """True when the file name is one that holds a repository's license text.

    >>> [is_license_file(p) for p in ("LICENSE", "sub/COPYING.LESSER", "MIT-LICENSE.txt")]
    [True, True, True]
    >>> is_license_file("src/license.py")
    False
    """
    name = _DOC_SUFFIX_RE.sub("", basename(path.replace("\\", "/")).lower())
    return _LICENSE_NAME_RE.fullmatch(name) is not None


_NON_ALNUM_RE = re.compile(r"[^a-z0-9]+")


def flatten(text: str) -> str:
    """Lowercase, British spelling folded, every run of other characters one space.

    >>> flatten("Licence: (c) 2024,\\n  MIT-style!")
    'license c 2024 mit style'
    """
    return _NON_ALNUM_RE.sub(" ", text.lower().replace("licence", "license")).strip()


_MIT_GRANT = "permission is hereby granted free of charge to any person obtaining a copy"
_MIT_NOTICE = "shall be included in all copies or substantial portions"
_ISC_GRANT = (
    r"permission to use copy modify (?:and or |and )?distribute this software for any purpose "
    r"with or without fee is hereby granted"
)
_ISC_NOTICE = "provided that the above copyright notice and this permission notice appear in all"
_BSD_REDIST = "redistribution and use in source and binary forms with or without modification"
_BSD_SOURCE = "redistributions of source code must retain the above copyright notice"
_BSD_BINARY = "redistributions in binary form must reproduce the above copyright notice"
_BSD_ENDORSE = "used to endorse or promote products derived from this software"
GNU = "GNU"  # stands for the GNU family in _RULES: it needs more than phrases (_gnu_license)

# (SPDX id, phrases that must all be present). The first rule that matches wins, so:
# - PSF, MPL and EPL come first: their texts cite the GNU GPL (CPython's history table, the
#   "Secondary Licenses" of MPL-2.0 and EPL-2.0); CPython's also holds a 0BSD paragraph.
# - The GNU family is decided by which GNU license the text names first (`_gnu_license`),
#   because the GPL names the LGPL ("use the GNU Lesser General Public License instead")
#   and the LGPL-3.0 and AGPL texts name the GPL.
# - NCSA and BSL-1.0 grant rights in MIT-like words, so they precede MIT; X11 is MIT plus
#   the X Consortium clause; MIT-0 is MIT's grant without the notice condition.
# - BSD variants share the redistribution clauses: more specific ones first.
# - 0BSD is ISC's grant without the notice condition.
_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PSF-2.0", ("psf hereby grants licensee",)),
    ("MPL-2.0", (r"mozilla public license (?:version |v )?2 0",)),
    ("EPL-2.0", (r"eclipse public license (?:version |v )?2 0",)),
    ("EPL-1.0", (r"eclipse public license (?:version |v )?1 0",)),
    (GNU, ()),
    ("Apache-2.0", (r"apache license (?:version |v )?2 0",)),
    ("UPL-1.0", ("universal permissive license",)),
    ("NCSA", ("university of illinois ncsa open source license",)),
    ("BSL-1.0", ("boost software license|any person or organization obtaining a copy of the",)),
    ("Unlicense", ("this is free and unencumbered software released into the public domain",)),
    ("CC0-1.0", ("cc0 1 0 universal|associated cc0 with|creativecommons org publicdomain zero",)),
    ("WTFPL", ("do what the fuck you want to public license",)),
    ("Zlib", ("origin of this software must not be misrepresented", "plainly marked as such")),
    (
        "BSD-4-Clause",
        (_BSD_REDIST, _BSD_SOURCE, "all advertising materials mentioning features or use of"),
    ),
    (
        "BSD-3-Clause-Clear",
        (_BSD_REDIST, _BSD_SOURCE, _BSD_ENDORSE, "no express or implied licenses to any party"),
    ),
    ("BSD-3-Clause", (_BSD_REDIST, _BSD_SOURCE, _BSD_BINARY, _BSD_ENDORSE)),
    ("BSD-2-Clause", (_BSD_REDIST, _BSD_SOURCE, _BSD_BINARY)),
    ("X11", (_MIT_GRANT, _MIT_NOTICE, "the name of the x consortium shall not be used")),
    ("MIT", (_MIT_GRANT, _MIT_NOTICE)),
    ("MIT-0", (_MIT_GRANT,)),
    ("ISC", (_ISC_GRANT, _ISC_NOTICE)),
    ("0BSD", (_ISC_GRANT,)),
)
COMPILED_RULES = tuple((name, tuple(map(re.compile, phrases))) for name, phrases in _RULES)

GNU_NAME_RE = re.compile(
    r"\bgnu (?:(?P<agpl>affero general public license|agpl)"
    r"|(?P<lgpl>(?:lesser|library) general public license|lgpl)"
    r"|(?P<gpl>general public license|gpl))(?:\b|(?=v\d))"
)
GNU_VERSION_RE = re.compile(r"(?:\b|(?<=gpl))(?:version|v) ?([1-3])(?: ([01]))?\b")
_GNU_IDS = {
    ("gpl", "1"): "GPL-1.0",
    ("gpl", "2"): "GPL-2.0",
    ("gpl", "3"): "GPL-3.0",
    ("lgpl", "2"): "LGPL-2.0",
    ("lgpl", "2.0"): "LGPL-2.0",
    ("lgpl", "2.1"): "LGPL-2.1",
    ("lgpl", "3"): "LGPL-3.0",
    ("agpl", "3"): "AGPL-3.0",
}


def gnu_id(family: str, major: str, minor: str | None) -> str | None:
    """The SPDX id, without -only or -or-later, of a GNU license ("gpl", "lgpl" or "agpl") at
    a version; a minor version that names no license of its own falls back to the major.

    >>> gnu_id("lgpl", "2", "1"), gnu_id("gpl", "2", "0"), gnu_id("agpl", "1", None)
    ('LGPL-2.1', 'GPL-2.0', None)
    """
    exact = _GNU_IDS.get((family, f"{major}.{minor}" if minor else major))
    return exact or _GNU_IDS.get((family, major))


def _gnu_license(flat: str) -> str | None:
    """GPL / LGPL / AGPL with version and -only or -or-later, from flattened text.

    >>> _gnu_license(flatten("under the GNU Lesser General Public License as published by "
    ...     "the Free Software Foundation; either version 2.1 of the License, or (at your "
    ...     "option) any later version."))
    'LGPL-2.1-or-later'
    """
    name = GNU_NAME_RE.search(flat)
    if name is None:
        return None
    family = name.lastgroup
    version = GNU_VERSION_RE.search(flat, name.end(), name.end() + 300)
    if version is None:
        return None
    major, minor = version.groups()
    base = gnu_id(family, major, minor)
    if base is None:
        return None
    # The full texts end with a sample notice ("How to Apply These Terms") that says "or any
    # later version"; only a notice before the end of the terms speaks for the project.
    terms = flat.split("end of terms and conditions", 1)[0]
    later = rf"version {major}(?: \d)? of the license or at your option any later version"
    return f"{base}-or-later" if re.search(later, terms) else f"{base}-only"


def detect_license_text(text: str) -> str | None:
    """SPDX id of a LICENSE / COPYING file's text, or None when it is not recognised.

    A file that carries an SPDX tag is taken at its word.

    >>> detect_license_text("Permission to use, copy, modify, and/or distribute this software "
    ...     "for any purpose with or without fee is hereby granted.")
    '0BSD'
    """
    tagged = spdx_header(text)
    if tagged:
        return tagged
    flat = flatten(text)
    for name, phrases in COMPILED_RULES:
        if name == GNU:
            found = _gnu_license(flat)
            if found:
                return found
        elif all(phrase.search(flat) for phrase in phrases):
            return name
    return None


def repo_license(license_files: dict[str, str]) -> str | None:
    """The license expression of a repository, from the texts of its root license files.

    Several recognised licenses mean a choice (dual licensing), joined with OR in sorted
    order; unrecognised files add nothing. LGPL-3.0 projects ship the GPL-3.0 text next to it
    (the LGPL-3.0 is a set of additional permissions on the GPL), so that pair counts as LGPL.

    >>> repo_license({"LICENSE-MIT": "SPDX-License-Identifier: MIT",
    ...               "LICENSE-APACHE": "Apache License, Version 2.0"})
    'Apache-2.0 OR MIT'
    """
    found = {detect_license_text(text) for _, text in sorted(license_files.items())}
    found.discard(None)
    if any(name.startswith("LGPL-3.0") for name in found):
        found -= {"GPL-3.0-only", "GPL-3.0-or-later"}
    if len(found) <= 1:
        return next(iter(found), None)
    return normalize_expression(" OR ".join(f"({e})" for e in sorted(found)))
