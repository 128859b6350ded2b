"""Issue 16: curation fixes seen on real repositories, each shown by a small file."""

import subprocess

import pytest

from codekiln.curate.sources import remote_to_repo_name, resolve_source


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
