"""The rlimit backend: the same harness fork servers, with no namespaces. Much weaker.

What it is: an opt-in fallback for machines where bubblewrap cannot create user namespaces. Each
worker runs the harness with ``python -I -S -B`` and an empty environment; each job gets its own
temporary work directory, a new session, rlimits (AS, CPU, FSIZE, NPROC unless root), a wall
clock that kills its process group, and the harness's audit hook (no ctypes, exec, frames).
What it does not cover (say it loudly): no filesystem isolation (a job can read and write
whatever the user can), no network isolation, no PID namespace (a job that leaves its session
survives the cleanup; as root nothing bounds a fork bomb but the wall clock). Use it only for
code you would run anyway.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Sequence

from sandbox.bubblewrap import FORKSERVER, interpreter
from sandbox.pool import WorkerPool, process_budget
from sandbox.protocol import Job, Result

WARNING = ("SANDBOX 'rlimit' IS NOT ISOLATION: generated code runs as your user with your filesystem "
           "and network, bounded only by rlimits and a wall clock. Prefer 'bubblewrap'.")

log = logging.getLogger(__name__)


class RlimitWarning(UserWarning):
    """Raised (as a warning) whenever the weaker rlimit backend is created."""


class RlimitPool:
    """A ``Sandbox`` without namespaces; warns loudly when created."""

    def __init__(self, concurrency: int | None = None, quiet: bool = False) -> None:
        if not quiet:
            warnings.warn(WARNING, RlimitWarning, stacklevel=2)
            log.warning(WARNING)
        exe, _ = interpreter()
        self.roots: list[str] = []

        def argv() -> list[str]:
            self.roots.append(tempfile.mkdtemp(prefix="autodidact-sandbox-"))
            return [exe, "-I", "-S", "-B", str(FORKSERVER), "--root", self.roots[-1]]

        self.pool = WorkerPool(argv, size=concurrency, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})

    def execute(self, jobs: Sequence[Job]) -> list[Result]:
        budget: dict[int, int | None] = {}

        def nproc(job: Job) -> int | None:
            n = job.limits.max_processes
            if n not in budget:
                budget[n] = process_budget(n)
            return budget[n]

        return self.pool.execute(jobs, nproc)

    def close(self) -> None:
        self.pool.close()
        for root in self.roots:
            shutil.rmtree(root, ignore_errors=True)
        self.roots = []

    def __enter__(self) -> RlimitPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
