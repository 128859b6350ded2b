import sysconfig
from pathlib import Path

import pytest

from codekiln.curate.licenses import (
    PERMISSIVE,
    detect_license_text,
    header_notice,
    is_license_file,
    license_allowed,
    normalize_expression,
    parse_policy,
    repo_license,
    spdx_header,
)
from codekiln.errors import UserError

# Short license files: a copyright line and the sentences that set each license apart.
MIT = """MIT License

Copyright (c) 2023 Example Authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction.

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND.
"""

MIT_0 = """Copyright 2023 Example Authors

Permission is hereby granted, free of charge, to any person obtaining a copy of this
software and associated documentation files (the "Software"), to deal in the Software
without restriction, subject to no conditions at all.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND.
"""

X11 = (
    MIT
    + """
Except as contained in this notice, the name of the X Consortium shall not be used in
advertising or otherwise to promote the sale, use or other dealings in this Software.
"""
)

APACHE = """
                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/

   TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION
"""

APACHE_NOTICE = """Copyright 2023 Example Authors

Licensed under the Apache License, Version 2.0 (the "License"); you may not use this
file except in compliance with the License.
"""

BSD_2 = """Copyright (c) 2023, Example Authors
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice, this
   list of conditions and the following disclaimer.

2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.
"""

BSD_3 = (
    BSD_2
    + """
3. Neither the name of the copyright holder nor the names of its
   contributors may be used to endorse or promote products derived from
   this software without specific prior written permission.
"""
)

ISC = """ISC License

Copyright (c) 2023, Example Authors

Permission to use, copy, modify, and/or distribute this software for any
purpose with or without fee is hereby granted, provided that the above
copyright notice and this permission notice appear in all copies.
"""

ZERO_BSD = """Copyright (C) 2023 by Example Authors

Permission to use, copy, modify, and/or distribute this software for any
purpose with or without fee is hereby granted.

THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES.
"""

# The MPL names the GNU licenses as "Secondary Licenses": it must not read as GPL.
MPL = """Mozilla Public License Version 2.0
==================================

1.12. "Secondary License"
    means either the GNU General Public License, Version 2.0, the GNU Lesser
    General Public License, Version 2.1, the GNU Affero General Public
    License, Version 3.0, or any later versions of those licenses.
"""

MPL_NOTICE = """This Source Code Form is subject to the terms of the Mozilla Public
License, v. 2.0. If a copy of the MPL was not distributed with this file, You can
obtain one at https://mozilla.org/MPL/2.0/.
"""

UNLICENSE = """This is free and unencumbered software released into the public domain.

Anyone is free to copy, modify, publish, use, compile, sell, or distribute this
software, either in source code form or as a compiled binary, for any purpose.
"""

CC0 = """Creative Commons Legal Code

CC0 1.0 Universal

    CREATIVE COMMONS CORPORATION IS NOT A LAW FIRM AND DOES NOT PROVIDE
    LEGAL SERVICES.
"""

# Full GNU texts end with a sample notice that says "or any later version": that sample
# must not turn the license into -or-later. They also name the LGPL ("use the GNU Lesser
# General Public License instead").
GPL_2_TEXT = """                    GNU GENERAL PUBLIC LICENSE
                       Version 2, June 1991

 Copyright (C) 1989, 1991 Free Software Foundation, Inc.

(Some other Free Software Foundation software is covered by
the GNU Lesser General Public License instead.)

                     END OF TERMS AND CONDITIONS

            How to Apply These Terms to Your New Programs

    This program is free software; you can redistribute it and/or modify
    it under the terms of the GNU General Public License as published by
    the Free Software Foundation; either version 2 of the License, or
    (at your option) any later version.
"""

GPL_2_NOTICE = """Copyright (C) 2023 Example Authors

This program is free software; you can redistribute it and/or modify it under the terms
of the GNU General Public License as published by the Free Software Foundation; either
version 2 of the License, or (at your option) any later version.
"""

GPL_3_TEXT = """                    GNU GENERAL PUBLIC LICENSE
                       Version 3, 29 June 2007

 Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>

  13. Use with the GNU Affero General Public License.

                     END OF TERMS AND CONDITIONS

    This program is free software: you can redistribute it and/or modify
    it under the terms of the GNU General Public License as published by
    the Free Software Foundation, either version 3 of the License, or
    (at your option) any later version.

library, you may consider it more useful to permit linking proprietary applications with
the library.  If this is what you want to do, use the GNU Lesser General
Public License instead of this License.
"""

