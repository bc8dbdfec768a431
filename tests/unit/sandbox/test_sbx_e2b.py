"""The E2B backend driving the real e2b-code-interpreter SDK against a loopback fake of E2B's wire
protocol (``FakeE2B`` in conftest.py). The API key from the environment must never appear in results, records
or logs, only in the SDK's own ``X-API-KEY`` header."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("e2b_code_interpreter")

from sandbox.bubblewrap import SandboxUnavailable  # noqa: E402
from sandbox.e2b import E2BPool  # noqa: E402
from sandbox.protocol import Job, Limits  # noqa: E402

KEY = "e2b_0123456789abcdef-secret-key"


@pytest.fixture
def fake(e2b_fake, monkeypatch):
    monkeypatch.setenv("E2B_API_KEY", KEY)
    return e2b_fake


def test_batch_runs_in_one_sandbox_killed_at_the_end(fake, caplog):
    caplog.set_level(logging.DEBUG)
    jobs = [Job(program="def f(x):\n    return x * 2", tests="assert f(2) == 4\nassert f(3) == 6"),
            Job(program="def f(x):\n    return x", tests="assert f(2) == 4"),
            Job(program="import os\nos._exit(0)", tests="assert False"),
            Job(program="while True:\n    pass", limits=Limits(timeout_s=1, cpu_s=5))]
    pool = E2BPool(request_timeout_s=10)
    results = pool.execute(jobs)
    assert [r.status for r in results] == ["passed", "failed", "error", "timeout"]
    assert results[1].failed_tests == ["line 1: assert f(2) == 4"]
    creates = [q for q in fake.requests if q["method"] == "POST" and q["path"].startswith("/v2/sandboxes")]
    assert len(creates) == 1 and creates[0]["headers"].get("x-api-key") == KEY
    assert any(q["method"] == "DELETE" for q in fake.requests) and not fake.alive
    records = [r.to_record(parents=["resp-x"]) for r in results]
    text = "".join(r.model_dump_json() for r in results) + "".join(r.model_dump_json() for r in records)
    assert KEY not in text
    assert KEY not in caplog.text
    for q in fake.requests:  # the key goes in the auth header of API calls, never in bodies or to the sandbox
        assert KEY not in q["body"]
        if q["path"].startswith("/execute"):
            assert KEY not in str(q["headers"])


def test_missing_key_refuses(fake, monkeypatch):
    monkeypatch.delenv("E2B_API_KEY")
    with pytest.raises(SandboxUnavailable, match="E2B_API_KEY"):
        E2BPool().execute([Job(program="x = 1", tests="assert x")])
    assert not fake.requests


def test_driver_failure_is_an_error_not_a_pass_and_redacts_the_key(fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.fail_execute = True
    results = E2BPool(request_timeout_s=10).execute([Job(program="x = 1", tests="assert x")])
    assert results[0].status == "error" and "KernelDied" in results[0].detail
    assert not fake.alive
    assert KEY not in caplog.text + results[0].model_dump_json()


def test_unreachable_api_gives_errors(monkeypatch, caplog):
    monkeypatch.setenv("E2B_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("E2B_SANDBOX_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("E2B_API_KEY", KEY)
    results = E2BPool(request_timeout_s=2).execute([Job(program="x = 1", tests="assert x")] * 2)
    assert [r.status for r in results] == ["error", "error"]
    assert KEY not in caplog.text + results[0].detail


def test_e2b_stage_keeps_only_the_variable_name(fake):
    from plugins.sandbox_e2b import E2BOptions, E2BSandbox

    stage = E2BSandbox(E2BOptions(request_timeout_s=10))
    assert KEY not in stage.options.model_dump_json()
    (r,) = stage.execute([Job(program="x = 1", tests="assert x == 1")])
    assert r.status == "passed"
