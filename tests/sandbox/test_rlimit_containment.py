"""The rlimit backend's containment: one test per escape it closes (host /tmp, /var/tmp, /dev/shm
and home writes, loopback listeners, forked children outliving the job or the pool), and its
refusal (or, with ``allow_unsafe``, its loud bare fallback) where ``unshare`` cannot contain it.
``pool`` overrides conftest's bubblewrap pool, so conftest's ``run`` runs jobs on the rlimit pool."""

from __future__ import annotations

import os
import secrets
import time
import uuid
from pathlib import Path

import pytest

import sandbox.rlimit as rl
from sandbox.bubblewrap import SandboxUnavailable
from sandbox.pool import Worker
from sandbox.protocol import Job, Limits, job_message

SMALL = Limits(timeout_s=3.0, cpu_s=2.0, memory_mb=256, file_mb=4, max_processes=16, output_bytes=4096)
NO_UNSHARE = "unshare: unshare failed: Operation not permitted"


@pytest.fixture(scope="module")
def pool():
    why = rl.probe()
    if why is not None:
        pytest.skip(f"unshare cannot contain the rlimit backend here: {why}")
    p = rl.RlimitPool(concurrency=1, quiet=True)
    assert p.contained
    yield p
    p.close()


@pytest.fixture(params=["contained", "unsafe"])
def make_pool(request, monkeypatch):
    """A factory of rlimit pools: contained (skipped where unshare cannot), or the allow_unsafe
    fallback with the probe forced to fail."""
    if request.param == "contained":
        why = rl.probe()
        if why is not None:
            pytest.skip(f"unshare cannot contain the rlimit backend here: {why}")
        return lambda: rl.RlimitPool(concurrency=1, quiet=True)
    monkeypatch.setattr(rl, "probe", lambda disk_mb=8: NO_UNSHARE)

    def unsafe():
        with pytest.warns(rl.RlimitWarning):
            return rl.RlimitPool(concurrency=1, allow_unsafe=True)

    return unsafe


@pytest.mark.parametrize("where", ["/tmp", "/var/tmp", "/dev/shm", "home"])
def test_write_to_host_directories(run, where):
    base = Path.home() if where == "home" else Path(where)
    if not base.is_dir():
        pytest.skip(f"no {base} on this host")
    target = base / f"pwned-{uuid.uuid4().hex}"
    r = run(f"open({str(target)!r}, 'w').write('pwned')\n", tests=f"assert open({str(target)!r}).read()")
    try:
        assert not target.exists(), f"the job wrote {target} on the host"
    finally:
        target.unlink(missing_ok=True)
    if where == "/tmp":
        assert r.passed, r  # the job's own /tmp (a fresh tmpfs) is writable
    else:
        assert r.status == "error" and "Read-only file system" in r.detail, r


def test_connect_to_a_loopback_listener(run, listener):
    port, assert_untouched = listener
    r = run("import socket\nok = []\n"
            f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')\n"
            "    ok.append('tcp')\nexcept OSError:\n    pass\n",
            tests="assert 'tcp' in ok")
    assert r.status == "failed" and len(r.failed_tests) == 1, r
    assert_untouched()


def marker() -> tuple[int, int]:
    """Soft limits (RLIMIT_MSGQUEUE, RLIMIT_NOFILE) a job sets to tag its processes, seen in /proc."""
    return 10_000 + secrets.randbelow(800_000), 200 + secrets.randbelow(800)  # under the default hard limits


def marked(tag: tuple[int, int]) -> list[int]:
    """Host pids of live (not zombie) processes whose /proc/PID/limits carry the tag."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    continue
            with open(f"/proc/{pid}/limits") as f:
                soft = {line[:26].strip(): line[26:].split()[0] for line in f.read().splitlines()[1:]}
        except (OSError, IndexError):
            continue
        if soft.get("Max msgqueue size") == str(tag[0]) and soft.get("Max open files") == str(tag[1]):
            found.append(int(pid))
    return found


def forker(tag: tuple[int, int], wait: float) -> str:
    """A job that tags itself, leaves a double-forked, setsid'd child sleeping, then sleeps ``wait``."""
    return ("import os, resource, time\n"
            "def soft(what, n):\n    resource.setrlimit(what, (n, resource.getrlimit(what)[1]))\n"
            f"soft(resource.RLIMIT_MSGQUEUE, {tag[0]})\nsoft(resource.RLIMIT_NOFILE, {tag[1]})\n"
            "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(60)\n"
            "    os._exit(0)\n"
            f"time.sleep({wait})\n")


