"""The in-sandbox fork server (stdlib only; runs as a script inside the sandbox).

What it is: ``serve`` reads jobs as JSON lines on stdin and answers one JSON line per job on
stdout. Per job it forks a fresh child from a clean parent (the child runs sandbox/harness.py's
``child_main``), waits with the wall clock, and, with ``--pidns`` (inside bubblewrap's own PID
namespace), watches the count and the total memory of the job's processes (polled every 10 ms)
and kills every leftover process after the job; without
it (the rlimit backend, E2B) it kills the job's process group. Each job's work directory, and
anything else the job left in the work root, is wiped before the next one. The server is made
non-dumpable so a job running as the same uid can neither ptrace it nor read its memory.
What it does not cover: judging (the host does that, sandbox/protocol.py), isolation (bubblewrap).
"""

import gc
import json
import os
import select
import shutil
import signal
import stat
import sys
import time

if __package__:
    from sandbox import harness
else:  # run as a script (-I leaves the script's directory off sys.path)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness

REPORT_CAP = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
WORK_ROOT = "/tmp"


def _usage():
    """Processes in our PID namespace other than init and us, and their total anonymous resident bytes."""
    me, count, pages = os.getpid(), 0, 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (1, me):
            continue
        count += 1
        try:
            with open(f"/proc/{name}/statm", "rb") as f:
                fields = f.read().split()
            pages += int(fields[1]) - int(fields[2])  # resident minus file-backed: what the job made
        except (OSError, ValueError, IndexError):
            pass
    return count, pages * PAGE


def _kill_rest(pid, pidns):
    """Kill what the job left behind: everything but init and us (pidns), else the job's group."""
    if not pidns:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        return
    me = os.getpid()
    for _ in range(200):
        others = [int(n) for n in os.listdir("/proc") if n.isdigit() and int(n) not in (1, me)]
        if not others:
            return
        for p in others:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        time.sleep(0.002)


def _wipe(root):
    """Remove everything under ``root`` (the job may have chmodded things 000)."""
    def fix(func, path, _exc):
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, onerror=fix)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


def _read_cap(path, cap):
    """The first ``cap`` bytes of a regular file the job wrote, and its size; never blocks
    (the job may have swapped its output file for a FIFO or a symlink)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return "", 0
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "", 0
        return os.read(fd, cap).decode("utf-8", "replace"), st.st_size
    except OSError:
        return "", 0
    finally:
        os.close(fd)


def run_one(job, pidns, seq):
    """Fork a child for one job, wait with the wall clock, collect what it left."""
    lim = job["limits"]
    workdir = os.path.join(WORK_ROOT, f"job{seq}")
    _wipe(WORK_ROOT)
    os.mkdir(workdir, 0o700)
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rfd)
            harness.child_main(job, wfd, workdir)
        finally:
            os._exit(70)
    os.close(wfd)
    pidfd = os.pidfd_open(pid)
    report, reason, deadline = b"", None, start + lim["timeout_s"]
    max_procs = lim.get("max_processes", 0)
    mem_cap = (lim.get("memory_mb") or 1 << 20) * (1 << 20)  # all of the job's processes together
    done, watch = False, [pidfd, rfd]
    while not done:
        left = deadline - time.monotonic()
        if left <= 0:
            reason = "timeout"
            break
        ready, _, _ = select.select(watch, [], [], min(left, 0.01 if pidns else left))
        if rfd in ready:
            chunk = os.read(rfd, 65536)
            if not chunk:
                watch = [pidfd]
            elif len(report) < REPORT_CAP:
                report += chunk
        done = pidfd in ready
        if pidns and not done:
            count, rss = _usage()
            if max_procs and count > max_procs:
                reason = "processes"
                break
            if rss > mem_cap:
                reason = "memory"
                break
    if not done:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    _, status, usage = os.wait4(pid, 0)
    duration = time.monotonic() - start
    _kill_rest(pid, pidns)
    while True:
        ready, _, _ = select.select([rfd], [], [], 0)
        chunk = os.read(rfd, 65536) if ready else b""
        if not chunk:
            break
        if len(report) < REPORT_CAP:
            report += chunk
    os.close(rfd)
    os.close(pidfd)
    cap = lim["output_bytes"]
    stdout, out_n = _read_cap(os.path.join(workdir, "stdout"), cap)
    stderr, err_n = _read_cap(os.path.join(workdir, "stderr"), cap)
    _wipe(WORK_ROOT)
    return {"id": job.get("id"), "report": report[:REPORT_CAP].decode("utf-8", "replace"),
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "reason": reason, "duration_s": duration, "maxrss_kb": usage.ru_maxrss,
            "cpu_s": usage.ru_utime + usage.ru_stime, "stdout": stdout, "stderr": stderr,
            "stdout_bytes": out_n, "stderr_bytes": err_n}


def serve(pidns, root=None):
    """Answer jobs (JSON lines on stdin) until EOF, one JSON line each on stdout. ``root`` is
    the work root (the host made it and removes it); default /tmp, ours alone in bubblewrap."""
    global WORK_ROOT
    if root is None and not pidns:  # never wipe a shared /tmp
        import tempfile
        root = tempfile.mkdtemp(prefix="sbx-")
    WORK_ROOT = root or WORK_ROOT
    out = sys.stdout.buffer
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:  # non-dumpable: a job running as the same uid cannot ptrace us or read our memory
        import ctypes
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
    except Exception:
        pass
    for name in [m for m in sys.modules if m == "_ctypes" or m.startswith("ctypes")]:
        del sys.modules[name]  # a job's ``import ctypes`` must run (and meet the audit hook) again
    gc.collect()
    gc.freeze()  # children share these pages: no collector walk copies them after each fork
    seq = 0
    pending = b""  # a local, not sys.stdin's buffer: a job must not see the jobs queued behind it
    while True:
        while b"\n" not in pending:
            chunk = os.read(0, 1 << 20)
            if not chunk:
                return
            pending += chunk
        line, _, pending = pending.partition(b"\n")
        if not line.strip():
            continue
        seq += 1
        answer = run_one(json.loads(line), pidns, seq)
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    sys.path += [sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == "--path"]
    serve(pidns="--pidns" in sys.argv,
          root=sys.argv[sys.argv.index("--root") + 1] if "--root" in sys.argv else None)