GPL_3_NOTICE = """This program is free software: you can redistribute it and/or modify
it under the terms of the GNU General Public License as published by
the Free Software Foundation, either version 3 of the License, or
(at your option) any later version.
"""

LGPL_21_TEXT = """                  GNU LESSER GENERAL PUBLIC LICENSE
                       Version 2.1, February 1999

 Copyright (C) 1991, 1999 Free Software Foundation, Inc.

                     END OF TERMS AND CONDITIONS

    This library is free software; you can redistribute it and/or
    modify it under the terms of the GNU Lesser General Public
    License as published by the Free Software Foundation; either
    version 2.1 of the License, or (at your option) any later version.
"""

LGPL_21_NOTICE = """This library is free software; you can redistribute it and/or modify it under
the terms of the GNU Lesser General Public License as published by the Free Software
Foundation; either version 2.1 of the License, or (at your option) any later version.
"""

LGPL_3_TEXT = """                   GNU LESSER GENERAL PUBLIC LICENSE
                       Version 3, 29 June 2007

  This version of the GNU Lesser General Public License incorporates
the terms and conditions of version 3 of the GNU General Public
License, supplemented by the additional permissions listed below.
"""

LGPL_3_NOTICE = """You can redistribute it and/or modify it under the terms of the GNU Lesser
General Public License as published by the Free Software Foundation, either version 3 of
the License, or (at your option) any later version.
"""

AGPL_TEXT = """                    GNU AFFERO GENERAL PUBLIC LICENSE
                       Version 3, 19 November 2007

  13. Remote Network Interaction; Use with the GNU General Public License.

                     END OF TERMS AND CONDITIONS

    it under the terms of the GNU Affero General Public License as published
    by the Free Software Foundation, either version 3 of the License, or
    (at your option) any later version.
"""

AGPL_NOTICE = """This program is free software: you can redistribute it and/or modify it under
the terms of the GNU Affero General Public License as published by the Free Software
Foundation, either version 3 of the License, or (at your option) any later version.
"""

PSF = """PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2
--------------------------------------------

2. Subject to the terms and conditions of this License Agreement, PSF hereby
grants Licensee a nonexclusive, royalty-free, world-wide license to reproduce,
analyze, test, perform and/or display publicly, prepare derivative works.
"""

ZLIB = """Copyright (C) 2023 Example Authors

This software is provided 'as-is', without any express or implied warranty.

1. The origin of this software must not be misrepresented; you must not
   claim that you wrote the original software.
2. Altered source versions must be plainly marked as such, and must not be
   misrepresented as being the original software.
"""

BOOST = """Boost Software License - Version 1.0 - August 17th, 2003

Permission is hereby granted, free of charge, to any person or organization
obtaining a copy of the software and accompanying documentation covered by
this license (the "Software") to use, reproduce, display, distribute.
"""

# The EPL also names the GPL, as its Secondary License.
EPL = """Eclipse Public License - v 2.0

    THE ACCOMPANYING PROGRAM IS PROVIDED UNDER THE TERMS OF THIS ECLIPSE
    PUBLIC LICENSE ("AGREEMENT").

"Secondary License" means either the GNU General Public License,
Version 2.0, or any later versions of that license.
"""


