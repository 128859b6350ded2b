"""The fence around a cell: bubblewrap's namespaces and a read-only view of the system.

``bwrap_args`` is the command line that starts a launcher inside ``bwrap`` (new PID, network,
IPC and UTS namespaces, private size-limited tmpfs mounts for ``/tmp`` and ``/sandbox``, the
system and the interpreter read-only); ``bwrap_support`` probes once whether that works here.
Without it the sandbox warns once (``warn_unfenced``) what is then missing.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import PurePosixPath

from codekiln.evaluate.sandbox.core import PATH, SANDBOX_DIR, Limits

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")


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


def bwrap_args(limits: Limits, extra: Sequence[str], tmpfs_size: bool) -> list[str]:
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
        probe = bwrap_args(Limits(), (), sized) + ["true"]
        try:
            done = subprocess.run(probe, capture_output=True, timeout=10, env={"PATH": PATH})
        except (OSError, subprocess.TimeoutExpired):
            return False, False
        if done.returncode == 0:
            return True, sized
    return False, False


def interpreter_readable_by(uid: int) -> bool:
    """Whether a process of another uid can traverse to this interpreter's files."""
    for prefix in {sys.base_prefix, sys.prefix}:
        path = os.path.realpath(prefix)
        while path != "/":
            if not os.stat(path).st_mode & 0o001:
                return False
            path = os.path.dirname(path)
    return True


@functools.cache
def warn_unfenced(drops_uid: bool) -> None:
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
