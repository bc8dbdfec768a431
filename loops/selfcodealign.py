"""SelfCodeAlign: seed functions -> concepts -> tasks -> responses with their own tests -> sandbox -> SFT.

One iteration: the loop ingests one plain request record (kind ``seed_request``) and the ``seeds`` generator
draws seed functions for it (stdlib functions by default); ``concepts`` extracts programming
concepts from each; ``tasks`` writes tasks (category, difficulty) from them; ``responses`` samples
N answers per task, each with its own asserts; ``execute`` runs every answer against its tests in
the sandbox (Execution records) and, by default (``sandbox-agreement``), against the tests pooled
from every sample of its task, recording its CodeT dual-agreement score and decision; ``passed``
keeps the executions that passed their own tests and ``agreed`` those of them that also agree with
the other samples (the funnel shows both counts); option ``mode`` says which set is trained on
(``dual-agreement``, or ``own-tests``: the paper's filter, for comparison); the answers behind them
go through ``dedup`` (exact instruction/response, MinHash on code) and ``decontaminate``
(n-grams against the evaluation sets); the kept ones become chat TrainingExamples
(instruction -> code) linked to their response and execution, and the trainer makes the next
model version, which the next iteration samples from. Sizes are stage options (seeds ``count``,
``tasks_per_concepts``, responses ``n``), so one setting has one place.
What it is not: the paper's full response format (explanations are not generated or trained on).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Role, Stage, StageKind
from engine.records import Execution, Link, Record, Response, TrainingExample


class SelfCodeAlignOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["dual-agreement", "own-tests"] = Field(
        "dual-agreement", description="train on responses that passed their own tests and agree with "
        "the other samples of their task (dual-agreement), or on all that passed their own tests")
    one_per_task: bool = Field(True, description="train on at most one passing response per task")
    include_tests: bool = Field(False, description="append the response's tests to the training answer")
    max_examples: int | None = Field(None, ge=1, description="cap on training examples per iteration")


def _role(kind: StageKind, takes: str, gives: str, default: str, doc: str, optional: bool = False) -> Role:
    return Role(kind=kind, takes=(takes,), gives=(gives,), default=default, doc=doc, optional=optional)


class SelfCodeAlign(Stage[SelfCodeAlignOptions]):
    kind = "loop"
    name = "selfcodealign"
    roles = {
        "seeds": _role("generator", "seed_request", "seed", "stdlib-seeds", "draws seed functions"),
        "concepts": _role("generator", "seed", "concepts", "code-concepts", "seed -> coding concepts"),
        "tasks": _role("generator", "concepts", "task", "code-task",
                       "concepts -> a task (category, difficulty)"),
        "responses": _role("generator", "task", "response", "code-response",
                           "n answers per task, each with its own asserts"),
        "execute": _role("generator", "response", "execution", "sandbox-agreement",
                         "runs each answer against its own tests and the task's pooled tests in the sandbox"),
        "passed": _role("filter", "execution", "execution", "passed",
                        "keeps the executions that passed their own tests"),
        "agreed": _role("filter", "execution", "execution", "agreed",
                        "of those, keeps the ones whose dual-agreement decision is kept"),
        "dedup": _role("filter", "response", "response", "dedup",
                       "exact and near duplicates out (optional: stages.dedup: null)", optional=True),
        "decontaminate": _role("filter", "response", "response", "decontaminate",
                               "n-gram overlap with the evaluation sets out (optional)", optional=True),
    }
    trains = {"policy": ("training_example",)}

    def run_iteration(self, runner: Any, iteration: int) -> None:
        opts = self.options
        request = Record(kind="seed_request", meta={"iteration": iteration})
        requests = runner.ingest("seed-request", [request])
        seeds = runner.call("seeds", requests)
        concepts = runner.call("concepts", seeds)
        tasks = runner.call("tasks", concepts)
        # streamed: each chunk of responses is executed while the next is sampled, and only the
        # passing executions are held here, with the responses behind them read back from lineage
        responses = runner.stream("responses", tasks)
        executions = runner.stream("execute", responses)
        own_passed = runner.stream("passed", executions)
        own: list[Execution] = []

        def kept_by_own_tests() -> Iterator[Execution]:  # held for own-tests mode, and fed on
            for ex in own_passed.records():
                if isinstance(ex, Execution):
                    own.append(ex)
                    yield ex

        agreed = [e for e in runner.stream("agreed", kept_by_own_tests()).records()
                  if isinstance(e, Execution)]
        passing = agreed if opts.mode == "dual-agreement" else own
        execution_of: dict[str, Execution] = {}
        for ex in passing:
            execution_of.setdefault(next(iter(ex.parent_ids()), ""), ex)
        passed_responses = [r for r in runner.records(list(execution_of)) if isinstance(r, Response)]
        if opts.one_per_task:
            passed_responses = _first_per_task(passed_responses)
        kept = runner.call("dedup", passed_responses)
        kept = runner.call("decontaminate", kept)
        kept = [r for r in kept if isinstance(r, Response) and r.id in execution_of]
        if opts.max_examples is not None:
            kept = kept[:opts.max_examples]
        examples = [_example(r, execution_of[r.id], opts.include_tests) for r in kept]
        runner.ingest("examples", examples)
        runner.train(examples)


def _first_per_task(responses: list[Response]) -> list[Response]:
    seen: set[str] = set()
    out = []
    for resp in responses:
        task = next(iter(resp.parent_ids()), resp.prompt)
        if task not in seen:
            seen.add(task)
            out.append(resp)
    return out


def _example(resp: Response, execution: Execution, include_tests: bool) -> TrainingExample:
    code = resp.text.strip("\n")
    if include_tests and resp.tests:
        code += "\n\n" + resp.tests.strip("\n")
    return TrainingExample(
        messages=[{"role": "user", "content": resp.prompt},
                  {"role": "assistant", "content": f"```python\n{code}\n```"}],
        target_role="policy", model_version=resp.model_version,
        parents=[Link(id=resp.id, role="input"), Link(id=execution.id, role="tests")])


@hookimpl
def register_loops() -> list[type]:
    return [SelfCodeAlign]
