"""The in-sandbox fork server (stdlib only; runs as a script inside the sandbox).

What it is: ``serve`` reads jobs as JSON lines on stdin and answers one JSON line per job on
stdout. Per job it forks a fresh child from a clean parent (the child runs sandbox/harness.py's
``child_main``), waits with the wall clock, and, with ``--pidns`` (inside its own PID namespace:
bubblewrap's, or the contained rlimit backend's, where the server is the namespace's init),
watches the count and the total memory of the job's processes (polled every 10 ms) and kills
every leftover process after the job; without it (the rlimit backend's ``allow_unsafe``
fallback, E2B) the server is a child subreaper and kills the job's process group and then every
process left below it (a double-forked, setsid'd child is reparented to the server, so it is
found too). Each job's work directory, and anything else the job left in the work root, is wiped
before the next one. The server is made non-dumpable so a job running as the same uid can
neither ptrace it nor read its memory.
``contain`` (``--contain``, the rlimit backend under ``unshare``) sets up the namespaces the
server runs in before it serves: every host mount read-only, a fresh size-limited tmpfs /tmp as
the only writable place, empty read-only tmpfs over /var/tmp, /run and the home directories (the
interpreter bound back read-only where it lives under them), a minimal /dev (null, zero, full,
random, urandom, tty; /dev/shm empty and read-only), loopback up in the new network namespace,
then every capability dropped (bounding set too) and no_new_privs set.
What it does not cover: judging (the host does that, sandbox/protocol.py), isolation (bubblewrap,
or ``contain`` as described: reads of the rest of the host filesystem stay possible there).
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


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (zombies included), from /proc/PID/task/*/children, else /proc."""
    try:
        kids = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
        return kids
    except (OSError, ValueError):
        pass
    kids = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                if int(f.read().rsplit(b")", 1)[1].split()[1]) == pid:
                    kids.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return kids


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, parents before their children."""
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def _kill_rest(pid, pidns):
    """Kill what the job left behind: everything but init and us (pidns), else the job's group
    and every process left below us (we are a subreaper, so escaped orphans are ours)."""
    if not pidns:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        for _ in range(200):
            _reap()
            others = descendants(os.getpid())
            if not others:
                return
            for p in others:
                for kill in (os.kill, os.killpg):
                    try:
                        kill(p, signal.SIGKILL)
                    except OSError:
                        pass
            time.sleep(0.002)
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
        _reap()
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


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def contain(hide: list[str], keep: list[str], disk_mb: int) -> None:
    """Set up the rlimit backend's namespaces (run as their init, before serving; unshare made
    them): every mount read-only, a fresh tmpfs /tmp, empty read-only tmpfs over ``hide`` with
    the ``keep`` directories under them bound back read-only, a minimal /dev, loopback up, then
    no capabilities. Raises OSError when the kernel refuses any step (the host then refuses too)."""
    import ctypes
    import fcntl
    import socket
    import struct

    libc = ctypes.CDLL(None, use_errno=True)

    def check(ok: bool, what: str) -> None:
        if not ok:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    def mount(src: str | None, target: str, fstype: str | None, flags: int,
              data: str | None = None) -> None:
        enc = [None if v is None else v.encode() for v in (src, target, fstype, data)]
        check(libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]) == 0, f"mount {target}")

    def all_read_only() -> None:
        attr = ctypes.create_string_buffer(struct.pack("QQQQ", 1, 0, 0, 0))  # MOUNT_ATTR_RDONLY
        if libc.syscall(ctypes.c_long(442), ctypes.c_int(-100), b"/", ctypes.c_uint(0x8000), attr,
                        ctypes.c_size_t(32)) == 0:  # mount_setattr(AT_FDCWD, "/", AT_RECURSIVE)
            return
        check(ctypes.get_errno() == 38, "mount_setattr /")  # ENOSYS (before 5.12): one by one
        names = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 1024,
                 "nodiratime": 2048, "relatime": 1 << 21}
        with open("/proc/self/mountinfo") as f:
            rows = [line.split() for line in f]
        for row in rows:
            target = row[4].encode().decode("unicode_escape")
            flags = sum(names.get(o, 0) for o in row[5].split(","))
            mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)

    def under(path: str, top: str) -> bool:
        return path == top or path.startswith(top.rstrip("/") + "/")

    hide = [h for h in sorted(set(hide)) if h not in ("/", "/tmp", "/dev")]
    for k in keep:
        if under(k, "/tmp") or under(k, "/dev"):
            raise OSError(f"{k} (needed inside) lives under /tmp or /dev")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    kept = {k: os.open(k, os.O_PATH) for k in keep if any(under(k, h) for h in hide)}
    devs = {d: os.open(f"/dev/{d}", os.O_PATH) for d in DEVICES if os.path.exists(f"/dev/{d}")}
    all_read_only()
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={disk_mb}m,mode=0755")
    done: list[str] = []
    for h in hide:
        if not os.path.isdir(h) or any(under(h, d) for d in done):
            continue
        mount("tmpfs", h, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0755")
        for k, fd in kept.items():
            if under(k, h):
                os.makedirs(k, exist_ok=True)
                mount(f"/proc/self/fd/{fd}", k, None, MS_BIND | MS_REC)
        mount(None, h, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        done.append(h)
    mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for d, fd in devs.items():
        os.close(os.open(f"/dev/{d}", os.O_CREAT | os.O_WRONLY, 0o666))
        mount(f"/proc/self/fd/{fd}", f"/dev/{d}", None, MS_BIND)
    os.mkdir("/dev/shm")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{name}")
    mount(None, "/dev", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    for fd in [*kept.values(), *devs.values()]:
        os.close(fd)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # SIOCSIFFLAGS lo: UP|LOOPBACK|RUNNING
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH22x", b"lo", 0x1 | 0x8 | 0x40))
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        check(libc.prctl(24, cap, 0, 0, 0) == 0, "PR_CAPBSET_DROP")
    check(libc.prctl(47, 4, 0, 0, 0) == 0, "PR_CAP_AMBIENT_CLEAR_ALL")
    check(libc.prctl(38, 1, 0, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS")
    header = ctypes.create_string_buffer(struct.pack("Ii", 0x20080522, 0))  # _LINUX_CAPABILITY_VERSION_3
    check(libc.capset(header, ctypes.create_string_buffer(24)) == 0, "capset")


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
        if not pidns:  # PR_SET_CHILD_SUBREAPER: a job's orphans become ours, for _kill_rest
            ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
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
    def _values(flag):
        return [sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == flag]

    sys.path += _values("--path")
    if "--contain" in sys.argv:
        contain(_values("--hide"), _values("--keep"), int((_values("--disk-mb") or ["64"])[0]))
        if "--probe" in sys.argv:
            print("ok" if os.getpid() == 1 else f"not the namespace's init (pid {os.getpid()})", flush=True)
            sys.exit(0)
    serve(pidns="--pidns" in sys.argv, root=(_values("--root") or [None])[0])
