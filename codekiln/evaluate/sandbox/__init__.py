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
A cell runs its jobs one at a time; between two, its launcher kills whatever the last one left
and empties ``/sandbox`` and ``/tmp``.

Completion token. ``completion_token=True`` makes a pass require proof that the program ran to
its end, not just exit status 0: the harness draws a random nonce per run; the launcher hands it
to the child on a pipe whose fd number is in ``CODEKILN_TOKEN_IN`` and gives it a write-only
pipe back to the harness in ``CODEKILN_TOKEN_OUT``. The trusted prologue of the program (see
``python_check_program``) reads and closes the first and removes both variables before the
untrusted code runs, and writes the nonce back after it returns. The limits of this are in
docs/sandbox.md.

Without bubblewrap the same launcher runs in a private temporary directory with rlimits, its own
session and an empty environment; a warning says once per process what is then missing.

Modules: ``core`` (jobs, limits, outcomes and how a run is judged), ``bubblewrap`` (the fence),
``cells`` (the launcher processes and ``Sandbox``), and the two programs that run inside a cell
as ``python -I -c`` text: ``launcher`` and ``prologue`` (a HumanEval check's token wrapper).
"""

from codekiln.evaluate.sandbox.bubblewrap import bwrap_support
from codekiln.evaluate.sandbox.cells import Sandbox
from codekiln.evaluate.sandbox.core import (
    ISOLATIONS,
    PATH,
    STATUSES,
    Job,
    Limits,
    Outcome,
    python_check_program,
)

__all__ = [
    "ISOLATIONS",
    "PATH",
    "STATUSES",
    "Job",
    "Limits",
    "Outcome",
    "Sandbox",
    "bwrap_support",
    "python_check_program",
]