@pytest.mark.parametrize(
    "text, expected",
    [
        (MIT, "MIT"),
        (MIT_0, "MIT-0"),
        (X11, "X11"),
        (APACHE, "Apache-2.0"),
        (APACHE_NOTICE, "Apache-2.0"),
        (BSD_2, "BSD-2-Clause"),
        (BSD_3, "BSD-3-Clause"),
        (
            BSD_2 + "3. The name of the author may not be used to endorse or promote products\n"
            "derived from this software without specific prior written permission.\n",
            "BSD-3-Clause",
        ),
        (ISC, "ISC"),
        (ZERO_BSD, "0BSD"),
        (MPL, "MPL-2.0"),
        (MPL_NOTICE, "MPL-2.0"),
        (UNLICENSE, "Unlicense"),
        (CC0, "CC0-1.0"),
        (GPL_2_TEXT, "GPL-2.0-only"),
        (GPL_2_NOTICE, "GPL-2.0-or-later"),
        (GPL_3_TEXT, "GPL-3.0-only"),
        (GPL_3_NOTICE, "GPL-3.0-or-later"),
        (LGPL_21_TEXT, "LGPL-2.1-only"),
        (LGPL_21_NOTICE, "LGPL-2.1-or-later"),
        (LGPL_3_TEXT, "LGPL-3.0-only"),
        (LGPL_3_NOTICE, "LGPL-3.0-or-later"),
        (AGPL_TEXT, "AGPL-3.0-only"),
        (AGPL_NOTICE, "AGPL-3.0-or-later"),
        (PSF, "PSF-2.0"),
        (ZLIB, "Zlib"),
        (BOOST, "BSL-1.0"),
        (EPL, "EPL-2.0"),
        ("Licensed under the GNU GPLv3.", "GPL-3.0-only"),
        ("Released under the GNU General Public Licence, version 2.", "GPL-2.0-only"),
        ("Copyright 2023\nSPDX-License-Identifier: MIT OR Apache-2.0\n", "MIT OR Apache-2.0"),
    ],
)
def test_detects_license_texts(text, expected):
    assert detect_license_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Copyright 2023 Example Corp. All rights reserved. Do not redistribute.",
        "# My project\n\nRun `make` to build it. Patches welcome.\n",
        "Licensed under the GNU General Public License.",  # no version: no SPDX id
    ],
)
def test_unknown_text_is_none(text):
    assert detect_license_text(text) is None


def test_cpython_license_is_psf():
    text = (Path(sysconfig.get_path("stdlib")) / "LICENSE.txt").read_text(encoding="utf-8")
    # It also holds a Zero-Clause BSD paragraph and names the GNU GPL: PSF must win.
    assert "GNU General Public License" in text and "Zero-Clause BSD" in text
    assert detect_license_text(text) == "PSF-2.0"


def test_detection_is_insensitive_to_wrapping_case_and_punctuation():
    rewrapped = " ".join(MIT.split()).upper().replace(",", " ;")
    assert detect_license_text(rewrapped) == "MIT"
    commented = "\n".join("# " + line for line in BSD_3.splitlines())
    assert detect_license_text(commented) == "BSD-3-Clause"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("# SPDX-License-Identifier: MIT\nimport os\n", "MIT"),
        ("// SPDX-License-Identifier: MIT OR Apache-2.0\nfn main() {}\n", "MIT OR Apache-2.0"),
        ("/* SPDX-License-Identifier: GPL-2.0 */\nint x;\n", "GPL-2.0-only"),
        # Outer parentheses add nothing, so they go.
        (
            "/*\n * Copyright\n * SPDX-License-Identifier: (MIT AND BSD-3-Clause)\n */\n",
            "MIT AND BSD-3-Clause",
        ),
        ("<!-- SPDX-License-Identifier: apache-2.0 -->\n<p>hi</p>\n", "Apache-2.0"),
        ('"""SPDX-License-Identifier: BSD-2-Clause"""\n', "BSD-2-Clause"),
        ("-- SPDX-License-Identifier: mit or isc\n", "MIT OR ISC"),
        ("{- SPDX-License-Identifier: BSD-3-Clause -}\n", "BSD-3-Clause"),
        (
            "#!/usr/bin/env python\n"
            "# SPDX-License-Identifier: GPL-2.0+ WITH Classpath-exception-2.0\n",
            "GPL-2.0-or-later WITH Classpath-exception-2.0",
        ),
        (
            "// SPDX-License-Identifier: (MIT OR Apache-2.0) AND Zlib\n",
            "(MIT OR Apache-2.0) AND Zlib",
        ),
        ("# SPDX-License-Identifier: LicenseRef-Proprietary\n", "LicenseRef-Proprietary"),
        ("# SPDX-License-Identifier: MIT AND\n", None),
        ("# SPDX-License-Identifier:\n", None),
        ("x = 1\n" * 30 + "# SPDX-License-Identifier: MIT\n", None),
        ("print('no header here')\n", None),
    ],
)
def test_spdx_header(text, expected):
    assert spdx_header(text) == expected


def test_header_on_line_30_counts():
    assert spdx_header("x = 1\n" * 29 + "# SPDX-License-Identifier: ISC\n") == "ISC"


def test_normalize_expression_groups_and_flattens():
    assert normalize_expression("MIT OR Apache-2.0 AND BSD-2-Clause") == (
        "MIT OR (Apache-2.0 AND BSD-2-Clause)"
    )
    assert normalize_expression("(MIT OR ISC) OR Zlib") == "MIT OR ISC OR Zlib"
    for bad in ("", "MIT OR", "(MIT", "MIT)", "MIT Apache-2.0", "MIT WITH", "MIT/X11"):
        assert normalize_expression(bad) is None, bad


