"""How each MultiPL-E language is compiled, run and judged: MultiPL-E's evaluators, in one table.

A program is MultiPL-E's: the row's stripped prompt, the completion, a newline and the row's
tests, in one file. Each :class:`Runner` runs it with the commands, flags, timeouts and pass
rule of MultiPL-E's ``evaluation/src/eval_<lang>.py`` (the versions the BigCode harness
vendors in ``bigcode_eval/tasks/custom_metrics/multiple_metrics``). :data:`RUNNERS` below is the
table (docs/multiple.md shows it): C++ ``g++ F.cpp -o F -std=c++17``, Java ``javac`` then
``java -ea`` with javatuples on the class path, Rust plain ``rustc`` (edition 2015, no
optimisation: overflow panics), Go ``go test F_test.go``, TypeScript ``tsc --target esnext``
then ``node``, the others their interpreter; a pass is exit status 0, and for Go no "FAIL" on
stdout, PHP no "PHP Parse error" on stdout, Perl no "ERROR" on stdout or stderr.

Where we differ, and why: MultiPL-E keeps the first 1-2 KB of each stream and we keep 64 KB, so
an "ERROR" (Perl) or "FAIL" (Go) printed after the first kilobytes fails here and can pass
there; Go's verdict there ignores the exit status, so ``go`` failing without a FAIL line (a
broken toolchain, not a program) counts as a pass there and as a failure here. The BigCode
harness's copy of the Java evaluator leaves javatuples off the run's class path (``-cp OUT``
overrides ``CLASSPATH``); we follow MultiPL-E's, which puts it on. Our sandbox adds the limits
a shared machine needs (memory, processes, disk), generous enough for these programs.

Go builds against a warm, read-only build cache made once per Go version (the bare
``go test`` of MultiPL-E reuses the user's cache; a cold one costs a second per program).
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

from codekiln.errors import UserError
from codekiln.evaluate.sandbox import Limits
from codekiln.evaluate.tasks import Program

SYSTEM_PREFIXES = ("/usr/", "/bin/", "/sbin/", "/lib", "/etc/", "/opt/")
JAVATUPLES = ("/usr/share/java/javatuples.jar", "/usr/multiple/javatuples-1.2.jar")
INSTALL = "scripts/install-toolchains.sh"


@dataclass(frozen=True)
class Runner:
    """One language as MultiPL-E runs it. Commands name the program file ``{file}`` and its
    stem ``{stem}``; ``{rustc}``, ``{javatuples}`` and ``{gocache}`` are this machine's."""

    key: str  # the task is multiple-<key>
    languages: tuple[str, ...]  # the row "language" values it runs (Go rows say go_test.go)
    file: str
    command: tuple[str, ...]
    compile: tuple[str, ...] | None = None
    timeout: float = 15.0  # the compile step, or the only step
    run_timeout: float | None = None  # the run step after a compile, when it differs
    fails_if_output_contains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    probes: tuple[tuple[str, ...], ...] = ()  # each must exit 0; its output names a version
    packages: str = ""  # what to install when a probe fails
    memory_bytes: int | None = 2 << 30
    processes: int = 64

    @property
    def limits(self) -> Limits:
        """The sandbox limits: MultiPL-E's wall-clock timeout per step, and room for the
        toolchain. RLIMIT_CPU counts every thread of a process (the JVM's, rustc's), so it
        is twice the wall clock: the wall clock is what stops a program, as in MultiPL-E."""
        wall = max(self.timeout, self.run_timeout or 0.0)
        return Limits(
            timeout=self.timeout,
            cpu_seconds=int(2 * wall) + 1,
            memory_bytes=self.memory_bytes,
            processes=self.processes,
        )

    def program(self, source: str) -> Program:
        """The sandbox job for a whole program text (prompt + completion + "\\n" + tests)."""
        where = _machine_paths(self.key)
        stem = self.file.split(".")[0]

        def fill(argv: tuple[str, ...]) -> list[str]:
            return [a.format(file=self.file, stem=stem, **where) for a in argv]

        return Program(
            files={self.file: source},
            command=fill(self.command),
            compile=fill(self.compile) if self.compile else None,
            completion_token=False,  # MultiPL-E's verdict is the exit status (and output)
            fails_if_output_contains=dict(self.fails_if_output_contains),
            run_timeout=self.run_timeout,
        )

    def ro_paths(self) -> tuple[str, ...]:
        """Folders outside the system directories the sandbox must show (a rustup sysroot,
        the warm Go cache, a javatuples jar elsewhere)."""
        where = _machine_paths(self.key)
        folders = {
            "rustc": lambda p: os.path.dirname(os.path.dirname(p)),  # the sysroot
            "javatuples": os.path.dirname,
            "gocache": lambda p: p,
        }
        paths = []
        for name, path in where.items():
            folder = folders[name](path) if os.path.isabs(path) else ""
            if folder and not (folder + "/").startswith(SYSTEM_PREFIXES):
                paths.append(folder)
        return tuple(paths)

    def ready(self) -> tuple[bool, str]:
        """Whether this machine can run the language, with the versions of its toolchain
        ("g++ (Debian 12.2.0-14) 12.2.0"), or what is missing."""
        return _ready(self.key, self.probes, self.packages)


