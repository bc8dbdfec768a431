"""Unit tests of the local backends and their stages: order, concurrency, refusal, warnings."""

from __future__ import annotations

import threading
import time

import pytest

import sandbox.bubblewrap as bw
from engine.manager import create_plugin_manager
from sandbox.protocol import Job, Limits

needs_bwrap = pytest.mark.skipif(bw.probe() is not None, reason="bubblewrap cannot isolate here")


def jobs(n: int) -> list[Job]:
    return [Job(program=f"def f():\n    return {i}", tests=f"assert f() == {i if i % 3 else -1}")
            for i in range(n)]


def test_argv_has_the_isolation_flags():
    argv = bw.bwrap_argv(disk_mb=8)
    for flag in ("--unshare-all", "--die-with-parent", "--new-session", "--clearenv", "--remount-ro"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--tmpfs") - 1] == str(8 * 2**20)
    assert "--bind" not in argv  # nothing of the host is writable


def test_interpreter_binds_cover_a_copied_venv():
    assert bw.interpreter_binds("/opt/py/bin/python3", "/opt/py") == ["/opt/py"]
    assert bw.interpreter_binds("/work/.venv/bin/python3", "/opt/py") == ["/opt/py", "/work/.venv"]


def test_bubblewrap_refuses_without_namespaces(monkeypatch):
    monkeypatch.setattr(bw, "probe", lambda disk_mb=8: "setting up uid map: Permission denied")
    with pytest.raises(bw.SandboxUnavailable, match="rlimit"):
        bw.BubblewrapPool()


@needs_bwrap
def test_extra_ro_binds_are_importable_and_read_only(tmp_path):
    (tmp_path / "helper_mod.py").write_text("def twice(x):\n    return 2 * x\n")
    with bw.BubblewrapPool(concurrency=1, disk_mb=8, extra_ro_binds=[str(tmp_path)]) as pool:
        ok, ro = pool.execute([
            Job(program="from helper_mod import twice", tests="assert twice(2) == 4"),
            Job(program=f"open({str(tmp_path / 'x')!r}, 'w')", tests="assert True")])
    assert ok.passed and ro.status == "error" and not (tmp_path / "x").exists()


@needs_bwrap
def test_results_in_input_order_at_concurrency_two():
    with bw.BubblewrapPool(concurrency=2, disk_mb=8) as pool:
        results = pool.execute(jobs(12))
    assert [r.status for r in results] == ["failed" if i % 3 == 0 else "passed" for i in range(12)]
    assert all(r.duration_s > 0 and r.peak_memory_mb > 0 for r in results)


@needs_bwrap
def test_a_killed_worker_is_restarted():
    with bw.BubblewrapPool(concurrency=1, disk_mb=8) as pool:
        killer = Job(program="import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(5)",
                     tests="assert True", limits=Limits(timeout_s=2))
        out = pool.execute([killer, *jobs(2)])
        assert out[0].status in ("killed", "error") and [r.status for r in out[1:]] == ["failed", "passed"]


@needs_bwrap
def test_workers_outlive_the_thread_that_started_them():
    # bubblewrap's --die-with-parent follows the starting *thread*: the pool must own its threads
    with bw.BubblewrapPool(concurrency=1, disk_mb=8) as pool:
        t = threading.Thread(target=pool.execute, args=(jobs(2),))
        t.start()
        t.join()
        time.sleep(0.2)
        assert [r.status for r in pool.execute(jobs(3))] == ["failed", "passed", "passed"]
        assert pool.pool.restarts == 0


def test_rlimit_backend_warns_and_runs():
    from sandbox.rlimit import RlimitPool, RlimitWarning

    with pytest.warns(RlimitWarning, match="NOT ISOLATION"):
        pool = RlimitPool(concurrency=2)
    try:
        loop = Job(program="while True:\n    pass", limits=Limits(timeout_s=1, cpu_s=5))
        out = pool.execute([*jobs(3), loop,
                            Job(program="import os\nos._exit(0)", tests="assert False")])
        assert [r.status for r in out] == ["failed", "passed", "passed", "timeout", "error"]
    finally:
        pool.close()


def test_rlimit_backend_clears_the_environment(monkeypatch):
    from sandbox.rlimit import RlimitPool

    monkeypatch.setenv("AUTODIDACT_TEST_TOKEN", "tok-7f3a9")
    with RlimitPool(concurrency=1, quiet=True) as pool:
        (r,) = pool.execute([Job(program="import os\nprint(dict(os.environ))", tests="assert True")])
    assert r.passed and "tok-7f3a9" not in r.stdout and "PATH" in r.stdout
    assert not pool.roots


def test_stages_are_registered_with_options():
    pm = create_plugin_manager()
    stages = pm.stages("sandbox")
    assert {"bubblewrap", "rlimit", "e2b"} <= set(stages)
    assert stages["bubblewrap"].cls.Options(disk_mb=8).disk_mb == 8
    assert "api_key_env" in stages["e2b"].cls.Options.model_fields


@needs_bwrap
def test_bubblewrap_stage_executes_and_makes_records():
    from plugins.sandbox_local import BubblewrapOptions, BubblewrapSandbox

    with BubblewrapSandbox(BubblewrapOptions(concurrency=1, disk_mb=8)) as stage:
        (result,) = stage.execute([Job(program="x = 2", tests="assert x == 2")])
    rec = result.to_record(parents=["resp-1"])
    assert rec.status == "passed" and rec.parent_ids() == ["resp-1"]


def test_rlimit_stage_warns():
    from plugins.sandbox_local import RlimitSandbox
    from sandbox.rlimit import RlimitWarning

    with pytest.warns(RlimitWarning):
        RlimitSandbox().close()
