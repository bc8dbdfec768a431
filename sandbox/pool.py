"""Warm workers and the pool that runs a batch on them, concurrency = cores.

What it is: ``Worker`` (one long-lived harness fork server, started from an argv the backend
builds: inside bubblewrap, under unshare for the rlimit backend, or bare for its allow_unsafe
fallback), talking JSON lines over its stdin/stdout with a host-side watchdog; and
``WorkerPool``, which spreads a batch over its workers (one long-lived host thread each, keeping
``depth`` jobs queued on its worker so the server never waits for the host), judges each answer
(sandbox.protocol.judge_answer) and returns results in input order. A worker that dies, hangs or
answers garbage is killed (its process group and every process below it, a job in its own
session included; the host waits until they are gone) and started afresh; the jobs queued
behind the lost one are sent again; workers are also recycled every ``recycle_after`` jobs.
What it is not: isolation; that is the argv the backend hands it.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from sandbox.forkserver import descendants
from sandbox.harness import count_tests
from sandbox.protocol import Job, Result, job_message, judge_answer

HOST_GRACE_S = 5.0
"""Seconds the host waits past a job's timeout before it declares the worker hung."""


def default_concurrency() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def process_budget(extra: int) -> int | None:
    """RLIMIT_NPROC for a job: the uid's live threads plus ``extra``; None for root (not enforced)."""
    uid = os.getuid()
    if uid == 0:
        return None
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                text = f.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)]:
            total += int(fields.get("Threads", "1"))
    return total + extra + 16


class Worker:
    """One harness fork server process; ``ask`` sends a job and waits for its answer."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.env = env if env is not None else {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.jobs_done = 0
        self._buf = b""

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=self.env, close_fds=True,
                                     start_new_session=True)
        self._buf, self.jobs_done = b"", 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """Kill the server's process group and every process below it (a job in its own session
        and its group; a namespace's init, which takes its namespace down), and wait until all
        of them are gone."""
        if self.proc is None:
            return
        below = descendants(self.proc.pid)
        fds = []
        for pid in below:
            try:
                fds.append(os.pidfd_open(pid))
            except OSError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        for pid in below:
            try:
                os.killpg(pid, signal.SIGKILL)  # a job's own session/group (a no-op for non-leaders)
            except OSError:
                pass
        for fd in fds:
            try:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kernel that ignores SIGKILL
            pass
        deadline = time.monotonic() + 5
        while fds and time.monotonic() < deadline:  # readable once exited (an init: once its namespace is)
            ready = select.select(fds, [], [], max(deadline - time.monotonic(), 0))[0]
            for fd in ready:
                os.close(fd)
            fds = [fd for fd in fds if fd not in ready]
        for fd in fds:  # pragma: no cover - a kernel that ignores SIGKILL
            os.close(fd)
        self.proc = None

    def send(self, message: dict[str, Any]) -> bool:
        """Queue one job on the server (it reads them in order); False when the worker is gone."""
        data = json.dumps(message).encode() + b"\n"
        for _ in range(2):  # a worker found dead here never saw the job: start afresh, once
            if self.proc is None:
                self.start()
            assert self.proc is not None and self.proc.stdin is not None
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
                return True
            except OSError:
                self.kill()
        return False

    def recv(self, timeout: float) -> dict[str, Any] | None:
        """The next answer; None when the worker died, hung past ``timeout`` or answered garbage
        (the worker is then killed)."""
        if self.proc is None or self.proc.stdout is None:
            return None
        fd, deadline = self.proc.stdout.fileno(), time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            chunk = os.read(fd, 1 << 20) if ready else b""
            if not chunk:
                self.kill()
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            self.kill()
            return None
        self.jobs_done += 1
        return answer

    def ask(self, message: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send one job and wait for its answer."""
        if not self.alive():
            self.kill()
        return self.recv(timeout) if self.send(message) else None


