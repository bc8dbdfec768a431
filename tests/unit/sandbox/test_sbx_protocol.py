"""Unit tests of the sandbox contract: counting tests, judging harness answers, records."""

from __future__ import annotations

import signal

import pytest
from pydantic import ValidationError

from engine.records import Execution, Link, Response
from sandbox.harness import count_tests, split_tests
from sandbox.protocol import Job, Limits, Result, judge_answer

NONCE = "ab" * 16
LIM = Limits()


def answer(report: str = "", **kw):
    base = {"report": report, "exit": 0, "signal": None, "reason": None, "duration_s": 0.01,
            "maxrss_kb": 10240, "cpu_s": 0.01, "stdout": "out", "stderr": "", "stdout_bytes": 3,
            "stderr_bytes": 0}
    return base | kw


def report(phase="tests", error="", codes="PP", failed=()):
    return NONCE + "\n" + repr((phase, error, codes, tuple(failed)))


def test_count_tests_counts_asserts_calls_and_test_functions():
    src = ("import math\nassert f(1) == 2\ncheck(f)\ndef test_a():\n    assert 1\n"
           "def helper():\n    pass\nx = 3\n")
    assert count_tests(src) == 3
    kinds = [k for k, _, _ in split_tests(src)]
    assert kinds == ["setup", "test", "test", "def", "fdef", "setup"]


def test_a_proven_pass():
    r = judge_answer(answer(report()), NONCE, 2, LIM)
    assert r.status == "passed" and r.passed and r.peak_memory_mb == 10.0 and r.stdout == "out"


@pytest.mark.parametrize("rep,expected,status", [
    ("", 2, "error"),                                        # exited before reporting
    ("f" * 32 + "\n" + repr(("tests", "", "PP", ())), 2, "error"),  # forged nonce
    (report(codes="P"), 2, "error"),                         # fewer tests ran than counted
    (report(codes=""), 0, "error"),                          # no tests: nothing proves a pass
    (report(codes="PF", failed=[("line 2: assert x", "AssertionError: ")]), 2, "failed"),
    (report(phase="program", error="SystemExit: 0"), 2, "error"),
    (report(phase="program", error="MemoryError: "), 2, "memory"),
    (NONCE + "\nnot a tuple(", 2, "error"),
])
def test_no_pass_without_proof(rep, expected, status):
    assert judge_answer(answer(rep), NONCE, expected, LIM).status == status


def test_timeouts_kills_and_dead_workers():
    assert judge_answer(answer(reason="timeout"), NONCE, 1, LIM).status == "timeout"
    assert judge_answer(answer(signal=int(signal.SIGXCPU), exit=None), NONCE, 1, LIM).status == "timeout"
    assert judge_answer(answer(signal=int(signal.SIGSEGV), exit=None), NONCE, 1, LIM).status == "killed"
    assert judge_answer(answer(reason="processes"), NONCE, 1, LIM).status == "killed"
    assert judge_answer(None, NONCE, 1, LIM).status == "killed"


def test_truncation_is_marked():
    r = judge_answer(answer(report(), stdout="x" * 10, stdout_bytes=10**6), NONCE, 2, Limits(output_bytes=10))
    assert r.stdout.startswith("x" * 10) and "1000000 bytes" in r.stdout


def test_result_to_record_keeps_parents():
    resp = Response(text="def f(): pass")
    r = Result(status="failed", failed_tests=["line 1: assert f()"], duration_s=0.5, peak_memory_mb=9.0)
    rec = r.to_record(parents=[resp, "task-1", Link(id="t-2", role="tests")])
    assert isinstance(rec, Execution) and rec.status == "failed"
    roles = [(p.id, p.role) for p in rec.parents]
    assert roles == [(resp.id, "input"), ("task-1", "input"), ("t-2", "tests")]
    again = Result(status="failed", failed_tests=["line 1: assert f()"], duration_s=9.9).to_record(
        parents=[resp, "task-1", Link(id="t-2", role="tests")])
    assert again.id == rec.id  # timing does not change identity


def test_job_is_frozen_and_validated():
    job = Job(program="x = 1", tests="assert x")
    with pytest.raises(ValidationError):
        job.program = "y"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Limits(timeout_s=0)
