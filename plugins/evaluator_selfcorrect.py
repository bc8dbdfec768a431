"""The ``self-correction`` evaluator: accuracy at attempt 1 and 2, and how answers change between them.

What it is: each problem runs as one ``self-correct`` episode (engine.episodes; attempt 1, SCoRe's
fixed correction turn, attempt 2), greedy by default, through the run's sampler. Problems: the
held-out procedural set (engine.toolkit.math_problems.held_out, ``n`` of them, never a training
problem) or the 100-case GSM8K sample (``dataset: gsm8k``). Metrics, as SCoRe and the
Confidence-vs-Critique paper report them: ``acc@t1``, ``acc@t2``, ``delta`` (t2 - t1),
``i->c`` and ``c->i`` (the share of all problems that went incorrect -> correct and correct ->
incorrect), each with the counts behind it in ``details``, plus every problem's pair of outcomes
(``outcomes``: [r1, r2] in problem order), so two model versions can be compared problem by problem
(engine.toolkit.stats.mcnemar). What it is not: a code evaluator (HumanEval with execution feedback
is the ``python-exec`` environment's job, not measured here).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Stage, build_stage
from engine.records import EvalResult, Task


class SelfCorrectionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: Literal["held-out", "gsm8k"] = Field("held-out", description="procedural held-out set or GSM8K")
    n: int = Field(300, ge=1, le=10_000, description="held-out problems (gsm8k: its 100)")
    seed: int = Field(0, description="seed of the held-out set")
    max_tokens: int = Field(128, ge=1, le=32768, description="new tokens per attempt")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0: greedy")
    adapter_role: str | None = Field("policy", description="adapter role of the model under test")


class SelfCorrection(Stage[SelfCorrectionOptions]):
    kind = "evaluator"
    name = "self-correction"

    def problems(self) -> list[Task]:
        from engine.toolkit.math import gsm8k_cases
        from engine.toolkit.math_problems import held_out

        opts = self.options
        found = gsm8k_cases() if opts.dataset == "gsm8k" else held_out(opts.n, opts.seed)
        return [Task(prompt=p.question, meta={"answer": p.answer, "problem": p.id}) for p in found]

    def evaluate(self, sampler: Any, model_version: str | None) -> list[EvalResult]:
        opts = self.options
        info = self.context.plugin_manager().stage("environment", "self-correct")
        env_opts = {"verifier": "math", "max_turns": 2, "max_tokens": opts.max_tokens,
                    "temperature": opts.temperature, "adapter_role": opts.adapter_role}
        env = build_stage(info.cls, env_opts, replace(self.context, sampler=sampler, emitted=[]))
        tasks = self.problems()
        episodes = env.rollout(tasks)  # type: ignore[attr-defined]
        outcomes = []
        for t in episodes:
            r = [int(x) for x in t.rewards.get("reward", [])] + [0, 0]
            outcomes.append(r[:2])  # a failed episode counts as wrong at both attempts
        version = model_version or next((t.model_version for t in episodes if t.model_version), None)
        n = len(outcomes)
        c1 = sum(a for a, _ in outcomes)
        c2 = sum(b for _, b in outcomes)
        i2c = sum(1 for a, b in outcomes if not a and b)
        c2i = sum(1 for a, b in outcomes if a and not b)
        details = {"dataset": opts.dataset, "problems": n, "correct@t1": c1, "correct@t2": c2,
                   "incorrect->correct": i2c, "correct->incorrect": c2i, "outcomes": outcomes,
                   "failed_episodes": sum(1 for t in episodes if t.meta.get("status") != "done"),
                   "max_tokens": opts.max_tokens, "temperature": opts.temperature}
        values = {"acc@t1": c1 / n, "acc@t2": c2 / n, "delta": (c2 - c1) / n, "i->c": i2c / n,
                  "c->i": c2i / n}
        return [EvalResult(evaluator=self.name, metric=f"{opts.dataset}/{metric}", value=value, n=n,
                           model_version=version, details=details) for metric, value in values.items()]


@hookimpl
def register_evaluators() -> list[type]:
    return [SelfCorrection]
