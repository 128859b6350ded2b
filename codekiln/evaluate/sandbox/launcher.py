"""The sandbox's trusted launcher: ``python -I -c <this file's text> STATUS_FD TOKEN_FD pidns|-``.

Not imported by codekiln: ``cells`` reads this file's text and starts it in each cell (inside
bwrap where it works), so it uses the standard library only. It reads one JSON job a line on
fd 0 and runs the jobs one after another: it writes the job's files, runs each step (an
optional compile, then the run) in a forked child that drops to ``nobody`` when we are root,
sets the rlimits and execs the command, reports each step on the status pipe (``STATUS_FD``)
as JSON lines, and between jobs kills what the program left and empties the folders. The
completion token's write end is ``TOKEN_FD``; ``pidns`` says the cell has its own PID
namespace. See the package docstring for the design.
"""

import atexit
import ctypes
import json
import os
import resource
import signal
import sys
import types

# Set by main() from its arguments: the status pipe, the token pipe, whether the cell has its
# own PID namespace, and our copy of the job pipe (fd 0 becomes /dev/null for the program).
STATUS_FD = TOKEN_FD = CONTROL_FD = -1
PIDNS = False
PENDING = bytearray()  # read from the job pipe, not yet a whole line
LIBC = ctypes.CDLL(None, use_errno=True)


def report(record):
    os.write(STATUS_FD, (json.dumps(record) + "\n").encode())


def read_spec():
    while b"\n" not in PENDING:
        chunk = os.read(CONTROL_FD, 1 << 16)
        if not chunk:
            return None
        PENDING.extend(chunk)
    line, _, rest = bytes(PENDING).partition(b"\n")
    PENDING[:] = rest
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
    record = {
        "event": "exit",
        "step": step,
        "last": last,
        "status": status,
        "cpu": usage.ru_utime + usage.ru_stime,
        "maxrss": usage.ru_maxrss * 1024,
    }
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
    global STATUS_FD, TOKEN_FD, PIDNS, CONTROL_FD
    STATUS_FD, TOKEN_FD, PIDNS = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "pidns"
    CONTROL_FD = os.dup(0)
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


if __name__ == "__main__":
    main()