class WorkerPool:
    """Runs batches on ``size`` warm workers; results come back in input order.

    Each worker is owned by one long-lived host thread: bubblewrap's --die-with-parent follows
    the *thread* that started it, so workers must not be started from short-lived threads.
    """

    def __init__(self, argv: Callable[[], list[str]], size: int | None = None, recycle_after: int = 2000,
                 env: dict[str, str] | None = None, depth: int = 2) -> None:
        self.size = size or default_concurrency()
        self._argv, self._env = argv, env
        self.recycle_after = recycle_after
        self.workers: list[Worker] = []
        self.restarts = 0
        self._tasks: queue.Queue[Any] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._seq = 0
        self.depth = depth

    def _ensure_threads(self) -> None:
        with self._lock:
            while len(self._threads) < self.size:
                worker = Worker(self._argv(), self._env)
                self.workers.append(worker)
                t = threading.Thread(target=self._serve, args=(worker,), daemon=True,
                                     name=f"sandbox-worker-{len(self._threads)}")
                t.start()
                self._threads.append(t)

    def _serve(self, worker: Worker) -> None:
        """Feed one worker, keeping ``depth`` jobs queued on it so it never waits for the host."""
        inflight: deque[tuple[Any, str, int, dict[str, Any]]] = deque()
        stop = False
        while True:
            while not stop and len(inflight) < self.depth:
                try:
                    task = self._tasks.get() if not inflight else self._tasks.get_nowait()
                except queue.Empty:
                    break
                if task is None:
                    stop = True
                    break
                if not inflight and (worker.jobs_done >= self.recycle_after or not worker.alive()):
                    worker.kill()
                try:
                    entry = self._prepare(task)
                except Exception as exc:  # a job the host cannot even encode
                    task[3][task[2]] = Result(status="error", detail=f"sandbox host error: {exc!r}")
                    task[4].release()
                    continue
                inflight.append(entry)
                if not worker.send(entry[3]):
                    break
            if not inflight:
                if stop:
                    worker.kill()
                    return
                continue
            task, nonce, expected, message = inflight.popleft()
            job, _, _, results, done = task
            try:
                answer = worker.recv(job.limits.timeout_s + HOST_GRACE_S)
                if answer is not None and answer.get("id") != message["id"]:
                    worker.kill()
                    answer = None
                if answer is None:
                    self.restarts += 1
                    result = judge_answer(None, nonce, expected, job.limits, note=(
                        "the sandbox worker died or hung during this job; it was restarted"))
                else:
                    result = judge_answer(answer, nonce, expected, job.limits)
            except Exception as exc:  # an engine bug must not lose the batch
                worker.kill()
                result = Result(status="error", detail=f"sandbox host error: {exc!r}")
            if worker.proc is None:
                for later in inflight:  # queued behind the lost job, never started: send again
                    worker.send(later[3])
            results[task[2]] = result
            done.release()

    def _prepare(self, task: Any) -> tuple[Any, str, int, dict[str, Any]]:
        job, nproc, index, _, _ = task
        nonce = secrets.token_hex(16)
        try:
            expected = count_tests(job.tests)
        except (SyntaxError, ValueError):
            expected = 0
        with self._lock:
            self._seq += 1
            seq = self._seq
        return task, nonce, expected, job_message(job, nonce, nproc, seq)

    def execute(self, jobs: Sequence[Job],
                nproc: Callable[[Job], int | None] = lambda job: None) -> list[Result]:
        if not jobs:
            return []
        self._ensure_threads()
        results: list[Result | None] = [None] * len(jobs)
        done = threading.Semaphore(0)
        for k, job in enumerate(jobs):
            self._tasks.put((job, nproc(job), k, results, done))
        for _ in jobs:
            done.acquire()
        return [r if r is not None else Result(status="error", detail="not run") for r in results]

    def close(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
            for _ in threads:
                self._tasks.put(None)
        for t in threads:
            t.join(timeout=10)
        for w in self.workers:
            w.kill()
        self.workers = []