@functools.cache
def _ready(key: str, probes: tuple[tuple[str, ...], ...], packages: str) -> tuple[bool, str]:
    """(True, the first output line of each probe) or (False, why the toolchain is not
    usable): probed once per process."""
    where = _machine_paths(key)
    lines = []
    for probe in probes:
        argv = [a.format(**where) for a in probe]
        if shutil.which(argv[0]) is None:
            return False, f"missing {argv[0]} (install {packages}; {INSTALL})"
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            return False, f"{' '.join(argv)} failed: {error} (install {packages}; {INSTALL})"
        output = (done.stdout.strip() or done.stderr.strip()).splitlines()
        if done.returncode != 0:
            why = (done.stderr.strip() or done.stdout.strip()).splitlines()
            reason = why[-1][:200] if why else f"exit status {done.returncode}"
            return False, f"{' '.join(argv)}: {reason} (install {packages}; {INSTALL})"
        lines.append(output[0].strip() if output else argv[0])
    return True, "; ".join(lines)


@functools.cache
def _machine_paths(key: str) -> dict[str, str]:
    """The machine-specific paths a language's commands use."""
    if key == "rs":
        return {"rustc": rustc()}
    if key == "java":
        return {"javatuples": javatuples() or JAVATUPLES[0]}
    if key == "go":
        return {"gocache": go_cache() or ""}  # GOCACHE="": go's default, under HOME
    return {}


