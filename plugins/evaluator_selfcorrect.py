"""The ``self-correction`` evaluator: accuracy at attempt 1 and 2, and how answers change between them.

What it is: each problem runs as one two-turn episode of a registered environment, greedy by
default, through the run's sampler. Math (``dataset``: ``held-out``, the procedural held-out set of
engine.toolkit.math_problems.held_out, ``n`` of them, never a training problem; ``gsm8k``, the
100-case GSM8K sample): the ``self-correct`` environment (attempt 1, SCoRe's fixed correction turn,
attempt 2). Code (``humaneval``: the first ``n`` of HumanEval's 164 problems, in file order, loaded
with engine.toolkit.humaneval): the ``python-exec`` environment, so the model gets EXECUTION
FEEDBACK between its attempts: the task shows the HumanEval prompt (signature and docstring) and
asks for the whole function; the prompt's imports and helper functions run before the answer's
code (``meta["setup"]``: the HumanEval program has them from the prompt), then the problem's test
code and ``check(<entry_point>)``, in the run's sandbox. A failure is answered with the
environment's feedback (engine.toolkit.sandboxing.feedback_of: the status, the failing test, here
the ``check(...)`` line, and the exception: ``AssertionError``, ``IndexError: ...``) and a request
for a fix. An episode that passes at attempt 1 ends
there (python-exec stops on a pass): its attempt 2 counts as correct too (r2 = r1, carried;
``details["ended_at_t1"]`` counts them).
Code needs about 384 new tokens per attempt; ``max_tokens`` defaults to 128 (math), so set it.
Metrics, as SCoRe and the Confidence-vs-Critique paper report them, named ``<dataset>/<metric>``:
``acc@t1``, ``acc@t2``, ``delta`` (t2 - t1), ``i->c`` and ``c->i`` (the share of all problems that
went incorrect -> correct and correct -> incorrect), each with the counts behind it in ``details``,
plus every problem's pair of outcomes (``outcomes``: [r1, r2] in problem order), so two model
versions can be compared problem by problem (engine.toolkit.stats.mcnemar), and each metric's 95%
interval as ``ci95`` (Wilson for the shares; a seeded paired bootstrap for ``delta``). What it is not: pass@k
(the ``humaneval`` evaluator), nor a training environment.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Stage, build_stage
from engine.data import data_problems
from engine.records import EvalResult, Task, Trajectory
from engine.toolkit.stats import paired_bootstrap, wilson

CODE_TASK = ("Complete this Python function:\n\n```python\n{prompt}```\n\nWrite the whole function, "
             "with the imports it needs.")


class SelfCorrectionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: Literal["held-out", "gsm8k", "humaneval"] = Field(
        "held-out", description="procedural held-out set, GSM8K (math), or HumanEval (code, with "
                                "execution feedback)")
    n: int = Field(300, ge=1, le=10_000, description="held-out problems; humaneval: its first n (at most "
                   "164); gsm8k: its 100")
    seed: int = Field(0, description="seed of the held-out set")
    max_tokens: int = Field(128, ge=1, le=32768, description="new tokens per attempt (code needs ~384)")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0: greedy")
    adapter_role: str | None = Field("policy", description="adapter role of the model under test")


def code_task(problem: dict[str, Any]) -> Task:
    """A ``python-exec`` task for one HumanEval problem (see the module doc)."""
    from engine.toolkit.humaneval import check_source, prompt_helpers

    return Task(prompt=CODE_TASK.format(prompt=problem["prompt"]),
                meta={"tests": check_source(problem), "setup": prompt_helpers(problem),
                      "problem": problem["task_id"], "entry_point": problem["entry_point"]})


def outcome(t: Trajectory) -> list[int]:
    """[r1, r2] of an episode: a pass at attempt 1 that ended it carries to attempt 2; a failed
    episode counts as wrong at the attempts it did not finish."""
    raw = t.rewards.get("reward", [])
    r = [int(x) for x in raw] if isinstance(raw, list) else [int(raw)]
    if t.meta.get("status") == "done" and r == [1]:
        return [1, 1]
    return (r + [0, 0])[:2]


class SelfCorrection(Stage[SelfCorrectionOptions]):
    kind = "evaluator"
    name = "self-correction"

    @property
    def environment(self) -> str:
        return "python-exec" if self.options.dataset == "humaneval" else "self-correct"

    @classmethod
    def preflight(cls, options: SelfCorrectionOptions) -> list[str]:
        return data_problems(cls(options).problems)

    def problems(self) -> list[Task]:
        opts = self.options
        if opts.dataset == "humaneval":
            from engine.toolkit.humaneval import load_problems

            return [code_task(p) for p in load_problems()[:opts.n]]
        from engine.toolkit.math import gsm8k_cases
        from engine.toolkit.math_problems import held_out

        found = gsm8k_cases() if opts.dataset == "gsm8k" else held_out(opts.n, opts.seed)
        return [Task(prompt=p.question, meta={"answer": p.answer, "problem": p.id}) for p in found]

    def evaluate(self, sampler: Any, model_version: str | None) -> list[EvalResult]:
        opts = self.options
        info = self.context.plugin_manager().stage("environment", self.environment)
        env_opts: dict[str, Any] = {"max_turns": 2, "max_tokens": opts.max_tokens,
                                    "temperature": opts.temperature, "adapter_role": opts.adapter_role}
        if self.environment == "self-correct":
            env_opts["verifier"] = "math"
        env = build_stage(info.cls, env_opts, replace(self.context, sampler=sampler, emitted=[]))
        tasks = self.problems()
        episodes = [t for t in env.rollout(tasks) if isinstance(t, Trajectory)]  # type: ignore[attr-defined]
        outcomes = [outcome(t) for t in episodes]
        version = model_version or next((t.model_version for t in episodes if t.model_version), None)
        n = len(outcomes)
        c1 = sum(a for a, _ in outcomes)
        c2 = sum(b for _, b in outcomes)
        i2c = sum(1 for a, b in outcomes if not a and b)
        c2i = sum(1 for a, b in outcomes if a and not b)
        details = {"dataset": opts.dataset, "environment": self.environment, "problems": n,
                   "correct@t1": c1, "correct@t2": c2, "incorrect->correct": i2c, "correct->incorrect": c2i,
                   "outcomes": outcomes,
                   "ended_at_t1": sum(1 for t in episodes if t.meta.get("status") == "done"
                                      and t.meta.get("turns") == 1),
                   "failed_episodes": sum(1 for t in episodes if t.meta.get("status") != "done"),
                   "max_tokens": opts.max_tokens, "temperature": opts.temperature}
        values = {"acc@t1": c1 / n, "acc@t2": c2 / n, "delta": (c2 - c1) / n, "i->c": i2c / n,
                  "c->i": c2i / n}
        intervals = {"acc@t1": wilson(c1, n), "acc@t2": wilson(c2, n),
                     "delta": paired_bootstrap([a for a, _ in outcomes], [b for _, b in outcomes]).ci95,
                     "i->c": wilson(i2c, n), "c->i": wilson(c2i, n)}
        return [EvalResult(evaluator=self.name, metric=f"{opts.dataset}/{metric}", value=value, n=n,
                           model_version=version, details={**details, "ci95": list(intervals[metric])})
                for metric, value in values.items()]


@hookimpl
def register_evaluators() -> list[type]:
    return [SelfCorrection]
