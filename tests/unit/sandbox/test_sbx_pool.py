"""The pool against broken fork servers: dead, hung or lying workers never pass a job or hang a batch."""

from __future__ import annotations

import sys

import sandbox.pool as pool_mod
from sandbox.pool import WorkerPool
from sandbox.protocol import Job, Limits

JOBS = [Job(program="x = 1", tests="assert x == 1", limits=Limits(timeout_s=0.5)) for _ in range(3)]


def fake(code: str) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", code]


def test_a_dead_server_gives_killed_results():
    p = WorkerPool(lambda: fake("import sys; sys.stdin.readline()"), size=1)
    try:
        assert [r.status for r in p.execute(JOBS)] == ["killed"] * 3
    finally:
        p.close()


def test_a_hung_server_is_killed_after_the_grace(monkeypatch):
    monkeypatch.setattr(pool_mod, "HOST_GRACE_S", 0.3)
    p = WorkerPool(lambda: fake("import time; time.sleep(60)"), size=2)
    try:
        out = p.execute(JOBS)
        assert [r.status for r in out] == ["killed"] * 3 and p.restarts >= 3
    finally:
        p.close()


def test_a_server_that_claims_a_pass_without_the_nonce_is_not_believed():
    liar = ("import sys, json\nfor line in sys.stdin:\n    job = json.loads(line)\n"
            "    report = 'f' * 32 + chr(10) + repr(('tests', '', 'P', ()))\n"
            "    print(json.dumps({'id': job['id'], 'report': report}), flush=True)\n")
    p = WorkerPool(lambda: fake(liar), size=1)
    try:
        assert [r.status for r in p.execute(JOBS)] == ["error"] * 3
    finally:
        p.close()
