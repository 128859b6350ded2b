# ruff: noqa: E501 -- the rows are code in other languages, kept as written
"""The multiple-<lang> tasks on official MultiPL-E rows: reading them (JSONL, JSONL.gz, Parquet,
a folder), the harness's prompt, stop tokens and program, and each language run as MultiPL-E's
evaluator runs it, through the real sandbox. The rows are written here in MultiPL-E's schema
(two problems per language, Java a third with javatuples' Pair), each with a right and a wrong
completion; a language whose toolchain is missing here is skipped."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codekiln.errors import UserError
from codekiln.evaluate.multiple import MultipleTask
from codekiln.evaluate.multiple.official import REVISION, task_id
from codekiln.evaluate.multiple.runners import RUNNERS, Runner, runner
from codekiln.evaluate.sandbox import Job, Sandbox
from codekiln.evaluate.tasks import parse_tasks

# language key -> (row language, stop tokens, {problem: (prompt, tests)}); problems are 53 (add
# two integers) and 23 (string length), in each language's MultiPL-E shape.
LANGS: dict[str, tuple[str, list[str], dict[str, tuple[str, str]]]] = {
    "cpp": (
        "cpp",
        ["\n}"],
        {
            "HumanEval_53_add": (
                "#include<assert.h>\n#include<bits/stdc++.h>\n// Add two numbers x and y\n// >>> add((2), (3))\n// (5)\nlong add(long x, long y) {\n",
                "}\nint main() {\n    auto candidate = add;\n    assert(candidate((0), (1)) == (1));\n    assert(candidate((5), (7)) == (12));\n}\n",
            ),
            "HumanEval_23_strlen": (
                "#include<assert.h>\n#include<bits/stdc++.h>\n// Return length of given string\nlong string_length(std::string string) {\n",
                '}\nint main() {\n    auto candidate = string_length;\n    assert(candidate(("")) == (0));\n    assert(candidate(("abcd")) == (4));\n}\n',
            ),
        },
    ),
    "java": (
        "java",
        ["\n    }\n"],
        {
            "HumanEval_53_add": (
                "import java.util.*;\nimport java.lang.reflect.*;\nimport org.javatuples.*;\nimport java.security.*;\nimport java.math.*;\nimport java.io.*;\nimport java.util.stream.*;\nclass Problem {\n    // Add two numbers x and y\n    public static long add(long x, long y) {\n",
                "    }\n    public static void main(String[] args) {\n    assert(add((0l), (1l)) == (1l));\n    assert(add((5l), (7l)) == (12l));\n    }\n\n}\n",
            ),
            "HumanEval_23_strlen": (
                "import java.util.*;\nimport java.lang.reflect.*;\nimport org.javatuples.*;\nimport java.security.*;\nimport java.math.*;\nimport java.io.*;\nimport java.util.stream.*;\nclass Problem {\n    // Return length of given string\n    public static long strlen(String string) {\n",
                '    }\n    public static void main(String[] args) {\n    assert(strlen(("")) == (0l));\n    assert(strlen(("abcd")) == (4l));\n    }\n\n}\n',
            ),
            "HumanEval_8_sum_product": (
                "import java.util.*;\nimport java.lang.reflect.*;\nimport org.javatuples.*;\nimport java.security.*;\nimport java.math.*;\nimport java.io.*;\nimport java.util.stream.*;\nclass Problem {\n    // Sum and product of a list\n    public static Pair<Long, Long> sumProduct(ArrayList<Long> numbers) {\n",
                "    }\n    public static void main(String[] args) {\n    assert(sumProduct((new ArrayList<Long>(Arrays.asList()))).equals((Pair.with(0l, 1l))));\n    assert(sumProduct((new ArrayList<Long>(Arrays.asList((long)3l, (long)5l)))).equals((Pair.with(8l, 15l))));\n    }\n\n}\n",
            ),
        },
    ),
    "rs": (
        "rs",
        ["\n}"],
        {
            "HumanEval_53_add": (
                "/// Add two numbers x and y\n/// >>> add(2, 3)\n/// 5\nfn add(x: isize, y: isize) -> isize {\n",
                "}\n\nfn main() {\n    let candidate = add;\n    assert_eq!(candidate(0, 1), 1);\n    assert_eq!(candidate(5, 7), 12);\n}\n",
            ),
            "HumanEval_23_strlen": (
                "/// Return length of given string\nfn strlen(string: String) -> isize {\n",
                '}\n\nfn main() {\n    let candidate = strlen;\n    assert_eq!(candidate(String::from("")), 0);\n    assert_eq!(candidate(String::from("abcd")), 4);\n}\n',
            ),
        },
    ),
    "go": (
        "go_test.go",
        ["\nfunc", "struct", "\n// "],
        {
            "HumanEval_53_add": (
                'package add_test\n\nimport (\n    "testing"\n    "fmt"\n)\n\n// Add two numbers x and y\nfunc add(x int, y int) int {\n',
                'func TestAdd(t *testing.T) {\n  candidate := add\n\ttype test struct {\n\t\tactual   interface{}\n\t\texpected interface{}\n\t}\n   tests := []test{\n     { actual: candidate(0, 1), expected: 1 },\n     { actual: candidate(5, 7), expected: 12 },\n   }\n\n\tfor i, tc := range tests {\n\t\tt.Run(fmt.Sprintf("test num % d", i), func(t *testing.T) {\n\t\t\tif fmt.Sprintf("%v", tc.actual) != fmt.Sprintf("%v", tc.expected) {\n\t\t\t\tt.Errorf("expected \'%s\', got \'%s\'", tc.expected, tc.actual)\n\t\t\t}\n\t\t})\n\t}\n}\n',
            ),
            "HumanEval_23_strlen": (
                'package strlen_test\n\nimport (\n    "testing"\n    "fmt"\n)\n\n// Return length of given string\nfunc strlen(myString string) int {\n',
                'func TestStrlen(t *testing.T) {\n  candidate := strlen\n\ttype test struct {\n\t\tactual   interface{}\n\t\texpected interface{}\n\t}\n   tests := []test{\n     { actual: candidate(""), expected: 0 },\n     { actual: candidate("abcd"), expected: 4 },\n   }\n\n\tfor i, tc := range tests {\n\t\tt.Run(fmt.Sprintf("test num % d", i), func(t *testing.T) {\n\t\t\tif fmt.Sprintf("%v", tc.actual) != fmt.Sprintf("%v", tc.expected) {\n\t\t\t\tt.Errorf("expected \'%s\', got \'%s\'", tc.expected, tc.actual)\n\t\t\t}\n\t\t})\n\t}\n}\n',
            ),
        },
    ),
    "ts": (
        "ts",
        ["\nfunction ", "\n/*", "\n//", "\nclass"],
        {
            "HumanEval_53_add": (
                "//Add two numbers x and y\n// >>> add(2, 3)\n// 5\nfunction add(x: number, y: number): number {\n",
                "\ndeclare var require: any;\nconst assert = require('node:assert');\nvar test = function() {\n  const candidate = add;\n  assert.deepEqual(candidate(0, 1),1);\n  assert.deepEqual(candidate(5, 7),12);\n}\n\ntest();",
            ),
            "HumanEval_23_strlen": (
                "//Return length of given string\nfunction strlen(string: string): number {\n",
                '\ndeclare var require: any;\nconst assert = require(\'node:assert\');\nvar test = function() {\n  const candidate = strlen;\n  assert.deepEqual(candidate(""),0);\n  assert.deepEqual(candidate("abcd"),4);\n}\n\ntest();',
            ),
        },
    ),
    "js": (
        "js",
        ["\nfunction ", "\n/*", "\n//", "\nconsole.log"],
        {
            "HumanEval_53_add": (
                "//Add two numbers x and y\n// >>> add(2, 3)\n// 5\nfunction add(x, y){\n",
                "\nconst assert = require('node:assert');\n\n\nfunction test() {\n  let candidate = add;\n  assert.deepEqual(candidate(0, 1),1);\n  assert.deepEqual(candidate(5, 7),12);\n}\n\ntest();",
            ),
            "HumanEval_23_strlen": (
                "//Return length of given string\nfunction strlen(string){\n",
                '\nconst assert = require(\'node:assert\');\n\n\nfunction test() {\n  let candidate = strlen;\n  assert.deepEqual(candidate(""),0);\n  assert.deepEqual(candidate("abcd"),4);\n}\n\ntest();',
            ),
        },
    ),
    "lua": (
        "lua",
        ["\nlocal", "\nfunction", "\n--", "\n\n"],
        {
            "HumanEval_53_add": (
                "-- Add two numbers x and y\n-- >>> add(2, 3)\n-- 5\nlocal function add(x, y)\n",
                "lu = require('luaunit')\n\nfunction test_humaneval()\nlocal candidate = add\n    lu.assertEquals(candidate(0, 1), 1)\n    lu.assertEquals(candidate(5, 7), 12)\nend\n\nos.exit(lu.LuaUnit.run())",
            ),
            "HumanEval_23_strlen": (
                "-- Return length of given string\nlocal function strlen(string)\n",
                "lu = require('luaunit')\n\nfunction test_humaneval()\nlocal candidate = strlen\n    lu.assertEquals(candidate(''), 0)\n    lu.assertEquals(candidate('abcd'), 4)\nend\n\nos.exit(lu.LuaUnit.run())",
            ),
        },
    ),
    "php": (
        "php",
        ["\nfunction", "\n?>", "\n//", "\n#"],
        {
            "HumanEval_53_add": (
                "<?php\n// Add two numbers x and y\n// >>> add(2, 3)\n// 5\nfunction add($x, $y) {\n",
                'function candidate(...$args) {\n    return add(...$args);\n}\n\nfunction test(): void {\n    if (candidate(0, 1) !== 1) { throw new Exception("Test failed!"); }\n    if (candidate(5, 7) !== 12) { throw new Exception("Test failed!"); }\n}\n\ntest();',
            ),
            "HumanEval_23_strlen": (
                "<?php\n// Return length of given string\nfunction strlen_($string) {\n",
                'function candidate(...$args) {\n    return strlen_(...$args);\n}\n\nfunction test(): void {\n    if (candidate("") !== 0) { throw new Exception("Test failed!"); }\n    if (candidate("abcd") !== 4) { throw new Exception("Test failed!"); }\n}\n\ntest();',
            ),
        },
    ),
    "rb": (
        "rb",
        ["\nclass", "\ndef", "\n#", "\n\n"],
        {
            "HumanEval_53_add": (
                "# Add two numbers x and y\n# >>> add.call(2, 3)\n# 5\ndef add(x, y)\n",
                "require 'test/unit'\nclass TestHumanEval < Test::Unit::TestCase\n  def test_add\n    candidate = method(:add)\n    assert_equal(1, candidate.call(0, 1))\n    assert_equal(12, candidate.call(5, 7))\n  end\nend\n",
            ),
            "HumanEval_23_strlen": (
                "# Return length of given string\ndef strlen(string)\n",
                'require \'test/unit\'\nclass TestHumanEval < Test::Unit::TestCase\n  def test_strlen\n    candidate = method(:strlen)\n    assert_equal(0, candidate.call(""))\n    assert_equal(4, candidate.call("abcd"))\n  end\nend\n',
            ),
        },
    ),
    "pl": (
        "pl",
        ["\nsub", "\n#", "\n\n"],
        {
            "HumanEval_53_add": (
                "# Add two numbers x and y\n# >>> add(2, 3)\n# 5\nsub add {\n    my($x, $y) = @_;\n",
                'use Test::Deep;\n\n\nsub testhumaneval {\n    my $candidate = \\&add;\n        if(eq_deeply($candidate->(0, 1),1)) {\n        print "ok!" }else{\n        exit 1;\n        }\n        if(eq_deeply($candidate->(5, 7),12)) {\n        print "ok!" }else{\n        exit 1;\n        }\n}\n\ntesthumaneval();',
            ),
            "HumanEval_23_strlen": (
                "# Return length of given string\nsub strlen {\n    my($string) = @_;\n",
                'use Test::Deep;\n\n\nsub testhumaneval {\n    my $candidate = \\&strlen;\n        if(eq_deeply($candidate->(""),0)) {\n        print "ok!" }else{\n        exit 1;\n        }\n        if(eq_deeply($candidate->("abcd"),4)) {\n        print "ok!" }else{\n        exit 1;\n        }\n}\n\ntesthumaneval();',
            ),
        },
    ),
    "sh": (
        "sh",
        ["\n}"],
        {
            "HumanEval_53_add": (
                "#!/bin/bash\n# Add two numbers x and y\n#\n# $1 is an integer\n# $2 is an integer\nadd() {\n",
                '}\n\ncandidate() {\n    add "$@"\n}\n\nset -e\nrun_test() {\n    [[ $(candidate "0" "1") = "1" ]]\n    [[ $(candidate "5" "7") = "12" ]]\n}\n\nrun_test',
            ),
            "HumanEval_23_strlen": (
                "#!/bin/bash\n# Return length of given string\n#\n# $1 is a string\nstrlen() {\n",
                '}\n\ncandidate() {\n    strlen "$@"\n}\n\nset -e\nrun_test() {\n    [[ $(candidate "") = "0" ]]\n    [[ $(candidate "abcd") = "4" ]]\n}\n\nrun_test',
            ),
        },
    ),
}

# language key -> {problem: (right raw generation, wrong raw generation)}: what a model might
# write after the stripped prompt, running past the row's first stop token.
COMPLETIONS: dict[str, dict[str, tuple[str, str]]] = {
    "cpp": {
        "HumanEval_53_add": ("\n    return x + y;\n}\nint main() {}", "\n    return x - y;\n}\n"),
        "HumanEval_23_strlen": ("\n    return string.size();\n}\n", "\n    return 0;\n}\n"),
    },
    "java": {
        "HumanEval_53_add": (
            "\n        return x + y;\n    }\n    // more",
            "\n        return x - y;\n    }\n",
        ),
        "HumanEval_23_strlen": (
            "\n        return string.length();\n    }\n",
            "\n        return 0l;\n    }\n",
        ),
        "HumanEval_8_sum_product": (
            "\n        long s = 0, p = 1;\n        for (long n : numbers) { s += n; p *= n; }\n        return Pair.with(s, p);\n    }\n",
            "\n        return Pair.with(0l, 0l);\n    }\n",
        ),
    },
    "rs": {
        "HumanEval_53_add": ("\n    x + y\n}\n\nfn other() {}", "\n    x - y\n}\n"),
        "HumanEval_23_strlen": ("\n    string.len() as isize\n}\n", "\n    0\n}\n"),
    },
    "go": {
        "HumanEval_53_add": ("\n    return x + y\n}\n\nfunc other() {}", "\n    return x - y\n}\n"),
        "HumanEval_23_strlen": ("\n    return len(myString)\n}\n", "\n    return 0\n}\n"),
    },
    "ts": {
        "HumanEval_53_add": (
            "\n  return x + y;\n}\n\nfunction other() {}",
            "\n  return x - y;\n}\n",
        ),
        "HumanEval_23_strlen": ("\n  return string.length;\n}\n", "\n  return 0;\n}\n"),
    },
    "js": {
        "HumanEval_53_add": (
            "\n  return x + y;\n}\n\nconsole.log(add(1, 2));",
            "\n  return x - y;\n}\n",
        ),
        "HumanEval_23_strlen": ("\n  return string.length;\n}\n", "\n  return 0;\n}\n"),
    },
    "lua": {
        "HumanEval_53_add": (
            "\n    return x + y\nend\n\nprint(add(1, 2))",
            "\n    return x - y\nend",
        ),
        "HumanEval_23_strlen": ("\n    return #string\nend", "\n    return 0\nend"),
    },
    "php": {
        "HumanEval_53_add": (
            "\n    return $x + $y;\n}\n\nfunction other() {}",
            "\n    return $x - $y;\n}\n",
        ),
        "HumanEval_23_strlen": ("\n    return strlen($string);\n}\n", '\n    return "0";\n}\n'),
    },
    "rb": {
        "HumanEval_53_add": ("\n  x + y\nend\n\nputs add(1, 2)", "\n  x - y\nend"),
        "HumanEval_23_strlen": ("\n  string.length\nend", "\n  0\nend"),
    },
    "pl": {
        "HumanEval_53_add": (
            "\n    return $x + $y;\n}\n\nprint add(1, 2);",
            "\n    return $x - $y;\n}",
        ),
        "HumanEval_23_strlen": ("\n    return length($string);\n}", "\n    return 1;\n}"),
    },
    "sh": {
        "HumanEval_53_add": (
            "\n    echo $(( $1 + $2 ))\n}\n\nadd 1 2",
            "\n    echo $(( $1 - $2 ))",
        ),
        "HumanEval_23_strlen": ("\n    echo ${#1}\n}\n", "\n    echo 1\n"),
    },
}


def rows(key: str) -> list[dict]:
    """The rows of one language in MultiPL-E's schema."""
    lang, stops, problems = LANGS[key]
    return [
        {
            "name": name,
            "language": lang,
            "prompt": prompt,
            "doctests": "transform",
            "original": f"/originals/{name}.py",
            "prompt_terminology": "reworded",
            "tests": tests,
            "stop_tokens": stops,
        }
        for name, (prompt, tests) in problems.items()
    ]


