"""The sandbox contract: jobs in, results out, in input order; and how a harness answer is judged.

What it is: ``Limits``, ``Job`` (program, tests, limits), ``Result`` (status, failed tests,
truncated output, duration, peak memory; ``to_record`` turns it into an engine Execution record
with its parents), the ``Sandbox`` protocol (``execute(jobs) -> list[Result]``), and
``judge_answer``, which turns one answer of sandbox/forkserver.py into a Result: a pass is accepted
only from a report that carries the job's nonce and as many passed tests as the host counted.
What it is not: a backend. Backends (bubblewrap, rlimit, e2b) live beside it.
"""

from __future__ import annotations

import ast
import signal
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from engine.records import Execution, ExecutionStatus, Link

Status = ExecutionStatus
"""How a job ended: ``engine.records.ExecutionStatus``, the one definition (the sandbox uses the
engine's type; the engine never imports the sandbox)."""


class Limits(BaseModel):
    """Per-job limits. ``memory_mb`` is address space (RLIMIT_AS). The tmpfs size is the backend's option."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    timeout_s: float = Field(5.0, gt=0, description="wall clock; the whole job is killed past it")
    cpu_s: float = Field(5.0, gt=0, description="CPU seconds (RLIMIT_CPU, SIGKILL one second later)")
    memory_mb: int = Field(512, ge=32, description="address space (RLIMIT_AS)")
    file_mb: int = Field(16, ge=1, description="largest file a job may write (RLIMIT_FSIZE)")
    max_processes: int = Field(32, ge=1, description="processes a job may have at once")
    output_bytes: int = Field(8192, ge=0, description="stdout and stderr are truncated to this")


class Job(BaseModel):
    """A program and its tests (asserts, calls such as ``check(f)``, or ``test_*`` functions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    program: str
    tests: str = ""
    limits: Limits = Field(default_factory=Limits)


class Result(BaseModel):
    """What running one job gave. ``passed`` means every test ran and held, proven by the harness."""

    model_config = ConfigDict(extra="forbid")
    status: Status
    failed_tests: list[str] = Field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    peak_memory_mb: float = 0.0
    n_tests: int = 0
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_record(self, parents: Sequence[Link | str | Any] = (), role: str = "input",
                  model_version: str | None = None) -> Execution:
        """An Execution record; ``parents`` are Links, ids, or records (their ids are used)."""
        links = [p if isinstance(p, Link) else Link(id=p if isinstance(p, str) else p.id, role=role)
                 for p in parents]
        return Execution(status=self.status, failed_tests=self.failed_tests, stdout=self.stdout,
                         stderr=self.stderr, duration_s=self.duration_s,
                         peak_memory_mb=self.peak_memory_mb, parents=links, model_version=model_version,
                         meta={"n_tests": self.n_tests, "detail": self.detail})


@runtime_checkable
class Sandbox(Protocol):
    """Runs a batch of jobs; one result per job, in input order. Never raises for a bad job."""

    def execute(self, jobs: Sequence[Job]) -> list[Result]: ...


def job_message(job: Job, nonce: str, nproc: int | None, index: int) -> dict[str, Any]:
    """The JSON line the harness server reads for one job."""
    lim = job.limits.model_dump()
    lim["nproc"] = nproc
    return {"id": index, "program": job.program, "tests": job.tests, "nonce": nonce, "limits": lim}


def judge_answer(answer: dict[str, Any] | None, nonce: str, expected_tests: int, limits: Limits,
                 note: str = "") -> Result:
    """Turn one harness answer into a Result. Anything not proven by the nonced report is no pass."""
    if answer is None:
        return Result(status="killed", detail=note or "the sandbox worker died", stderr=note)
    base = {"stdout": answer.get("stdout", ""), "stderr": answer.get("stderr", ""),
            "duration_s": float(answer.get("duration_s", 0.0)),
            "peak_memory_mb": round(answer.get("maxrss_kb", 0) / 1024, 2), "n_tests": expected_tests}
    if answer.get("stdout_bytes", 0) > limits.output_bytes:
        base["stdout"] += f"\n[truncated: {answer['stdout_bytes']} bytes in all]"
    if answer.get("stderr_bytes", 0) > limits.output_bytes:
        base["stderr"] += f"\n[truncated: {answer['stderr_bytes']} bytes in all]"
    reason, sig = answer.get("reason"), answer.get("signal")
    if reason == "timeout" or sig == signal.SIGXCPU or (
            sig == signal.SIGKILL and answer.get("cpu_s", 0) >= limits.cpu_s):
        return Result(status="timeout", detail=reason or f"signal {sig}", **base)
    if reason == "processes":
        return Result(status="killed", detail="too many processes", **base)
    if reason == "memory":
        return Result(status="memory", detail="the job's processes together passed the memory limit", **base)
    head, _, body = answer.get("report", "").partition("\n")
    if head != nonce:
        why = "no authenticated report" if not head else "report without the job's nonce (forged?)"
        how = f"exit code {answer.get('exit')}" if sig is None else f"signal {sig}"
        if sig is not None:
            return Result(status="killed", detail=f"{why}; {how}", **base)
        return Result(status="error", detail=f"{why}; {how}", **base)
    try:
        phase, error, codes, failed = ast.literal_eval(body)
        failed_names = [str(name) for name, _ in failed]
        messages = [f"{name}: {msg}" for name, msg in failed]
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return Result(status="error", detail="corrupt report", **base)
    if phase != "tests" or error:
        status = "memory" if "MemoryError" in error else "error"
        return Result(status=status, detail=f"{phase}: {error}", **base)
    if any("MemoryError" in m for m in messages):
        return Result(status="memory", failed_tests=failed_names, detail="; ".join(messages)[:2000], **base)
    if failed_names or "F" in codes:
        return Result(status="failed", failed_tests=failed_names, detail="; ".join(messages)[:2000], **base)
    if expected_tests == 0:
        return Result(status="error", detail="no tests: nothing proves a pass", **base)
    if codes != "P" * expected_tests:
        return Result(status="error", detail=f"ran {len(codes)} of {expected_tests} tests", **base)
    return Result(status="passed", **base)