@pytest.mark.parametrize(
    "path",
    [
        "LICENSE",
        "LICENSE.md",
        "LICENSE.txt",
        "license.rst",
        "LICENCE",
        "COPYING",
        "COPYING.LESSER",
        "COPYING.LIB",
        "UNLICENSE",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "LICENSE_APACHE-2.0",
        "MIT-LICENSE",
        "MIT-LICENSE.txt",
        "repo/sub/License.md",
    ],
)
def test_license_file_names(path):
    assert is_license_file(path)


@pytest.mark.parametrize(
    "path",
    ["license.py", "src/licenses.py", "license_test.go", "README.md", "LICENSES", "copying.c"],
)
def test_not_license_file_names(path):
    assert not is_license_file(path)


def test_dual_license_files_combine_with_or_in_sorted_order():
    files = {"LICENSE-MIT": MIT, "LICENSE-APACHE": APACHE}
    assert repo_license(files) == "Apache-2.0 OR MIT"
    assert repo_license(dict(reversed(files.items()))) == "Apache-2.0 OR MIT"
    tagged = {"LICENSE": "SPDX-License-Identifier: MIT AND Zlib", "COPYING": GPL_3_NOTICE}
    assert repo_license(tagged) == "GPL-3.0-or-later OR (MIT AND Zlib)"


def test_repo_license_single_unknown_and_empty():
    assert repo_license({"LICENSE": ISC}) == "ISC"
    assert repo_license({"LICENSE": MIT, "LICENSE.md": MIT}) == "MIT"
    assert repo_license({"LICENSE": MIT, "COPYING": "All rights reserved."}) == "MIT"
    assert repo_license({"LICENSE": "All rights reserved."}) is None
    assert repo_license({}) is None


def test_lgpl3_next_to_the_gpl3_text_it_extends_is_lgpl():
    assert repo_license({"COPYING": GPL_3_TEXT, "COPYING.LESSER": LGPL_3_TEXT}) == "LGPL-3.0-only"


@pytest.mark.parametrize(
    "expression, policy, allowed",
    [
        ("MIT", "permissive", True),
        ("mit", "permissive", True),
        ("PSF-2.0", "permissive", True),
        ("GPL-3.0-only", "permissive", False),
        ("MPL-2.0", "permissive", False),
        ("LGPL-2.1-or-later", "permissive", False),
        ("MIT OR GPL-3.0-only", "permissive", True),
        ("GPL-3.0-only OR MIT", "permissive", True),
        ("MIT AND GPL-3.0-only", "permissive", False),
        ("MIT AND BSD-3-Clause", "permissive", True),
        ("(MIT OR GPL-2.0-only) AND Apache-2.0", "permissive", True),
        ("(MIT OR GPL-2.0-only) AND LGPL-2.1-only", "permissive", False),
        ("Apache-2.0 WITH LLVM-exception", "permissive", True),
        ("GPL-2.0-only WITH Classpath-exception-2.0", "permissive", False),
        ("LicenseRef-Proprietary", "permissive", False),
        ("MIT AND", "permissive", False),
        ("", "permissive", False),
        (None, "permissive", False),
        (None, "any", True),
        ("GPL-3.0-only", "any", True),
        ("not an expression ((", "any", True),
        ("MPL-2.0", ("MPL-2.0", "MIT"), True),
        ("MPL-2.0", ("MIT",), False),
        ("MIT", "MIT,Apache-2.0", True),
        ("GPL-2.0+", ["gpl-2.0-or-later"], True),
        ("GPL-2.0-or-later", ("GPL-2.0-only",), False),
        ("MIT OR MPL-2.0", ("MPL-2.0",), True),
        ("MIT AND MPL-2.0", ("MPL-2.0",), False),
        (None, ("MIT",), False),
    ],
)
def test_license_allowed(expression, policy, allowed):
    assert license_allowed(expression, policy) is allowed


def test_parse_policy():
    assert parse_policy("permissive") == "permissive"
    assert parse_policy(" ANY ") == "any"
    assert parse_policy("MIT, apache-2.0,") == ("MIT", "Apache-2.0")
    assert parse_policy("mit,MIT") == ("MIT",)
    assert parse_policy("LicenseRef-Internal") == ("LicenseRef-Internal",)
    for bad in ("", " , ", "MIT;GPL", "MIT OR Apache-2.0", "MIT,(ISC)"):
        with pytest.raises(UserError, match="permissive"):
            parse_policy(bad)


