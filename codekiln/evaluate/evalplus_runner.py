"""EvalPlus's judging inside one sandbox cell: `python -I -c <this file> job.json`.

Not imported by codekiln: `codekiln.evaluate.evalplus` reads this file's text and runs it in
the sandbox (a real module, so it is linted and read as code). See that module for the rules.
"""

import base64
import copy
import json
import math
import os
import pickle
import select
import signal
import sys
import time

MARK = "codekiln-evalplus "


def token():
    fd_in = os.environ.pop("CODEKILN_TOKEN_IN", "")
    fd_out = os.environ.pop("CODEKILN_TOKEN_OUT", "")
    if not fd_in:
        return lambda: None, None
    with open(int(fd_in), "rb") as pipe:
        nonce = pipe.read()

    def done():
        os.write(int(fd_out), nonce)
        os.close(int(fd_out))

    return done, int(fd_out)


def report(out, record):
    os.write(out, (MARK + json.dumps(record) + "\n").encode())


def quiet():
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def short(value, size=80):
    try:
        text = repr(value)
    except BaseException:
        text = "?"
    return text if len(text) <= size else text[: size - 3] + "..."


def load_function(path, name, before=None):
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec")
    if before is not None:
        before()
    scope = {}
    exec(code, scope)
    return scope[name]


# What EvalPlus's reliability guard takes away from the candidate (None: calling it raises).
DISABLED = {
    "builtins": ("exit", "quit", "open", "help"),
    "os": (
        "kill",
        "system",
        "putenv",
        "remove",
        "removedirs",
        "rmdir",
        "fchdir",
        "setuid",
        "fork",
        "forkpty",
        "killpg",
        "rename",
        "renames",
        "truncate",
        "replace",
        "unlink",
        "fchmod",
        "fchown",
        "chmod",
        "chown",
        "chroot",
        "lchflags",
        "lchmod",
        "lchown",
        "getcwd",
        "chdir",
    ),
    "shutil": ("rmtree", "move", "chown"),
    "subprocess": ("Popen",),
}
BLOCKED_MODULES = ("ipdb", "joblib", "resource", "psutil", "tkinter")


def guard(memory):
    import builtins
    import faulthandler
    import resource
    import shutil
    import subprocess

    for limit in (resource.RLIMIT_AS, resource.RLIMIT_DATA, resource.RLIMIT_STACK):
        try:
            resource.setrlimit(limit, (memory, memory))
        except (ValueError, OSError):
            pass  # above this sandbox's hard limit: keep the sandbox's
    faulthandler.disable()
    os.environ["OMP_NUM_THREADS"] = "1"
    modules = {"builtins": builtins, "os": os, "shutil": shutil, "subprocess": subprocess}
    for module, names in DISABLED.items():
        for name in names:
            setattr(modules[module], name, None)
    for name in BLOCKED_MODULES:
        sys.modules[name] = None


def truth(job, inputs, out):
    quiet()
    fn = load_function("solution.py", job["entry_point"])
    outputs, times = {}, {}
    for phase in job["phases"]:
        outputs[phase], times[phase] = [], []
        for index, args in enumerate(inputs[phase]):
            args = copy.deepcopy(args)
            try:
                start = time.time()
                outputs[phase].append(fn(*args))
                times[phase].append(time.time() - start)
            except BaseException as error:
                reason = f"{type(error).__name__}: {short(error)}"
                report(out, {"error": f"{phase} input {index}: {reason}"})
                return
    blob = base64.b64encode(pickle.dumps(outputs)).decode()
    report(out, {"times": times, "expected": blob})


class TimeLimit(Exception):
    pass


def on_alarm(signum, frame):
    raise TimeLimit()


def poly(xs, x):
    return sum([c * math.pow(x, i) for i, c in enumerate(xs)])


