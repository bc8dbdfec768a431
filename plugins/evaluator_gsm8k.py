"""The ``gsm8k`` evaluator: one-shot math accuracy, item by item, optionally after self-refinement.

What it is: each problem (``dataset``: ``gsm8k``, the 100-case seeded GSM8K test sample of
engine.toolkit.math.gsm8k_cases, or a seeded subset of ``n`` of them; ``held-out``, ``n`` (default
200) problems of the procedural held-out set engine.toolkit.math_problems.held_out, never a
training problem) is asked once as a chat with the ``prompt`` template, all in ONE sampler call
(greedy by default, the adapter of ``adapter_role``), and judged by engine.toolkit.math.is_correct
against the gold answer. Metric ``<dataset>/accuracy`` (``gsm8k/accuracy``, ``held-out/accuracy``:
one config may evaluate both; n = problems); ``details["item_correct"]`` holds every
problem's 0/1 in problem order, so ``autodidact report`` compares each iteration with the base model
problem by problem (exact McNemar, engine.toolkit.stats), and ``details["ci95"]`` the Wilson 95%
interval of the accuracy. With ``refine`` (engine.toolkit.refining:
the model judges and rewrites its own answers, SELF's refinement at inference) the refined answers
are scored too, as ``<dataset>/accuracy+refine``, with their own per-item outcomes and the per-round counts.
What it is not: SCoRe's two-attempt evaluation (the ``self-correction`` evaluator), nor a trainer's
environment (``math``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Stage
from engine.data import data_problems, seeded_subset
from engine.records import EvalResult
from engine.toolkit.math import MathProblem, is_correct
from engine.toolkit.refining import (
    RefineAtInference,
    answer_prompts,
    refine_answers,
    refine_problems,
    refined_results,
)
from engine.toolkit.stats import wilson

PROMPT = "{task}\n\nSolve it step by step, then end with: The answer is <number>."
HELD_OUT_DEFAULT = 200


class GSM8KOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: Literal["gsm8k", "held-out"] = Field(
        "gsm8k", description="the 100-case GSM8K test sample, or the procedural held-out set")
    n: int | None = Field(None, ge=1, le=10_000, description="gsm8k: a seeded subset of this many (None: "
                          "all 100); held-out: this many problems (None: 200)")
    seed: int = Field(0, description="seed of the gsm8k subset / of the held-out set")
    max_tokens: int = Field(256, ge=1, le=32768, description="new tokens per answer")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0: greedy")
    prompt: str = Field(PROMPT, description="the question as a chat message ({task}: the problem)")
    adapter_role: str | None = Field("policy", description="adapter role of the model under test")
    refine: RefineAtInference | None = Field(None, description="also score the answers after the "
                                             "model's own critique and refinement (accuracy+refine)")


def load_problems(dataset: str = "gsm8k", n: int | None = None, seed: int = 0) -> list[MathProblem]:
    """The problems of ``dataset`` (see the module doc), in a fixed order."""
    from engine.toolkit.math import gsm8k_cases
    from engine.toolkit.math_problems import held_out

    if dataset == "held-out":
        return held_out(n or HELD_OUT_DEFAULT, seed)
    return seeded_subset(gsm8k_cases(), n, seed)


class GSM8K(Stage[GSM8KOptions]):
    kind = "evaluator"
    name = "gsm8k"

    @classmethod
    def preflight(cls, options: GSM8KOptions) -> list[str]:
        return data_problems(lambda: load_problems(options.dataset, options.n, options.seed)) + \
            refine_problems(options.refine)

    def evaluate(self, sampler: Any, model_version: str | None) -> list[EvalResult]:
        opts = self.options
        problems = load_problems(opts.dataset, opts.n, opts.seed)
        prompts = [opts.prompt.format(task=p.question) for p in problems]
        got = answer_prompts(self.context, sampler, prompts, max_tokens=opts.max_tokens,
                             temperature=opts.temperature, adapter_role=opts.adapter_role,
                             model_version=model_version)
        version, answers = got.version, got.texts
        base = {"dataset": opts.dataset, "seed": opts.seed, "max_tokens": opts.max_tokens,
                "temperature": opts.temperature, "adapter": got.adapter, "truncated": got.truncated}
        out = [self.scored(problems, answers, version, base)]
        if opts.refine is not None:
            outcome = refine_answers(self.context, sampler, prompts, answers, opts.refine, opts.adapter_role,
                                     max_tokens=opts.max_tokens)
            out += refined_results([self.scored(problems, outcome.answers, version, base)], outcome)
        return out

    def scored(self, problems: list[MathProblem], answers: list[str], version: str | None,
               base: dict[str, Any]) -> EvalResult:
        correct = [int(is_correct(text, p.answer)) for p, text in zip(problems, answers, strict=True)]
        m = len(problems)
        return EvalResult(evaluator=self.name, metric=f"{base['dataset']}/accuracy",
                          value=sum(correct) / m if m else 0.0, n=m,
                          model_version=version,
                          details={**base, "problems": m, "correct": sum(correct), "item_correct": correct,
                                   "ids": [p.id for p in problems], "ci95": list(wilson(sum(correct), m))})


@hookimpl
def register_evaluators() -> list[type]:
    return [GSM8K]
