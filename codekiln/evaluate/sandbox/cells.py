"""Cells: the launcher processes that run jobs, and the Sandbox that hands jobs to them.

A cell is one started launcher (``launcher.py``, run with ``python -I -c``), inside bwrap
where it works (see ``bubblewrap``), with three pipes: jobs in, the launcher's records out,
and the completion token back. The harness side here writes a job, reads the pipes until the
job is done or its deadline passes (then kills the whole cell), and judges the result
(``core.judge``). ``Sandbox.run_many`` keeps one cell per worker, started ahead of its job and
replaced when a job kills it or times out.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence

from codekiln.errors import UserError
from codekiln.evaluate.sandbox import bubblewrap
from codekiln.evaluate.sandbox.core import (
    ISOLATIONS,
    NOBODY,
    PATH,
    SANDBOX_DIR,
    Job,
    Limits,
    Outcome,
    judge,
    program_text,
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
        return judge(job, limits, records, timed_out, stdout, stderr, token, nonce, seconds)

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
        works, sized = bubblewrap.bwrap_support() if isolation != "none" else (False, False)
        if isolation == "bwrap" and not works:
            raise UserError(
                "isolation='bwrap' but bubblewrap does not work here: install it "
                "(apt install bubblewrap) and check that `bwrap --ro-bind / / true` runs"
            )
        self.isolation = "bwrap" if works else "none"
        self._sized = sized
        root = os.geteuid() == 0
        self._uid = (
            NOBODY if root and (works or bubblewrap.interpreter_readable_by(NOBODY)) else None
        )
        if isolation == "auto" and not works:
            bubblewrap.warn_unfenced(self._uid is not None)

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
        launcher = [sys.executable, "-I", "-c", program_text("launcher.py")]
        env = {"PATH": PATH, "LANG": "C.UTF-8"}
        if self.isolation == "bwrap":
            args = bubblewrap.bwrap_args(self.limits, self.ro_paths, self._sized)
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
