"""Our JavaScript, TypeScript and Go rows are MultiPL-E's ``humaneval-{js,ts,go}-reworded`` rows.

The expected texts below are copied from the official rows (facts of the benchmark): the
prompts with MultiPL-E's signatures and Go types, the docstring as comments (in the default
version "3" every line; in the September 2023 files only the lines indented deeper than the
docstring), the test suites as each translator writes them, the stop tokens and the kept
problems. A correct solution then passes, and a wrong one fails, under the commands MultiPL-E's
evaluators use (``node``; ``tsc`` then ``node``; ``go test``), where those are installed.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from codekiln.evaluate.multiple.translate import translate_rows

JS_STOPS = ["\nfunction ", "\n/*", "\n//", "\nconsole.log"]
TS_STOPS = ["\nfunction ", "\n/*", "\n//", "\nclass"]
GO_STOPS = ["\nfunc", "struct", "\n// "]

JS_0_PROMPT = """//Check if in given array of numbers, are any two numbers closer to each other than
// given threshold.
// >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
// false
// >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)
// true
function has_close_elements(numbers, threshold){
"""
JS_0_TESTS = """const assert = require('node:assert');


function test() {
  let candidate = has_close_elements;
  assert.deepEqual(candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3),true);
  assert.deepEqual(candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05),false);
  assert.deepEqual(candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95),true);
  assert.deepEqual(candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.8),false);
  assert.deepEqual(candidate([1.0, 2.0, 3.0, 4.0, 5.0, 2.0], 0.1),true);
  assert.deepEqual(candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0),true);
  assert.deepEqual(candidate([1.1, 2.2, 3.1, 4.1, 5.1], 0.5),false);
}

test();"""

# MultiPL-E's prompts/ files of September 2023 ("2023-09"): only the lines indented deeper
# than the docstring get "// ", the others stay bare text.
JS_107_PROMPT_2023_09 = """\
//Given a positive integer n, return an array that has the number of even and odd
integer palindromes that fall within the range(1, n), inclusive.
Example 1:
>>> even_odd_palindrome(3)
[1, 2]
// Explanation:
// Integer palindrome are 1, 2, 3. one of them is even, and two of them are odd.
Example 2:
>>> even_odd_palindrome(12)
[4, 6]
// Explanation:
// Integer palindrome are 1, 2, 3, 4, 5, 6, 7, 8, 9, 11. four of them are even, and 6 of them \
are odd.
Note:
// 1. 1 <= n <= 10^3
// 2. returned array has the number of even and odd integer palindromes respectively.
function even_odd_palindrome(n){
"""

TS_103_PROMPT = """//You are given two positive integers n and m, and your task is to compute the
// average of the integers from n through m (including n and m).\x20
// Round the answer to the nearest integer and convert that to binary.
// If n is greater than m, return -1.
// Example:
// >>> rounded_avg(1, 5)
// "0b11"
// >>> rounded_avg(7, 5)
// -1
// >>> rounded_avg(10, 20)
// "0b1111"
// >>> rounded_avg(20, 33)
// "0b11010"
function rounded_avg(n: number, m: number): string| number {
"""
TS_111_TESTS = """declare var require: any;
const assert = require('node:assert');


function test() {
  let candidate = histogram;
  assert.deepEqual(candidate("a b b a"),{"a": 2, "b": 2});
  assert.deepEqual(candidate("a b c a b"),{"a": 2, "b": 2});
  assert.deepEqual(candidate("a b c d g"),{"a": 1, "b": 1, "c": 1, "d": 1, "g": 1});
  assert.deepEqual(candidate("r t g"),{"r": 1, "t": 1, "g": 1});
  assert.deepEqual(candidate("b b b b a"),{"b": 4});
  assert.deepEqual(candidate("r t g"),{"r": 1, "t": 1, "g": 1});
  assert.deepEqual(candidate(""),{});
  assert.deepEqual(candidate("a"),{"a": 1});
}

test();"""

GO_TEST_END = """   }

\tfor i, tc := range tests {
\t\tt.Run(fmt.Sprintf("test num % d", i), func(t *testing.T) {
\t\t\tif fmt.Sprintf("%v", tc.actual) != fmt.Sprintf("%v", tc.expected) {
\t\t\t\tt.Errorf("expected '%s', got '%s'", tc.expected, tc.actual)
\t\t\t}
\t\t})
\t}
}
"""
# A slice's element type is read from its literals: "a" then numbers makes []float64.
GO_22_PROMPT = """package filter_integers_test

import (
    "testing"
    "fmt"
)

