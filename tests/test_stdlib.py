"""Acceptance on the default corpus: the running Python's standard library."""

import json
import os

import pytest
from conftest import read_ledger

from codekiln.curate.pipeline import curate
from codekiln.curate.sources import stdlib_source

pytestmark = pytest.mark.slow


def count_given_files(source) -> int:
    """An independent count of the inputs the stdlib source gives: every non-directory entry."""
    n = 0
    for _dirpath, dirnames, filenames in os.walk(source.path):
        keep = []
        for d in dirnames:
            full = os.path.join(_dirpath, d)
            if os.path.islink(full):
                n += 1  # a symlink to a directory is an input (ledger reason: symlink)
            elif d not in source.exclude_dirs and d not in (".git", ".hg", ".svn"):
                keep.append(d)
        dirnames[:] = keep
        n += len(filenames)
    return n


def test_stdlib_ledger_accounts_for_every_file_and_workers_agree(tmp_path):
    source = stdlib_source()
    outs = {}
    for workers in (1, 2):
        outs[workers] = tmp_path / f"w{workers}"
        curate([source], outs[workers], workers=workers, progress=False)
    ledger = read_ledger(outs[1])
    assert len(ledger) == count_given_files(source)
    assert len({r["id"] for r in ledger}) == len(ledger)
    report = json.loads((outs[1] / "report.json").read_text())
    totals = report["totals"]
    assert totals["files_in"] == len(ledger)
    assert totals["bytes_in"] == sum(r["size"] for r in ledger)
    assert totals["files_kept"] == sum(r["status"] == "kept" for r in ledger)
    dropped = sum(slot["files"] for slot in totals["dropped"].values())
    assert totals["files_kept"] + dropped == totals["files_in"]
    assert report["languages"]["Python"]["files_kept"] > 1000
    assert totals["dropped"]["binary"]["files"] > 0  # lib-dynload's shared objects
    assert report["steps"]["licenses"].get("PSF-2.0", 0) > 2000  # detected from LICENSE.txt
    assert "license" not in totals["dropped"]
    for path in sorted(outs[1].rglob("*.parquet")):
        twin = outs[2] / path.relative_to(outs[1])
        assert path.read_bytes() == twin.read_bytes(), path
