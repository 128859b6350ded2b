"""Licenses: read them from LICENSE files, SPDX headers and header notices, and decide which
code may be kept.

A repository's license comes from the license files at its root (`repo_license`, in `texts`); a
single file may also declare its own with an `SPDX-License-Identifier:` header (`spdx_header`,
in `spdx`) or a license notice in its leading comment (`header_notice`, in `notices`). All give
SPDX expressions such as `Apache-2.0 OR MIT`, which `license_allowed` checks against a policy:
`"permissive"` (StarCoder's choice), `"any"`, or an explicit list of SPDX ids.
"""

from codekiln.curate.licenses.notices import header_notice
from codekiln.curate.licenses.spdx import (
    PERMISSIVE,
    license_allowed,
    normalize_expression,
    parse_policy,
    spdx_header,
)
from codekiln.curate.licenses.texts import detect_license_text, is_license_file, repo_license

__all__ = [
    "PERMISSIVE",
    "detect_license_text",
    "header_notice",
    "is_license_file",
    "license_allowed",
    "normalize_expression",
    "parse_policy",
    "repo_license",
    "spdx_header",
]
