"""Running jobs in the run's sandbox: the toolkit part for stages that execute generated code.

What it is: :func:`context_sandbox` (the run's sandbox, ``context.sandbox``, or else a fresh
instance of the registered ``bubblewrap`` sandbox stage that the caller closes) and
:func:`run_jobs` (a batch of ``sandbox.protocol.Job`` as ONE sandbox call, each distinct job run
once, results in input order), :func:`run_answers` (model answers' code against their tests)
(:func:`execution_of`: a response's Execution record from its result, an ``error`` one where it
did not run) and :func:`feedback_of` (a run's outcome as the short text a model
is shown: the failing assert, the exception). The ``sandbox-exec`` generator and the HumanEval evaluator run
their code through these. What it is not: a sandbox; the isolation and the Job/Result types live
in sandbox/ (imported here for type checking only: the engine does not import sandbox/ at run time).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.contracts import StageContext
from engine.records import Execution, Link, Response

if TYPE_CHECKING:
    from sandbox.protocol import Job, Result

DEFAULT_SANDBOX = "bubblewrap"
"""The sandbox stage built when the context has none."""


def context_sandbox(context: StageContext) -> tuple[Any, bool]:
    """The run's sandbox, or a fresh default (``bubblewrap``) one built through the run's plugin
    manager; the flag says the caller owns it and must ``close`` it."""
    if context.sandbox is not None:
        return context.sandbox, False
    return context.make_stage("sandbox", DEFAULT_SANDBOX), True


def run_jobs(context: StageContext, jobs: Sequence[Job]) -> list[Result]:
    """Run ``jobs`` in one sandbox call, each distinct (program, tests, limits) once; one Result
    per job, in input order (duplicates get their own copy)."""
    if not jobs:
        return []
    keys = [hashlib.sha256(j.model_dump_json().encode()).hexdigest() for j in jobs]
    unique: dict[str, Job] = {}
    for key, job in zip(keys, jobs, strict=True):
        unique.setdefault(key, job)
    sandbox, owned = context_sandbox(context)
    try:
        results: dict[str, Result] = dict(zip(unique, sandbox.execute(list(unique.values())), strict=True))
    finally:
        if owned:
            sandbox.close()
    return [results[k].model_copy(deep=True) for k in keys]


def run_answers(context: StageContext, answers: Sequence[str], tests: Sequence[str],
                setups: Sequence[str] | None = None) -> list[Result]:
    """Each model answer's first code block (engine.toolkit.code.first_code) run against its tests,
    in one sandbox call (:func:`run_jobs`), after its ``setups`` code if given (imports and helpers
    the task provides, e.g. HumanEval's prompt); one Result per answer, in order."""
    from engine.toolkit.code import first_code
    from sandbox.protocol import Job

    before = setups or [""] * len(answers)
    jobs = [Job(program=(s + "\n\n" if s.strip() else "") + first_code(a), tests=t)
            for a, t, s in zip(answers, tests, before, strict=True)]
    return run_jobs(context, jobs)


def execution_of(resp: Response, result: Result | None) -> Execution:
    """The Execution record of ``resp`` (linked to it as ``tests``) from its sandbox ``result``;
    an ``error`` Execution saying why when it did not run (no code, or no tests)."""
    from sandbox.protocol import Result as SandboxResult

    if result is None:
        why = "no code" if not resp.text.strip() else "no tests"
        result = SandboxResult(status="error", detail=why, stderr=why)
    return result.to_record([Link(id=resp.id, role="tests")])


def feedback_of(result: Result, limit: int = 600) -> str:
    """What a model is told about its code's run: "All tests passed.", or the first failing assert,
    the exception it raised (or the program's own error) and the last lines of the error output,
    trimmed to ``limit`` characters."""
    if result.status == "passed":
        return "All tests passed."
    parts = [f"Status: {result.status}."]
    if result.failed_tests:
        parts.append("Failing test: " + result.failed_tests[0].strip())
    if result.detail.strip():
        parts.append("Error: " + result.detail.strip().splitlines()[0][:300])
    tail = [line for line in (result.stderr or "").strip().splitlines() if line.strip()][-3:]
    if tail:
        parts.append("\n".join(tail))
    text = "\n".join(parts)
    return text if len(text) <= limit else text[:limit - 3] + "..."