def rustc() -> str:
    """rustc by full path: rustup's lives outside the sandbox's PATH."""
    found = shutil.which("rustc")
    if found is None:
        return "rustc"
    try:
        done = subprocess.run(
            [found, "--print", "sysroot"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return found
    root = done.stdout.strip()
    binary = os.path.join(root, "bin", "rustc")
    return binary if done.returncode == 0 and os.path.exists(binary) else found


def javatuples() -> str | None:
    """The javatuples jar MultiPL-E's Java rows import (Debian: libjavatuples-java)."""
    for path in (*JAVATUPLES, *sorted(glob.glob("/usr/share/java/javatuples*.jar"))):
        if os.path.exists(path):
            return path
    return None


def go_cache() -> str | None:
    """A Go build cache warmed with what MultiPL-E's Go tests import (testing, fmt), made
    once per Go version and user, that the sandbox shows read-only: `go test` reads it and
    does not need to write it. None when Go is missing or the cache cannot be made."""
    go = shutil.which("go")
    if go is None:
        return None
    try:
        version = subprocess.run(
            [go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    folder = os.path.join(tempfile.gettempdir(), f"codekiln-go-cache-{os.getuid()}-{version}")
    if _ours(folder) and os.path.exists(os.path.join(folder, "README")):
        return folder
    return _warm_go_cache(go, folder)


def _ours(folder: str) -> bool:
    """Whether `folder` exists, is ours and only we can write it (/tmp is shared)."""
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & 0o022 and os.path.isdir(folder)


WARM_TEST = """package warm_test

import (
    "testing"
    "fmt"
)

func TestWarm(t *testing.T) {
    if fmt.Sprintf("%v", []int{1}) != "[1]" {
        t.Errorf("no")
    }
}
"""


def _warm_go_cache(go: str, folder: str) -> str | None:
    work = tempfile.mkdtemp(prefix="codekiln-go-warm-")
    try:
        cache = os.path.join(work, "cache")
        test = os.path.join(work, "warm_test.go")
        with open(test, "w", encoding="utf-8") as f:
            f.write(WARM_TEST)
        env = {**os.environ, "GOCACHE": cache, "GOFLAGS": "", "GO111MODULE": ""}
        done = subprocess.run(
            [go, "test", test], capture_output=True, text=True, timeout=300, cwd=work, env=env
        )
        if done.returncode != 0:
            return None
        for root, dirs, files in os.walk(cache):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        os.chmod(cache, 0o755)
        if os.path.lexists(folder) and not _ours(folder):
            return None  # someone else's: leave it, and run Go with a cold cache
        try:
            os.rename(cache, folder)
        except OSError:
            if not _ours(folder):  # another process won the race: use its cache
                return None
        return folder
    except (OSError, subprocess.TimeoutExpired):
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)


SCRIPT = dict(memory_bytes=2 << 30, processes=64)
RUNNERS: dict[str, Runner] = {
    r.key: r
    for r in (
        Runner(
            key="cpp",
            languages=("cpp",),
            file="program.cpp",
            compile=("g++", "{file}", "-o", "{stem}", "-std=c++17"),
            command=("./{stem}",),
            probes=(("g++", "--version"),),
            packages="g++",
            memory_bytes=4 << 30,
        ),
        Runner(
            key="java",
            languages=("java",),
            file="program.java",
            # CLASSPATH=javatuples for javac, as MultiPL-E sets it (the sandbox has no env).
            compile=("javac", "-encoding", "UTF8", "-cp", "{javatuples}", "-d", ".", "{file}"),
            command=("java", "-ea", "-cp", ".:{javatuples}", "Problem"),
            probes=(("javac", "-version"), ("java", "-version"), ("ls", "{javatuples}")),
            packages="openjdk-17-jdk-headless libjavatuples-java",
            memory_bytes=None,
            processes=512,
        ),
        Runner(
            key="rs",
            languages=("rs", "rust"),
            file="program.rs",
            compile=("{rustc}", "{file}", "-o", "{stem}"),
            command=("./{stem}",),
            run_timeout=5.0,
            probes=(("{rustc}", "--version"), ("cc", "--version")),
            packages="rustc (rustup) and a C linker (gcc)",
            memory_bytes=None,
            processes=256,
        ),
        Runner(
            key="go",
            languages=("go_test.go", "go"),
            file="program_test.go",
            # The warm cache when there is one; else go's default under the sandbox's HOME.
            command=("env", "GOCACHE={gocache}", "go", "test", "{file}"),
            timeout=30.0,
            # MultiPL-E reads only stdout: "[build failed]", "[setup failed]" and failed
            # tests all print FAIL there.
            fails_if_output_contains={"stdout": ("FAIL",)},
            probes=(("go", "version"),),
            packages="golang-go",
            memory_bytes=None,
            processes=512,
        ),
        Runner(
            key="ts",
            languages=("ts",),
            file="program.ts",
            compile=("tsc", "--target", "esnext", "{file}"),
            command=("node", "{stem}.js"),
            probes=(("tsc", "--version"), ("node", "--version")),
            packages="nodejs npm, then npm install -g typescript",
            memory_bytes=None,
            processes=512,
        ),
        Runner(
            key="js",
            languages=("js", "javascript"),
            file="program.js",
            command=("node", "{file}"),
            timeout=5.0,
            probes=(("node", "--version"),),
            packages="nodejs",
            memory_bytes=None,
            processes=256,
        ),
        Runner(
            key="lua",
            languages=("lua",),
            file="program.lua",
            command=("lua", "{file}"),
            probes=(
                ("lua", "-v"),
                ("lua", "-e", "print('luaunit ' .. require('luaunit')._VERSION)"),
            ),
            packages="lua5.4 lua-unit",
            **SCRIPT,
        ),
        Runner(
            key="php",
            languages=("php",),
            file="program.php",
            command=("php", "{file}"),
            fails_if_output_contains={"stdout": ("PHP Parse error",)},
            probes=(("php", "--version"),),
            packages="php-cli",
            **SCRIPT,
        ),
        Runner(
            key="rb",
            languages=("rb", "ruby"),
            file="program.rb",
            command=("ruby", "{file}"),
            timeout=5.0,
            probes=(
                ("ruby", "--version"),
                (
                    "ruby",
                    "-e",
                    "require 'test/unit'; Test::Unit::AutoRunner.need_auto_run = false; "
                    "print 'test-unit ', Gem.loaded_specs['test-unit']&.version",
                ),
            ),
            packages="ruby (with its test-unit gem: ruby-test-unit)",
            **SCRIPT,
        ),
        Runner(
            key="pl",
            languages=("pl",),
            file="program.pl",
            command=("perl", "{file}"),
            fails_if_output_contains={"stdout": ("ERROR",), "stderr": ("ERROR",)},
            probes=(
                ("perl", "-e", "print qq(perl $^V)"),
                ("perl", "-MTest::Deep", "-e", "print qq(Test::Deep $Test::Deep::VERSION)"),
            ),
            packages="perl libtest-deep-perl",
            **SCRIPT,
        ),
        Runner(
            key="sh",
            languages=("sh", "bash"),
            file="program.sh",
            command=("bash", "{file}"),
            probes=(("bash", "--version"),),
            packages="bash",
            **SCRIPT,
        ),
    )
}


def runner(key: str) -> Runner:
    """The Runner of a task's language key ("cpp", "go", ...)."""
    if key not in RUNNERS:
        raise UserError(f"no MultiPL-E runner for {key!r}: one of {', '.join(RUNNERS)}")
    return RUNNERS[key]
