"""The rlimit backend: the same harness fork servers, contained with ``unshare``. Weaker than bubblewrap.

What it is: an opt-in fallback for machines where bubblewrap cannot run. Each worker is
``unshare --mount --net --pid --fork --kill-child --mount-proc`` (plus ``--map-root-user`` when
not root) around the harness fork server (``python -I -S -B``, empty environment), which first
``contain``s itself (sandbox/forkserver.py): every host mount read-only; a fresh tmpfs /tmp
(``disk_mb``) as the only writable place, holding the job work directories; empty read-only
tmpfs over /var/tmp, /run and the home directory (the interpreter bound back read-only when it
lives there); a minimal /dev (no /dev/shm to write to, no disks); its own network namespace
(only its own loopback: host listeners are unreachable); its own PID namespace, whose init is
the server, so it watches the count and memory of a job's processes, kills every leftover
after each job, and killing it (pool close) takes every forked child down with it; all
capabilities dropped, no_new_privs. Each job also gets a new session, rlimits (AS, CPU, FSIZE,
NPROC unless root), a wall clock and the harness's audit hook (no ctypes, exec, frames).
``probe`` runs that setup once; when it fails, ``RlimitPool`` refuses (SandboxUnavailable, one
line naming ``allow_unsafe: true``) unless ``allow_unsafe`` is set, which falls back to the old
bare mode with its loud warning: no namespaces, the job can write whatever the user can, reach
the network and loopback; the server (a child subreaper) still kills the job's group and every
process left below it after each job and on close.
What it does not cover (say it loudly): reads of the rest of the host filesystem (whatever your
user can read outside /tmp, /var/tmp, /run, /dev and your home: the repository, /etc, other
users' readable files); Unix sockets bound elsewhere on the filesystem stay connectable; no
seccomp, so a kernel bug is an escape. Use it only for code you would run anyway.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence

from sandbox.bubblewrap import FORKSERVER, SandboxUnavailable, interpreter, interpreter_binds
from sandbox.pool import WorkerPool, process_budget
from sandbox.protocol import Job, Result

WARNING = ("SANDBOX 'rlimit' IS NOT ISOLATION: generated code runs as your user with your filesystem "
           "and network, bounded only by rlimits and a wall clock. Prefer 'bubblewrap'.")
CONTAINED_WARNING = ("SANDBOX 'rlimit' IS NOT ISOLATION LIKE 'bubblewrap': jobs get their own mount, "
                     "network and PID namespaces and a read-only host filesystem, but can read whatever "
                     "your user can outside /tmp, /var/tmp, /run, /dev and your home. Prefer 'bubblewrap'.")
REFUSAL = ("sandbox 'rlimit' cannot contain jobs with unshare here ({why}); untrusted code will not run. "
           "Set allow_unsafe: true in the rlimit sandbox options to run it anyway with rlimits only "
           "(your filesystem, network and loopback listeners exposed).")
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

log = logging.getLogger(__name__)


class RlimitWarning(UserWarning):
    """Raised (as a warning) whenever the weaker rlimit backend is created."""


def unshare_binary() -> str | None:
    """util-linux ``unshare``: on PATH, else in /usr/bin or /bin."""
    return shutil.which("unshare") or shutil.which("unshare", path="/usr/bin:/bin")


def hidden_dirs() -> list[str]:
    """Host directories hidden (empty, read-only) inside: /var/tmp, /run and the home directories."""
    homes = [os.environ.get("HOME") or "", pwd.getpwuid(os.getuid()).pw_dir]
    out: list[str] = []
    for path in ["/var/tmp", "/run", *homes]:
        if not path:
            continue
        real = os.path.realpath(path)
        if real == "/" or any(top.startswith(real.rstrip("/") + "/") for top in ("/tmp", "/dev")):
            continue
        if real not in out:
            out.append(real)
    return out


def contained_argv(disk_mb: int = 64) -> list[str]:
    """The command that starts one contained harness fork server (see the module docstring)."""
    exe, base = interpreter()
    argv = [unshare_binary() or "unshare", "--mount", "--net", "--pid", "--fork", "--kill-child",
            "--mount-proc"]
    if os.getuid() != 0:
        argv.append("--map-root-user")
    argv += ["--", exe, "-I", "-S", "-B", str(FORKSERVER), "--pidns", "--contain", "--disk-mb", str(disk_mb)]
    for path in hidden_dirs():
        argv += ["--hide", path]
    for path in interpreter_binds(exe, base):
        argv += ["--keep", os.path.realpath(path)]
    return argv


def probe(disk_mb: int = 8) -> str | None:
    """None when ``unshare`` can contain a fork server here, else why not (one line)."""
    if unshare_binary() is None:
        return "no unshare binary (util-linux) on PATH"
    try:
        done = subprocess.run([*contained_argv(disk_mb), "--probe"], capture_output=True, text=True,
                              timeout=30, env=ENV)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return " ".join(str(exc).split())
    if done.returncode == 0 and done.stdout.strip() == "ok":
        return None
    lines = [line for line in (done.stderr + "\n" + done.stdout).splitlines() if line.strip()]
    return (lines[-1].strip() if lines else f"unshare exited with {done.returncode}")[:300]


class RlimitPool:
    """A ``Sandbox`` of contained fork servers (or bare ones with ``allow_unsafe``); warns loudly."""

    def __init__(self, concurrency: int | None = None, quiet: bool = False, allow_unsafe: bool = False,
                 disk_mb: int = 64) -> None:
        why = probe()
        self.contained = why is None
        self.roots: list[str] = []
        if self.contained:
            if not quiet:
                warnings.warn(CONTAINED_WARNING, RlimitWarning, stacklevel=2)
                log.warning(CONTAINED_WARNING)
            self.pool = WorkerPool(lambda: contained_argv(disk_mb), size=concurrency, env=dict(ENV))
            return
        if not allow_unsafe:
            raise SandboxUnavailable(REFUSAL.format(why=" ".join(str(why).split())))
        warnings.warn(WARNING, RlimitWarning, stacklevel=2)  # always: this is the unsafe fallback
        log.warning("%s (containment unavailable: %s)", WARNING, why)
        exe, _ = interpreter()

        def argv() -> list[str]:
            self.roots.append(tempfile.mkdtemp(prefix="autodidact-sandbox-"))
            return [exe, "-I", "-S", "-B", str(FORKSERVER), "--root", self.roots[-1]]

        self.pool = WorkerPool(argv, size=concurrency, env=dict(ENV))

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