def write_jsonl(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    return path


def ready_or_skip(key: str) -> None:
    ok, note = runner(key).ready()
    if not ok:
        pytest.skip(f"multiple-{key}: {note}")


# --- reading rows ------------------------------------------------------------------------


def test_rows_from_jsonl_give_the_harness_prompt_stops_and_ids(tmp_path):
    data = write_jsonl(tmp_path / "humaneval-lua-reworded.jsonl", rows("lua"))
    task = MultipleTask("lua")
    task.load_data(data)
    problems = task.problems()
    # Sorted by HumanEval's number; ids line up with humaneval's.
    assert [p.task_id for p in problems] == ["HumanEval/23", "HumanEval/53"]
    assert [p.data["name"] for p in problems] == ["HumanEval_23_strlen", "HumanEval_53_add"]
    by_name = {r["name"]: r for r in rows("lua")}
    for p in problems:
        assert p.prompt == by_name[p.data["name"]]["prompt"].strip()
        assert not p.prompt.endswith("\n")
    # Stops: the row's and only what the harness adds, nothing of our own like "\nend".
    assert task.stop == ("\nlocal", "\nfunction", "\n--", "\n\n", "<file_sep>", "<|endoftext|>")
    add = problems[1]
    assert task.postprocess(add, "\n    return x + y\nend\n\nprint(1)") == "\n    return x + y\nend"
    assert task.postprocess(add, "\n    return x\nend<file_sep>x") == "\n    return x\nend"
    program = task.program(add, "\n    return x + y\nend")
    assert program.files == {
        "program.lua": add.prompt
        + "\n    return x + y\nend\n"
        + by_name["HumanEval_53_add"]["tests"]
    }
    assert program.command == ["lua", "program.lua"] and program.compile is None
    assert program.completion_token is False


def test_stop_tokens_come_from_the_row(tmp_path):
    row = {**rows("cpp")[0], "stop_tokens": ["\nXYZ"]}
    task = MultipleTask("cpp")
    task.load_data(write_jsonl(tmp_path / "rows.jsonl", [row]))
    assert task.stop == ("\nXYZ", "<file_sep>", "<|endoftext|>")
    (problem,) = task.problems()
    assert task.postprocess(problem, "a\n}\nb\nXYZ c") == "a\n}\nb"


def test_a_folder_of_jsonl_gz_and_parquet_serves_each_language(tmp_path):
    folder = tmp_path / "rows"
    (folder / "humaneval-go").mkdir(parents=True)
    with gzip.open(folder / "humaneval-lua-reworded.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows("lua"))
    pq.write_table(pa.Table.from_pylist(rows("go")), folder / "humaneval-go" / "test.parquet")
    write_jsonl(folder / "humaneval-sh-reworded.jsonl", rows("sh"))
    (folder / "README.md").write_text("not rows\n")
    # Another benchmark's file beside them (--data FOLDER serves every task): left alone.
    write_jsonl(folder / "HumanEvalPlus.jsonl", [{"task_id": "HumanEval/0", "prompt": "x"}])
    tasks = parse_tasks("multiple-lua,multiple-go,multiple-sh,humaneval", {"": folder})
    names = {t.name: [p.data["name"] for p in t.problems()] for t in tasks[:3]}
    assert names == {
        "multiple-lua": ["HumanEval_23_strlen", "HumanEval_53_add"],
        "multiple-go": ["HumanEval_23_strlen", "HumanEval_53_add"],  # rows say go_test.go
        "multiple-sh": ["HumanEval_23_strlen", "HumanEval_53_add"],
    }
    info = tasks[1].info()
    assert info["rows"]["source"] == "files"
    (used,) = info["rows"]["files"]
    assert used["path"].endswith("test.parquet") and used["rows"] == 2
    assert used["sha256"] == hashlib.sha256(Path(used["path"]).read_bytes()).hexdigest()
    assert info["names"] == names["multiple-go"] and info["row_languages"] == ["go_test.go"]
    assert info["toolchain"]["ready"] in (True, False)
    assert info["runner"]["command"] == ["env", "GOCACHE={gocache}", "go", "test", "{file}"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"task_id": "HumanEval/0", "prompt": "x"}\n',
            "not a MultiPL-E row (no name, language, tests, stop_tokens",
        ),
        ("not json\n", "rows.jsonl:1: not a JSON line"),
        (
            '{"name": "HumanEval_1_x", "language": "lua", "prompt": "p", "tests": "t", "stop_tokens": "\\n"}\n',
            "a list of texts stop_tokens",
        ),
    ],
)
def test_a_wrong_schema_is_one_clear_line(tmp_path, content, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(content)
    with pytest.raises(UserError) as raised:
        MultipleTask("lua").load_data(path)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_file_without_the_language_names_what_it_has(tmp_path):
    path = write_jsonl(tmp_path / "humaneval-cpp.jsonl", rows("cpp") + rows("java"))
    with pytest.raises(UserError, match=r"no row of language lua .*languages found: cpp, java"):
        MultipleTask("lua").load_data(path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .jsonl, .jsonl.gz or .parquet file"):
        MultipleTask("lua").load_data(tmp_path / "empty")
    write_jsonl(tmp_path / "empty" / "plus.jsonl", [{"task_id": "HumanEval/0", "prompt": "x"}])
    with pytest.raises(UserError, match=r"no MultiPL-E rows in the folder .*plus.jsonl"):
        MultipleTask("lua").load_data(tmp_path / "empty")


def test_two_different_copies_of_a_row_are_refused(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", rows("lua"))
    changed = [{**r, "prompt": r["prompt"] + "-- keep\n"} for r in rows("lua")]
    write_jsonl(tmp_path / "b.jsonl", changed)
    with pytest.raises(UserError, match="differs between"):
        MultipleTask("lua").load_data(tmp_path)
    write_jsonl(tmp_path / "b.jsonl", rows("lua"))  # the same rows twice are one
    task = MultipleTask("lua")
    task.load_data(tmp_path)
    assert len(task.problems()) == 2


def test_without_data_offline_the_translator_rows_run(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    task = MultipleTask("js")
    problems = task.problems()
    assert len(problems) > 150 and problems[0].task_id == "HumanEval/0"
    assert problems[0].data["name"].startswith("HumanEval_0_")
    info = task.info()
    assert info["rows"]["source"] == "codekiln translator" and info["rows"]["codekiln"]
    assert info["rows"]["multiple_version"] == "3"
    assert task.stop[-2:] == ("<file_sep>", "<|endoftext|>")
    assert task_id("HumanEval_151_double_the_difference") == "HumanEval/151"
    assert REVISION == "28441b6024e71d4a1c1c0f6bf171c935cd5a43f2"  # the BigCode harness's pin


# --- running as MultiPL-E runs it ------------------------------------------------------------


def test_commands_are_multiple_es():
    def argv(key):
        p = runner(key).program("x")
        return p.compile, p.command

    assert argv("cpp") == (["g++", "program.cpp", "-o", "program", "-std=c++17"], ["./program"])
    rustc, rust_run = argv("rs")
    assert rustc[0].endswith("rustc") and rustc[1:] == ["program.rs", "-o", "program"]
    assert rust_run == ["./program"] and runner("rs").program("x").run_timeout == 5.0
    javac, java = argv("java")
    assert javac[:3] == ["javac", "-encoding", "UTF8"] and javac[-1] == "program.java"
    assert java[:3] == ["java", "-ea", "-cp"] and java[3].startswith(".:") and java[4] == "Problem"
    assert java[3].endswith(".jar") and javac[javac.index("-cp") + 1] == java[3][2:]
    assert argv("ts") == (["tsc", "--target", "esnext", "program.ts"], ["node", "program.js"])
    assert argv("go")[1][-3:] == ["go", "test", "program_test.go"]
    assert {k: RUNNERS[k].limits.timeout for k in RUNNERS} == {
        "cpp": 15, "java": 15, "rs": 15, "go": 30, "ts": 15, "js": 5,
        "lua": 15, "php": 15, "rb": 5, "pl": 15, "sh": 15,
    }  # fmt: skip
    assert runner("go").program("x").fails_if_output_contains == {"stdout": ("FAIL",)}
    assert runner("pl").program("x").fails_if_output_contains == {
        "stdout": ("ERROR",),
        "stderr": ("ERROR",),
    }


def test_a_missing_toolchain_is_one_line():
    absent = Runner(
        key="nope",
        languages=("nope",),
        file="p.x",
        command=("no-such-compiler-codekiln", "{file}"),
        probes=(("no-such-compiler-codekiln", "--version"),),
        packages="nope-lang",
    )
    ok, note = absent.ready()
    assert not ok and note.startswith("missing no-such-compiler-codekiln (install nope-lang")
    assert "\n" not in note


def _run(items: list[tuple[MultipleTask, object, str]]) -> list:
    """Outcomes of (task, problem, completion), through one sandbox per task's limits, with
    a wall clock long enough for a loaded machine (the verdicts are what is tested here;
    test_commands_are_multiple_es checks MultiPL-E's timeouts)."""
    outcomes: list = [None] * len(items)
    by_task: dict[str, list[int]] = {}
    for i, (task, _, _) in enumerate(items):
        by_task.setdefault(task.name, []).append(i)
    for indices in by_task.values():
        task = items[indices[0]][0]
        jobs = [task.program(items[i][1], items[i][2]).job() for i in indices]
        limits = dataclasses.replace(task.limits, timeout=max(task.limits.timeout, 90.0))
        box = Sandbox(limits, ro_paths=task.ro_paths)
        for n, outcome in box.run_many(jobs, workers=4):
            outcomes[indices[n]] = outcome
    return outcomes


@pytest.mark.slow
@pytest.mark.parametrize("key", list(LANGS))
def test_right_completions_pass_and_wrong_ones_fail(tmp_path, key):
    ready_or_skip(key)
    task = MultipleTask(key)
    task.load_data(write_jsonl(tmp_path / f"humaneval-{key}.jsonl", rows(key)))
    items, expected = [], []
    for problem in task.problems():
        right, wrong = COMPLETIONS[key][problem.data["name"]]
        for raw, passes in ((right, True), (wrong, False)):
            items.append((task, problem, task.postprocess(problem, raw)))
            expected.append(passes)
    outcomes = _run(items)
    got = [o.status == "passed" for o in outcomes]
    details = [
        (i[1].data["name"], o.status, o.detail, o.stderr[-300:])
        for i, o in zip(items, outcomes, strict=True)
    ]
    assert got == expected, details
    assert all(o.status == "failed" for o, e in zip(outcomes, expected, strict=True) if not e), (
        details
    )


def test_the_verdict_is_multiple_es_exit_status_and_output(tmp_path):
    """No completion token (an early exit 0 passes, as in MultiPL-E); Perl's "ERROR" and
    PHP's "PHP Parse error" on the output fail a run that exited 0."""
    items, expected = [], []
    cases = {
        "js": ("HumanEval_53_add", "\n  process.exit(0);\n}\n", "passed"),
        "pl": (
            "HumanEval_53_add",
            '\n    print STDERR "ERROR: no";\n    return $x + $y;\n}',
            "failed",
        ),
        "php": (
            "HumanEval_53_add",
            '\n    echo "PHP Parse error";\n    return $x + $y;\n}\n',
            "failed",
        ),
    }
    for key, (name, completion, status) in cases.items():
        if not runner(key).ready()[0]:
            continue
        task = MultipleTask(key)
        task.load_data(write_jsonl(tmp_path / f"{key}.jsonl", rows(key)))
        problem = next(p for p in task.problems() if p.data["name"] == name)
        items.append((task, problem, completion))
        expected.append(status)
    if not items:
        pytest.skip("no node, perl or php here")
    outcomes = _run(items)
    assert [o.status for o in outcomes] == expected, [o.detail for o in outcomes]
    for outcome, status in zip(outcomes, expected, strict=True):
        if status == "failed":
            assert "exit status 0, but" in outcome.detail


def test_sandbox_output_rule_and_run_timeout():
    box = Sandbox()
    shell = ["sh", "-c", "echo all ok; echo 'FAIL x' >&2"]
    assert box.execute(Job({}, shell, fails_if_output_contains={"stdout": ("FAIL",)})).passed
    failed = box.execute(Job({}, shell, fails_if_output_contains={"stderr": ("FAIL",)}))
    assert (
        failed.status == "failed" and failed.detail == "exit status 0, but stderr contains 'FAIL'"
    )
    slow = box.execute(Job({}, ["sleep", "5"], compile=["true"], run_timeout=0.5))
    assert slow.status == "timeout" and slow.detail == "killed after 0.5 s (wall-clock limit)"
    assert slow.seconds < 3
    with pytest.raises(ValueError, match="stdout/stderr"):
        Job({}, ["true"], fails_if_output_contains={"out": ("x",)})


class RowBackend:
    """A backend that answers each stripped prompt with a raw generation from a table."""

    name = "rows"
    context_length = 4096

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.stops: list[tuple[str, ...]] = []

    def complete(self, prompts, params):
        from codekiln.generate import Completion

        self.stops.append(tuple(params.stop))
        return [[Completion(self.answers[p], 5, "stop")] for p in prompts]


def test_the_harness_runs_official_rows_and_records_their_source(tmp_path):
    from codekiln.evaluate.config import EvalConfig
    from codekiln.evaluate.harness import evaluate

    ready_or_skip("lua")
    data = write_jsonl(tmp_path / "humaneval-lua-reworded.jsonl", rows("lua"))
    right = {r["prompt"].strip(): COMPLETIONS["lua"][r["name"]][0] for r in rows("lua")}
    right[rows("lua")[1]["prompt"].strip()] = COMPLETIONS["lua"]["HumanEval_23_strlen"][1]
    backend = RowBackend(right)
    config = EvalConfig(tasks=["multiple-lua"], greedy=True, data={"": str(data)})
    result = evaluate(backend, tmp_path / "out", config, allow_code_execution=True)["multiple-lua"]
    outcomes = {p["task_id"]: p["outcomes"] for p in result["per_problem"]}
    assert outcomes == {"HumanEval/23": ["failed"], "HumanEval/53": ["passed"]}
    assert backend.stops == [("\nlocal", "\nfunction", "\n--", "\n\n", "<file_sep>")]
    written = json.loads((tmp_path / "out" / "multiple-lua" / "results.json").read_text())
    benchmark = written["benchmark"]
    assert benchmark["rows"]["files"][0]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert benchmark["names"] == ["HumanEval_23_strlen", "HumanEval_53_add"]
    assert benchmark["toolchain"]["ready"] and "Lua" in benchmark["toolchain"]["versions"]


def test_rust_is_compiled_as_multiple_e_does_so_overflow_panics(tmp_path):
    """Plain `rustc` (no -O): an i32 overflow panics, where an optimised build would wrap."""
    ready_or_skip("rs")
    row = {
        **rows("rs")[0],
        "tests": "}\n\nfn main() {\n    let candidate = add;\n    assert_eq!(candidate(2147483647, 1), -2147483648);\n}\n",
    }
    task = MultipleTask("rs")
    task.load_data(write_jsonl(tmp_path / "rs.jsonl", [row]))
    (problem,) = task.problems()
    wrapping = task.postprocess(problem, "\n    ((x as i32) + (y as i32)) as isize\n}\n")
    (outcome,) = _run([(task, problem, wrapping)])
    assert outcome.status == "failed" and "overflow" in outcome.stderr


def test_without_data_the_pinned_dataset_is_loaded_when_it_can_be(monkeypatch):
    """`datasets` present and the Hub answering: the harness's config and revision; failing,
    the translator's rows, with the reason kept for results.json."""
    import sys
    import types

    calls = []

    def load_dataset(path, name, revision, split):
        calls.append((path, name, revision, split))
        if name == "humaneval-lua":
            raise ConnectionError("offline")
        return list(reversed(rows("go")))

    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    go = MultipleTask("go")
    assert [p.data["name"] for p in go.problems()] == ["HumanEval_23_strlen", "HumanEval_53_add"]
    assert calls == [("nuprl/MultiPL-E", "humaneval-go", REVISION, "test")]
    assert go.info()["rows"] == {
        "source": "dataset",
        "dataset": "nuprl/MultiPL-E",
        "config": "humaneval-go",
        "revision": REVISION,
    }
    lua = MultipleTask("lua")
    assert len(lua.problems()) > 150
    rows_info = lua.info()["rows"]
    assert rows_info["source"] == "codekiln translator"
    assert "ConnectionError: offline" in rows_info["dataset_not_used"]


def test_the_translator_version_is_a_setting(monkeypatch):
    from codekiln.evaluate.config import EvalConfig

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    task = MultipleTask("lua")
    assert task.info()["rows"]["multiple_version"] == "3"
    task.configure(EvalConfig(tasks=["multiple-lua"], multiple_version="2.1.0"))
    assert task.info()["rows"]["multiple_version"] == "2.1.0"