def test_permissive_set_keeps_copyleft_out():
    assert {"MIT", "Apache-2.0", "BSD-3-Clause", "ISC", "0BSD", "PSF-2.0", "Zlib"} <= PERMISSIVE
    copyleft = {"MPL-2.0", "EPL-2.0", "GPL-2.0-only", "LGPL-2.1-only", "AGPL-3.0-only"}
    assert not copyleft & PERMISSIVE
    assert "CC-BY-SA-4.0" not in PERMISSIVE


def test_detected_ids_are_already_normalised():
    for text in (MIT, MIT_0, X11, BSD_3, ISC, ZERO_BSD, CC0, ZLIB, BOOST, PSF, GPL_3_TEXT):
        name = detect_license_text(text)
        assert normalize_expression(name) == name


def test_header_tag_does_not_reach_into_the_next_line():
    assert spdx_header("# SPDX-License-Identifier:\n# MIT\n") is None


def c_comment(notice: str) -> str:
    return "/*\n" + "".join(f" * {line}".rstrip() + "\n" for line in notice.splitlines()) + " */\n"


def hash_comment(notice: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in notice.splitlines())


@pytest.mark.parametrize(
    "header, expected",
    [
        (c_comment(GPL_2_NOTICE), "GPL-2.0-or-later"),
        (hash_comment(GPL_3_NOTICE), "GPL-3.0-or-later"),
        (c_comment(LGPL_21_NOTICE), "LGPL-2.1-or-later"),
        ("// " + LGPL_3_NOTICE.replace("\n", "\n// "), "LGPL-3.0-or-later"),
        (hash_comment(AGPL_NOTICE), "AGPL-3.0-or-later"),
        (c_comment(MPL_NOTICE), "MPL-2.0"),
        (c_comment(APACHE_NOTICE), "Apache-2.0"),
        (hash_comment(MIT), "MIT"),
        (c_comment(BSD_3), "BSD-3-Clause"),
        # The Linux kernel's wording: the version comes before the name, and no "later".
        (
            c_comment(
                "This program is free software; you can redistribute it and/or modify it\n"
                "under the terms of version 2 of the GNU General Public License as\n"
                "published by the Free Software Foundation."
            ),
            "GPL-2.0-only",
        ),
        (
            c_comment(
                "This program is free software; you can redistribute it and/or modify\n"
                "it under the terms of the GNU General Public License version 2 as\n"
                "published by the Free Software Foundation."
            ),
            "GPL-2.0-only",
        ),
        # No version: the GPL lets one choose any version ever published.
        (
            c_comment("Distributed under the terms of the GNU General Public License."),
            "GPL-1.0-or-later",
        ),
        ("# Licensed under the GPLv3.\nimport os\n", "GPL-3.0-only"),
        (
            c_comment(
                "All rights reserved. This program and the accompanying materials\n"
                "are made available under the terms of the Eclipse Public License v1.0\n"
                "which accompanies this distribution."
            ),
            "EPL-1.0",
        ),
        (
            c_comment(
                "The contents of this file are subject to the Mozilla Public License Version\n"
                '1.1 (the "License"); you may not use this file except in compliance.'
            ),
            "MPL-1.1",
        ),
        ("// Use of this source code is governed by an MIT-style license.\nx", "MIT"),
        # A Python module docstring, after a shebang and an include guard in C.
        ('#!/usr/bin/env python\n"""Tool.\n\n' + GPL_2_NOTICE + '"""\n', "GPL-2.0-or-later"),
        ("#ifndef A_H\n#define A_H\n" + c_comment(MPL_NOTICE), "MPL-2.0"),
    ],
)
def test_header_notice(header, expected):
    assert header_notice(header + "int main(void) { return 0; }\n") == expected


@pytest.mark.parametrize(
    "text",
    [
        "int x;\n",
        "# Copyright 2024 Example. See LICENSE for details.\nx = 1\n",
        # A notice after the first line of code is not the file's header.
        "import os\n\n" + hash_comment(GPL_3_NOTICE),
        "#include <stdio.h>\n" + c_comment(GPL_2_NOTICE),
        # Code that names licenses is not a notice.
        'LICENSES = ["GNU General Public License v3", "MIT"]\n',
        "# This module parses license texts.\nPERMISSION = 'Permission is hereby granted'\n",
    ],
)
def test_no_header_notice(text):
    assert header_notice(text) is None