def wait_for(tag: tuple[int, int], n: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = marked(tag)
        if len(pids) >= n:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"the tagged processes never appeared: {marked(tag)}")


def test_forked_child_gone_after_the_job_and_the_pool(make_pool):
    tag = marker()
    p = make_pool()
    try:
        (r,) = p.execute([Job(program=forker(tag, 0.5), tests="assert True", limits=SMALL)])
        assert r.passed, r
        assert marked(tag) == [], "the forked child outlived its job"
    finally:
        p.close()
    assert marked(tag) == [], "the forked child outlived the pool"


def test_killing_a_worker_mid_job_kills_every_forked_child(make_pool):
    # what close (and a hung worker) does: Worker.kill while the job and its setsid'd child run
    tag = marker()
    p = make_pool()
    try:
        worker = Worker(p.pool._argv(), p.pool._env)
        job = Job(program=forker(tag, 30), tests="assert True",
                  limits=SMALL.model_copy(update={"timeout_s": 30}))
        assert worker.send(job_message(job, secrets.token_hex(16), None, 1))
        pids = wait_for(tag, 2)  # the job and its grandchild
        worker.kill()
        assert marked(tag) == [], f"still running after the worker was killed: {pids}"
    finally:
        p.close()


def test_refuses_where_unshare_cannot_contain(monkeypatch):
    monkeypatch.setattr(rl, "probe", lambda disk_mb=8: NO_UNSHARE + "\nsecond line")
    with pytest.raises(SandboxUnavailable) as caught:
        rl.RlimitPool(concurrency=1)
    msg = str(caught.value)
    assert "\n" not in msg and "allow_unsafe: true" in msg and "Operation not permitted" in msg

    from plugins.sandbox_local import RlimitSandbox

    with pytest.warns(rl.RlimitWarning):
        stage = RlimitSandbox()
    with pytest.raises(SandboxUnavailable, match="allow_unsafe: true"):
        stage.execute([Job(program="x = 1", tests="assert x == 1")])


def test_allow_unsafe_starts_bare_with_its_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(rl, "probe", lambda disk_mb=8: NO_UNSHARE)
    with pytest.warns(rl.RlimitWarning, match="NOT ISOLATION: generated code runs as your user"):
        pool = rl.RlimitPool(concurrency=1, allow_unsafe=True)
    target = tmp_path / "written"
    with pool:
        assert not pool.contained
        ok, wrote = pool.execute([Job(program="x = 1", tests="assert x == 1"),
                                  Job(program=f"open({str(target)!r}, 'w').write('x')", tests="assert True")])
    assert ok.passed and wrote.passed and target.exists()  # bare: the host filesystem is exposed

    from plugins.sandbox_local import RlimitOptions, RlimitSandbox

    with pytest.warns(rl.RlimitWarning, match="NOT ISOLATION: generated code"):
        stage = RlimitSandbox(RlimitOptions(concurrency=1, allow_unsafe=True))
    with stage, pytest.warns(rl.RlimitWarning):
        (r,) = stage.execute([Job(program="x = 2", tests="assert x == 2")])
    assert r.passed


def test_probe_reports_a_failed_setup_in_one_line(monkeypatch):
    if rl.unshare_binary() is None:
        pytest.skip("no unshare here")
    monkeypatch.setattr(rl, "interpreter_binds", lambda exe, base: ["/tmp/not-the-interpreter"])
    why = rl.probe()
    assert why is not None and "\n" not in why and "/tmp" in why, why
    monkeypatch.setattr(rl, "unshare_binary", lambda: None)
    assert "unshare" in (rl.probe() or "")
