"""CodeT-style dual agreement between solutions and tests: the ``sandbox-agreement`` generator and
the ``agreed`` filter.

What it is: passing its own asserts proves only that a response agrees with itself (a wrong
``largest_even_integer`` and its asserts can agree perfectly). ``sandbox-agreement`` turns each
Response into an Execution exactly as ``sandbox-exec`` does (its code against its own tests:
the record's status, so the ``passed`` filter still means "kept by its own tests"), and also runs
its code against the tests pooled from every sample of its task (the N responses of one task
arrive in one chunk, since a chunk of responses is made from a chunk of tasks). Each response's
tests are cut into single tests (``engine.toolkit.code.single_tests``), identical ones merged, one
that cannot be a function body (``from m import *``) left out; the
pooled job of a solution is ONE sandbox job whose tests file holds one ``test_pooled_<k>``
function per pooled test, so the harness runs each in isolation and reports which failed
(authenticated by its nonce, not printed by the program): a pass bitmap per solution without a
job per (solution, test) pair. Own jobs and pooled jobs of the whole chunk go to the sandbox as
one ``run_jobs`` batch. Scoring is CodeT's (Chen et al. 2022): solutions are grouped by the set of
pooled tests they pass, and a consensus set scores (solutions in it) x (tests they pass). A
response is agreed when it passes at least ``min_other_tests`` tests written by other samples and
its set has the top score (sets tied at the top all count). Samples with the same code (after
parsing) count as one author (``distinct_authors``): a duplicate's tests were written against the
same code and prove nothing more. Per response, ``meta['agreement']`` of its Execution records the
score, the counts and the reason of the decision; ``agreed`` keeps the Executions whose decision
is ``kept`` (an Execution without that record, e.g. from ``sandbox-exec``, is dropped).
What it is not: a per-test timeout (a pooled test that hangs times the whole pooled job out, which
then passes nothing), nor proof of correctness: agreeing samples can share a mistake.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import ANY, NoOptions, Stage
from engine.records import Execution, Record, Response
from engine.toolkit.code import single_tests
from engine.toolkit.sandboxing import execution_of, run_jobs
from sandbox.protocol import Job, Limits, Result


class AgreementOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limits: Limits = Field(default_factory=lambda: Limits(timeout_s=5.0, cpu_s=5.0, memory_mb=512),
                           description="per-job limits (the own-tests job and the pooled-tests job)")
    min_other_tests: int = Field(1, ge=0, description="a response must pass at least this many tests "
                                 "written by other samples of its task to be agreed")
    distinct_authors: bool = Field(True, description="samples with the same code count as one author: "
                                   "a test is another sample's only if that sample's code differs")


def consensus(passes: Sequence[frozenset[int]]) -> list[tuple[int, int, int]]:
    """CodeT's consensus sets: per solution (size of its set, tests the set passes, score), where a
    set is the solutions passing exactly the same tests and score = size x tests."""
    size: dict[frozenset[int], int] = {}
    for p in passes:
        size[p] = size.get(p, 0) + 1
    return [(size[p], len(p), size[p] * len(p)) for p in passes]


def _code_key(code: str) -> str:
    try:
        return ast.dump(ast.parse(code))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return code.strip()


def _as_test(k: int, unit: str) -> str:
    return f"def test_pooled_{k}():\n{textwrap.indent(unit, '    ')}"


def _compiles(unit: str) -> bool:
    """Whether a unit compiles as a function body (``from m import *`` does not): one that does not
    is left out of the pool, or the whole pooled file would fail to compile."""
    try:
        compile(_as_test(0, unit), "<pooled>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def _pooled_tests(units: Sequence[str]) -> str:
    return "\n\n".join(_as_test(k, u) for k, u in enumerate(units))


def _passed_units(res: Result | None, n: int) -> frozenset[int]:
    if res is None or res.status not in ("passed", "failed"):
        return frozenset()
    failed = set(res.failed_tests)
    return frozenset(k for k in range(n) if f"test_pooled_{k}()" not in failed)


class _Task:
    """One task's samples: the pooled tests, who wrote each, and every sample's results."""

    def __init__(self, responses: list[Response], distinct: bool) -> None:
        self.responses = responses
        index: dict[str, int] = {}  # unit text -> its number in the pool
        writers: list[set[int]] = []  # per pooled test, the samples that wrote it
        self.own: list[set[int]] = []
        for i, resp in enumerate(responses):
            mine = set()
            for unit in filter(_compiles, single_tests(resp.tests or "")):
                k = index.setdefault(unit, len(index))
                if k == len(writers):
                    writers.append(set())
                writers[k].add(i)
                mine.add(k)
            self.own.append(mine)
        self.units = list(index)
        keys = [_code_key(r.text) if distinct else str(i) for i, r in enumerate(responses)]
        self.others = [{k for k, who in enumerate(writers) if any(keys[j] != keys[i] for j in who)}
                       for i in range(len(responses))]
        self.tests = _pooled_tests(self.units)

    def decide(self, pooled: list[Result | None], min_other: int) -> list[dict[str, Any]]:
        passes = [_passed_units(res, len(self.units)) for res in pooled]
        sets = consensus(passes)
        top = max((score for _, _, score in sets), default=0)
        out = []
        for i, resp in enumerate(self.responses):
            size, tests, score = sets[i]
            own, other = len(passes[i] & self.own[i]), len(passes[i] & self.others[i])
            if not resp.text.strip():
                reason = "no code"
            elif min_other and not self.others[i]:
                reason = "no tests written by other samples of the task"
            elif other < min_other:
                reason = f"passes {other} of {len(self.others[i])} tests of other samples (needs {min_other})"
            elif score == 0:
                reason = "passes no pooled test"
            elif score < top:
                reason = f"outside the top consensus set (score {score} < {top})"
            else:
                reason = "kept"
            res = pooled[i]
            out.append({"kept": reason == "kept", "reason": reason, "score": score, "top_score": top,
                        "consensus_size": size, "consensus_tests": tests, "own_passed": own,
                        "own_tests": len(self.own[i]), "other_passed": other,
                        "other_tests": len(self.others[i]), "pooled_tests": len(self.units),
                        "pooled_status": res.status if res is not None else "not run"})
        return out


class SandboxAgreement(Stage[AgreementOptions]):
    """Response -> Execution of its code against its own tests, with its dual-agreement decision."""

    kind = "generator"
    name = "sandbox-agreement"
    accepts = ("response",)
    produces = ("execution",)

    def generate(self, inputs: Sequence[Record]) -> list[Record]:
        opts = self.options
        responses = [r for r in inputs if isinstance(r, Response)]
        by_task: dict[str, list[Response]] = {}
        for resp in responses:
            by_task.setdefault(next(iter(resp.parent_ids()), resp.prompt), []).append(resp)
        tasks = [_Task(group, opts.distinct_authors) for group in by_task.values()]
        own_of = [r for r in responses if r.text.strip() and (r.tests or "").strip()]
        pooled_of = [(t, i) for t in tasks for i, r in enumerate(t.responses) if r.text.strip() and t.units]
        jobs = [Job(program=r.text, tests=r.tests or "", limits=opts.limits) for r in own_of]
        jobs += [Job(program=t.responses[i].text, tests=t.tests, limits=opts.limits) for t, i in pooled_of]
        results = run_jobs(self.context, jobs)  # one sandbox call for the whole chunk
        own = {r.id: res for r, res in zip(own_of, results[:len(own_of)], strict=True)}
        pooled = {(id(t), i): res for (t, i), res in zip(pooled_of, results[len(own_of):], strict=True)}
        decided: dict[str, dict[str, Any]] = {}
        for t in tasks:
            runs = [pooled.get((id(t), i)) for i in range(len(t.responses))]
            decided.update({r.id: d for r, d in zip(t.responses, t.decide(runs, opts.min_other_tests),
                                                    strict=True)})
        out: list[Record] = []
        for resp in responses:
            rec = execution_of(resp, own.get(resp.id))
            rec.meta["agreement"] = decided[resp.id]
            out.append(rec)
        self.context.progress(len(responses))
        return out


class Agreed(Stage[NoOptions]):
    """Keeps Executions whose dual-agreement decision is ``kept``; other records pass through."""

    kind = "filter"
    name = "agreed"
    accepts = ("execution",)
    produces = (ANY,)

    def filter(self, records: Sequence[Record]) -> list[Record]:
        return [r for r in records if not isinstance(r, Execution)
                or bool((r.meta.get("agreement") or {}).get("kept"))]


@hookimpl
def register_generators() -> list[type]:
    return [SandboxAgreement]


@hookimpl
def register_filters() -> list[type]:
    return [Agreed]