def is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def judge(job, phase, inputs, expected, send):
    if job["atol"] != 0 or any(is_floats(e) for e in expected):
        import numpy  # the comparison's, loaded before the guard as in EvalPlus's process
    try:
        fn = load_function("solution.py", job["entry_point"], lambda: guard(job["memory"]))
    except BaseException as error:
        send({"fail": None, "reason": f"the program raised {type(error).__name__}: {short(error)}"})
        return
    atol = job["atol"]
    limits = job["time_limits"][phase]
    signal.signal(signal.SIGALRM, on_alarm)
    for index, args in enumerate(inputs):
        try:
            signal.setitimer(signal.ITIMER_REAL, limits[index])
            try:
                out = fn(*args)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            exp = expected[index]
            exact = out == exp
            if job["entry_point"] == "find_zero":
                ok = abs(poly(*args, out)) <= atol
                why = f"|poly(xs, {short(out)})| > {atol}"
            else:
                if atol == 0 and is_floats(exp):
                    atol = 1e-6  # from here on, as in EvalPlus
                if not exact and atol != 0:
                    import numpy

                    ok = (
                        type(out) is type(exp)
                        and (not isinstance(exp, (list, tuple)) or len(out) == len(exp))
                        and bool(numpy.allclose(out, exp, rtol=1e-07, atol=atol))
                    )
                else:
                    ok = bool(exact)
                why = f"got {short(out)}, expected {short(exp)}"
            if not ok:
                send({"fail": index, "reason": why})
                return
        except TimeLimit:
            send({"fail": index, "reason": f"ran past its {limits[index]:g} s limit", "slow": True})
            return
        except BaseException as error:
            send({"fail": index, "reason": f"raised {type(error).__name__}: {short(error)}"})
            return
    send({"pass": True})


def fork():
    # Processes of the sandbox's uid count together against its process limit: when other
    # runs hold them all for a moment, wait for one rather than fail the candidate.
    for _ in range(100):
        try:
            return os.fork()
        except BlockingIOError:
            time.sleep(0.05)
    return None


def run_group(job, phase, inputs, expected, token_out):
    read, write = os.pipe()
    pid = fork()
    if pid is None:
        return {"phase": phase, "status": "error", "reason": "could not start a process"}
    if pid == 0:
        os.setpgid(0, 0)
        os.close(read)
        if token_out is not None:
            os.close(token_out)
        quiet()
        try:
            judge(job, phase, inputs, expected, lambda r: os.write(write, json.dumps(r).encode()))
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + job["deadlines"][phase]
    data, timed_out = b"", False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        if select.select([read], [], [], left)[0]:
            chunk = os.read(read, 1 << 16)
            if not chunk:
                break
            data += chunk
    os.close(read)
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    os.waitpid(pid, 0)
    if timed_out:
        return {
            "phase": phase,
            "status": "timeout",
            "reason": f"did not finish in {job['deadlines'][phase]:g} s",
        }
    try:
        result = json.loads(data)
    except ValueError:
        return {"phase": phase, "status": "fail", "reason": "the program ended the test process"}
    if result.get("pass"):
        return {"phase": phase, "status": "pass"}
    status = "timeout" if result.get("slow") else "fail"
    return {
        "phase": phase,
        "status": status,
        "input": result["fail"],
        "of": len(inputs),
        "reason": result["reason"],
    }


def check(job, inputs, out, token_out):
    # Imported once here, not in every forked child (guard() uses them there).
    import builtins  # noqa: F401
    import faulthandler  # noqa: F401
    import resource  # noqa: F401
    import shutil  # noqa: F401
    import subprocess  # noqa: F401

    with open("expected.pkl", "rb") as f:
        expected = pickle.load(f)
    with open("solution.py", encoding="utf-8") as f:
        if "numpy" in f.read():
            import numpy  # noqa: F401 - loaded before the clock starts, as in EvalPlus
    for phase in job["phases"]:
        result = run_group(job, phase, inputs[phase], expected[phase], token_out)
        report(out, result)
        if result["status"] != "pass":
            break  # humaneval+ needs every group to pass


def main():
    done, token_out = token()
    out = os.dup(1)
    with open(sys.argv[1], encoding="utf-8") as f:
        job = json.load(f)
    with open("inputs.pkl", "rb") as f:
        inputs = pickle.load(f)
    if job["mode"] == "truth":
        truth(job, inputs, out)
    else:
        check(job, inputs, out, token_out)
    done()
    os._exit(0)


if __name__ == "__main__":
    main()
