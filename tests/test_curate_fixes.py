"""Issue 16: curation fixes seen on real repositories, each shown by a small file."""

import subprocess

import pytest

from codekiln.curate.config import CurateConfig
from codekiln.curate.examine import Examiner
from codekiln.curate.sources import RawInput, remote_to_repo_name, resolve_source

# A C# header as seen on a real repository: UTF-8, but for one Latin-1 copyright sign.
CSHARP = (
    b"// Copyright \xa9 2019 Contoso Ltd. All rights reserved.\n"
    b"// Licensed under the MIT License.\n\n"
    b"namespace Contoso.Tools\n{\n    public static class Greeting\n    {\n"
    b'        public static string Hello(string name) => $"Hello, {name}! \xe2\x9c\x93";\n'
    b"    }\n}\n"
)


def examine(path: str, data: bytes, **sets):
    config = CurateConfig.load(sets=["licenses=any", *[f"{k}={v}" for k, v in sets.items()]])
    item = RawInput("dir", "contoso/tools", path, "", len(data), data=data, license="MIT")
    return Examiner(config).examine(item)


def test_a_stray_latin1_byte_is_read_as_cp1252_and_recorded():
    row, record = examine("src/Greeting.cs", CSHARP)
    assert (row["status"], row["reason"], row["detail"]) == ("kept", None, "decoded:cp1252")
    # The stray byte becomes U+00A9; the file's real UTF-8 (the check mark) is kept as it is.
    assert "Copyright \u00a9 2019" in record["content"] and "\u2713" in record["content"]
    assert record["content"].encode("utf-8")


def test_a_byte_cp1252_leaves_undefined_falls_back_to_latin1():
    row, record = examine("src/Greeting.cs", CSHARP.replace(b"\xa9", b"\x81"))
    assert (row["status"], row["detail"]) == ("kept", "decoded:latin-1")
    assert "Copyright \x81 2019" in record["content"]


@pytest.mark.parametrize(
    "data, reason",
    [
        # Not text: random high bytes, or far too many stray bytes.
        (bytes(range(128, 256)) * 4, "encoding"),
        (("x = '" + "\u00e9" * 40 + "'\n").encode("latin-1"), "encoding"),
        # A comment in GBK: its bytes come in runs, not one at a time.
        (b"x = 1\n" * 200 + "# \u4e2d\u6587\u6ce8\u91ca\n".encode("gbk"), "encoding"),
        # UTF-16 without a byte-order mark has NUL bytes.
        (("x = 1\n" * 20).encode("utf-16-le"), "binary"),
    ],
)
def test_data_that_is_not_mostly_utf8_is_still_dropped(data, reason):
    row, record = examine("src/mod.py", data)
    assert (row["reason"], record) == (reason, None)


def test_utf16_with_a_byte_order_mark_is_decoded():
    text = "def hello():\n    return 'h\u00e9llo'\n"
    row, record = examine("src/mod.py", text.encode("utf-16"))
    assert (row["status"], row["detail"], record["content"]) == ("kept", "decoded:utf-16", text)


@pytest.mark.parametrize(
    "url",
    [
        "/tmp/x/expressjs+express/repo",
        "../repo",
        "./checkout/.git",
        "file:///srv/git/owner/name.git",
        "C:\\src\\owner\\name",
        "relative-dir",
    ],
)
def test_local_path_remotes_name_nothing(url):
    assert remote_to_repo_name(url) is None


@pytest.mark.parametrize(
    "url, name",
    [
        ("https://github.com/expressjs/express.git", "expressjs/express"),
        ("git@github.com:expressjs/express.git", "expressjs/express"),
        ("ssh://git@host:2222/group/sub/proj", "sub/proj"),
        ("host.example:owner/name", "owner/name"),
    ],
)
def test_url_remotes_keep_owner_and_name(url, name):
    assert remote_to_repo_name(url) == name


def test_clone_of_a_local_clone_is_named_from_its_folder(tmp_path):
    repo = tmp_path / "express"
    repo.mkdir()
    for args in (["init", "-q"], ["remote", "add", "origin", "/tmp/x/expressjs+express/repo"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)
    assert resolve_source(str(repo)).name == "express"


GPL_HEADED = b"""/*
 * mousedev.c - a driver
 * Copyright (C) 2003 Jane Doe
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 2 of the License, or
 * (at your option) any later version.
 */
#include <stdio.h>

int mouse_count(int a, int b) { return a + b; }
"""


def test_a_gpl_notice_in_an_mit_repository_is_gpl():
    config = CurateConfig.load(sets=["licenses=permissive"])
    item = RawInput("dir", "acme/tools", "src/mousedev.c", "", 0, data=GPL_HEADED, license="MIT")
    row, record = Examiner(config).examine(item)
    assert (row["reason"], row["detail"], record) == ("license", "GPL-2.0-or-later", None)
    row, record = examine("src/mousedev.c", GPL_HEADED)  # licenses=any keeps it, as GPL
    assert record["license"] == row["license"] == "GPL-2.0-or-later"