// Filter given list of any gothon values only for integers
// >>> filter_integers([]float64{"a", 3.14, 5})
// []int{5}
// >>> filter_integers([]interface{}{1, 2, 3, "abc", map[interface{}]interface{}{}, \
[]interface{}{}})
// []int{1, 2, 3}
func filter_integers(values []interface{}) []int {
"""
GO_22_TESTS = (
    """func TestFilter_Integers(t *testing.T) {
  candidate := filter_integers
\ttype test struct {
\t\tactual   interface{}
\t\texpected interface{}
\t}
   tests := []test{
     { actual: candidate([]interface{}{}), expected: []int{} },
     { actual: candidate([]interface{}{4, map[interface{}]interface{}{}, []interface{}{}, 23.2, \
9, "adasd"}), expected: []int{4, 9} },
     { actual: candidate([]interface{}{3, "c", 3, 3, "a", "b"}), expected: []int{3, 3, 3} },
"""
    + GO_TEST_END
)
GO_107_TESTS = (
    """func TestEven_Odd_Palindrome(t *testing.T) {
  candidate := even_odd_palindrome
\ttype test struct {
\t\tactual   interface{}
\t\texpected interface{}
\t}
   tests := []test{
     { actual: candidate(123), expected: []interface{}{8, 13} },
     { actual: candidate(12), expected: []interface{}{4, 6} },
     { actual: candidate(3), expected: []interface{}{1, 2} },
     { actual: candidate(63), expected: []interface{}{6, 8} },
     { actual: candidate(25), expected: []interface{}{5, 6} },
     { actual: candidate(19), expected: []interface{}{4, 6} },
     { actual: candidate(9), expected: []interface{}{4, 5} },
     { actual: candidate(1), expected: []interface{}{0, 1} },
"""
    + GO_TEST_END
)


@functools.cache
def rows(key: str, version: str = "3") -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in translate_rows(key, version)[0]}


def test_js_rows_are_multiple_e_rows() -> None:
    row = rows("js")["HumanEval_0_has_close_elements"]
    assert row["prompt"] == JS_0_PROMPT
    assert row["tests"] == JS_0_TESTS
    assert row["stop_tokens"] == JS_STOPS
    assert row["language"] == "js"
    # Strings as they are, numbers as Python writes them; -9999999999999999 stays.
    assert '  assert.deepEqual(candidate(""),"");' in rows("js")["HumanEval_10_make_palindrome"][
        "tests"
    ].split("\n")
    assert (
        "candidate([-9999999999999999]),-9999999999999999"
        in rows("js")["HumanEval_114_minSubArraySum"]["tests"]
    )


def test_ts_rows_are_multiple_e_rows() -> None:
    row = rows("ts")["HumanEval_103_rounded_avg"]
    assert row["prompt"] == TS_103_PROMPT
    assert row["stop_tokens"] == TS_STOPS
    histogram = rows("ts")["HumanEval_111_histogram"]
    assert histogram["tests"] == TS_111_TESTS
    assert histogram["prompt"].endswith(
        "function histogram(test: string): {[key: string]: number} {\n"
    )
    assert rows("ts")["HumanEval_107_even_odd_palindrome"]["prompt"].endswith(
        "function even_odd_palindrome(n: number): [number, number] {\n"
    )


def test_go_rows_are_multiple_e_rows() -> None:
    row = rows("go")["HumanEval_22_filter_integers"]
    assert row["prompt"] == GO_22_PROMPT
    assert row["tests"] == GO_22_TESTS
    assert row["stop_tokens"] == GO_STOPS
    assert row["language"] == "go_test.go"
    assert rows("go")["HumanEval_107_even_odd_palindrome"]["tests"] == GO_107_TESTS
    # A parameter named like a Go type is renamed; the test is named by str.title().
    assert rows("go")["HumanEval_10_make_palindrome"]["prompt"].endswith(
        "func make_palindrome(myString string) string {\n"
    )
    assert rows("go")["HumanEval_114_minSubArraySum"]["tests"].startswith(
        "func TestMinsubarraysum(t *testing.T) {\n"
    )


def test_versions_differ_only_in_comment_markers() -> None:
    """The June 2023 rows ("2.1.0") equal version 3's here; the September 2023 files leave
    the docstring's unindented lines bare (their programs do not parse)."""
    for key in ("js", "ts", "go"):
        assert rows(key, "2.1.0") == rows(key)
        old = rows(key, "2023-09")
        assert old.keys() == rows(key).keys()
        assert all(old[n]["tests"] == row["tests"] for n, row in rows(key).items())
    old = rows("js", "2023-09")["HumanEval_107_even_odd_palindrome"]["prompt"]
    assert old == JS_107_PROMPT_2023_09
    assert rows("js", "2023-09")["HumanEval_0_has_close_elements"]["prompt"].startswith(
        "//Check if in given array of numbers, are any two numbers closer to each other than\n"
        "given threshold.\n>>> has_close_elements([1.0, 2.0, 3.0], 0.5)\nfalse\n"
    )
    assert (
        "// Filter given list of any gothon values only for integers\n"
        '>>> filter_integers([]float64{"a", 3.14, 5})\n[]int{5}\n'
    ) in rows("go", "2023-09")["HumanEval_22_filter_integers"]["prompt"]


def test_kept_problems_are_multiple_e_s() -> None:
    """MultiPL-E has 161 JavaScript, 159 TypeScript and 154 Go rows: TypeScript has no type
    for a None member or a `...` tuple, Go none for Optional or Union."""

    def dropped(key: str) -> list[int]:
        return sorted(int(task.rsplit("/", 1)[1]) for task in translate_rows(key)[1])

    assert dropped("js") == [32, 38, 50]
    assert dropped("ts") == [32, 38, 50, 137, 148]
    assert dropped("go") == [12, 32, 38, 50, 90, 103, 125, 128, 137, 162]
    assert (len(rows("js")), len(rows("ts")), len(rows("go"))) == (161, 159, 154)


# --- the rows run as MultiPL-E's evaluators run them ---------------------------------------

JS_0_RIGHT = """
  for (let i = 0; i < numbers.length; i++)
    for (let j = i + 1; j < numbers.length; j++)
      if (Math.abs(numbers[i] - numbers[j]) < threshold) return true;
  return false;
}
"""
JS_0_WRONG = """
  return numbers.length > 5;
}
"""
GO_22_RIGHT = """
\tout := []int{}
\tfor _, v := range values {
\t\tif i, ok := v.(int); ok {
\t\t\tout = append(out, i)
\t\t}
\t}
\treturn out
}
"""
GO_22_WRONG = """
\treturn []int{len(values)}
}
"""


def program(row: dict[str, Any], completion: str) -> str:
    """The harness's program: the stripped prompt, the completion, a newline, the tests."""
    return row["prompt"].strip() + completion + "\n" + row["tests"]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if not any(env.get(name) for name in ("GOCACHE", "XDG_CACHE_HOME", "HOME")):
        env["GOCACHE"] = str(cwd / "gocache")  # go needs somewhere to cache its builds
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def needs(*binaries: str) -> pytest.MarkDecorator:
    missing = [b for b in binaries if shutil.which(b) is None]
    return pytest.mark.skipif(bool(missing), reason=f"missing {', '.join(missing)}")


@needs("node")
def test_js_row_runs_under_node(tmp_path: Path) -> None:
    row = rows("js")["HumanEval_0_has_close_elements"]
    for completion, passes in ((JS_0_RIGHT, True), (JS_0_WRONG, False)):
        (tmp_path / "program.js").write_text(program(row, completion))
        done = run(["node", "program.js"], tmp_path)
        assert (done.returncode == 0) == passes, done.stderr
        if not passes:
            assert "AssertionError" in done.stderr


@pytest.mark.slow
@needs("tsc", "node")
def test_ts_row_compiles_and_runs(tmp_path: Path) -> None:
    row = rows("ts")["HumanEval_0_has_close_elements"]
    typed = JS_0_RIGHT.replace("let i = 0", "let i: number = 0")
    for completion, passes in ((typed, True), (JS_0_WRONG, False)):
        (tmp_path / "program.ts").write_text(program(row, completion))
        compiled = run(["tsc", "--target", "esnext", "program.ts"], tmp_path)
        assert compiled.returncode == 0, compiled.stdout
        done = run(["node", "program.js"], tmp_path)
        assert (done.returncode == 0) == passes, done.stderr


@needs("go")
def test_go_row_runs_under_go_test(tmp_path: Path) -> None:
    row = rows("go")["HumanEval_22_filter_integers"]
    for completion, passes in ((GO_22_RIGHT, True), (GO_22_WRONG, False)):
        (tmp_path / "program_test.go").write_text(program(row, completion))
        done = run(["go", "test", "program_test.go"], tmp_path)
        # MultiPL-E's Go verdict: no "FAIL" in the output.
        assert ("FAIL" not in done.stdout) == passes, done.stdout + done.stderr
        assert passes or "--- FAIL: TestFilter_Integers" in done.stdout
