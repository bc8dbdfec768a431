"""Sandbox execution of generated code: the ``sandbox-exec`` generator and the ``passed`` filter.

What it is: ``sandbox-exec`` turns each Response (code in ``text``, asserts in ``tests``) into an
Execution record linked to it (edge role ``tests``), running the whole batch as ONE call to the
run's sandbox through ``engine.toolkit.sandboxing.run_jobs`` (``context.sandbox``; the default
bubblewrap sandbox when the context has none).
Identical (code, tests) pairs run once per batch; a response without code or without tests gets
an ``error`` Execution without running. ``passed`` keeps the Executions whose status is
``passed`` (and that ran at least ``min_tests`` tests), passing other records through untouched,
like the ``verdict`` filter. A generator plus a filter, because a filter only returns a subset of
its inputs and the Execution records must land in lineage.
What it is not: the isolation (sandbox/) nor a judge of test quality (a weak test is a weak test).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import ANY, Stage
from engine.records import Execution, Record, Response
from engine.toolkit.sandboxing import execution_of, run_jobs
from sandbox.protocol import Job, Limits


class SandboxExecOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limits: Limits = Field(default_factory=lambda: Limits(timeout_s=5.0, cpu_s=5.0, memory_mb=512),
                           description="per-job limits (time, CPU, memory, output)")


class PassedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_tests: int = Field(1, ge=0, description="an execution must have run at least this many tests")


class SandboxExec(Stage[SandboxExecOptions]):
    """Response -> Execution of its code against its own tests."""

    kind = "generator"
    name = "sandbox-exec"
    accepts = ("response",)
    produces = ("execution",)

    def generate(self, inputs: Sequence[Record]) -> list[Record]:
        limits = self.options.limits
        responses = [r for r in inputs if isinstance(r, Response)]
        runnable = [r for r in responses if r.text.strip() and (r.tests or "").strip()]
        results = run_jobs(self.context, [Job(program=r.text, tests=r.tests or "", limits=limits)
                                          for r in runnable])
        by_id = {r.id: res for r, res in zip(runnable, results, strict=True)}
        out: list[Record] = []
        for resp in responses:
            out.append(execution_of(resp, by_id.get(resp.id)))
        self.context.progress(len(responses))
        return out


class Passed(Stage[PassedOptions]):
    """Keeps Executions that passed; other records pass through."""

    kind = "filter"
    name = "passed"
    accepts = ("execution",)
    produces = (ANY,)

    def filter(self, records: Sequence[Record]) -> list[Record]:
        min_tests = self.options.min_tests
        return [r for r in records if not isinstance(r, Execution) or (
            r.status == "passed" and int(r.meta.get("n_tests", 0)) >= min_tests)]


@hookimpl
def register_generators() -> list[type]:
    return [SandboxExec]


@hookimpl
def register_filters() -> list[type]:
    return [Passed]
