"""Refinement at inference time (SELF's last step), for evaluators: judge each answer, rewrite the rejected.

What it is: :class:`RefineAtInference`, the ``refine`` option an evaluator takes (``rounds``, the
``critic`` and ``refiner`` stages by name with their options, ``only_failing``), and
:func:`refine_answers`, which builds those registered stages on the evaluator's sampler and runs
``rounds`` rounds over a batch of (prompt, answer) pairs: ONE critic call for the answers still
open, then ONE refiner call for those it did not accept. With ``only_failing`` an answer is
refined unless the critic's verdict is Yes: a No AND an unjudged answer (verdict None: no
parseable verdict, or a dropped tie) are refined, since nothing vouched for them; a later round
judges again only the answers that changed. Without it every answer is judged and refined every
round. An empty refinement keeps the previous answer. The critic and refiner use the adapter of
the model under test (``adapter_role``), and the refiner's ``max_tokens`` defaults to the
evaluator's. :func:`refine_problems` checks the stages and their options for a ``preflight``;
:func:`refined_results` names the re-scored metrics ``<metric>+refine`` and puts the
settings and per-round counts in their details. :func:`answer_prompts` is the step before: one
sampled answer per prompt in one sampler call, with the model version and the truncation count.
What it is not: a stage, nor a training step: these records are not written to lineage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field

from engine.contracts import Critic, Refiner, StageContext
from engine.records import EvalResult, Response
from engine.roles import StageKind
from engine.sampling.protocol import Sampler, SampleRequest

SUFFIX = "+refine"
CRITIC = "llm-judge"
REFINER = "critique-refine"
CRITIC_DEFAULTS: dict[str, Any] = {"votes": 1, "max_tokens": 96, "temperature": 0.0}
REFINER_DEFAULTS: dict[str, Any] = {"max_tokens": None, "temperature": 0.0}


class StageChoice(BaseModel):
    """A registered stage by name, with its options (merged over the defaults for the default stage)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    options: dict[str, Any] = Field(default_factory=dict)


class RefineAtInference(BaseModel):
    """An evaluator's ``refine`` option: score its answers again after critique and refinement."""

    model_config = ConfigDict(extra="forbid")
    rounds: int = Field(1, ge=1, le=8, description="critique-and-refine rounds, each on the latest answers")
    critic: StageChoice = Field(
        default_factory=lambda: StageChoice(name=CRITIC, options=dict(CRITIC_DEFAULTS)),
        description="the critic (options over votes=1, max_tokens=96, temperature=0 for llm-judge)")
    refiner: StageChoice = Field(
        default_factory=lambda: StageChoice(name=REFINER, options=dict(REFINER_DEFAULTS)),
        description="the refiner (max_tokens null: the evaluator's; temperature 0 for critique-refine)")
    only_failing: bool = Field(True, description="refine only answers the critic does not judge Yes "
                                                 "(No or no verdict); false: every answer, every round")


@dataclass
class Answers:
    """One answer per prompt, in input order ("" where the sampler returned none), the model version
    that wrote them, the adapter path used (None: the base model) and each answer's finish reason."""

    texts: list[str]
    version: str | None
    adapter: str | None
    finish: list[str | None]

    @property
    def truncated(self) -> int:
        """How many answers hit ``max_tokens``."""
        return sum(1 for f in self.finish if f == "length")


def answer_prompts(context: StageContext, sampler: Sampler, prompts: Sequence[str], *, max_tokens: int,
                   temperature: float = 0.0, adapter_role: str | None = None,
                   model_version: str | None = None) -> Answers:
    """Sample one answer to each prompt (a chat turn) in one sampler call, with the adapter of
    ``adapter_role`` and the run's seed, and report the progress; ``model_version`` (the version an
    evaluation is for) wins over what the sampler reports."""
    adapter = context.adapters.get(adapter_role) if adapter_role else None
    requests = [SampleRequest.chat(p, n=1, temperature=temperature, max_tokens=max_tokens, adapter=adapter,
                                   seed=context.seed) for p in prompts]
    results = sampler.sample(requests)
    context.progress(len(requests))
    version = model_version or next((r.model_version for r in results if r.model_version), None)
    return Answers(texts=[r.completions[0].text if r.completions else "" for r in results], version=version,
                   adapter=adapter,
                   finish=[r.completions[0].finish_reason if r.completions else None for r in results])


@dataclass
class RefineOutcome:
    """The final answer of every item, in input order, and per round how many answers were
    judged, judged Yes, refined, and changed by their refinement."""

    answers: list[str]
    rounds: list[dict[str, int]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        """What a ``+refine`` metric carries: the settings, the counts per round, answers changed."""
        return {"refine": self.settings, "refine_rounds": self.rounds,
                "refine_changed": sum(r["changed"] for r in self.rounds)}


def stage_options(fields: Mapping[str, Any], choice: StageChoice, defaults: dict[str, Any],
                  default_name: str, fill: dict[str, Any]) -> dict[str, Any]:
    """``choice``'s options (over ``defaults`` for the default stage; a default of None means unset),
    with each ``fill`` value set where the stage has that option (``fields``) and it is not set."""
    merged = {**defaults, **choice.options} if choice.name == default_name else dict(choice.options)
    options = {k: v for k, v in merged.items() if not (v is None and k in defaults and defaults[k] is None)}
    options.update({k: v for k, v in fill.items() if k in fields and k not in options})
    return options


def refine_problems(opts: RefineAtInference | None) -> list[str]:
    """For an evaluator's ``preflight``: one line per critic or refiner that is not registered or
    refuses its options; [] when all is well (or there is no ``refine``)."""
    if opts is None:
        return []
    from engine.manager import create_plugin_manager
    from engine.options import validate_options

    pm, problems = create_plugin_manager(), []
    for kind, choice, defaults, default in (("critic", opts.critic, CRITIC_DEFAULTS, CRITIC),
                                            ("refiner", opts.refiner, REFINER_DEFAULTS, REFINER)):
        try:
            cls = pm.stage(cast(StageKind, kind), choice.name).cls
            validate_options(cls, stage_options(cls.Options.model_fields, choice, defaults, default, {}))
        except Exception as exc:  # an unknown stage or bad options: say which, in one line
            problems.append(f"refine.{kind}: " + " ".join(str(exc).split())[:300])
    return problems


def refine_answers(context: StageContext, sampler: Sampler, prompts: Sequence[str], answers: Sequence[str],
                   opts: RefineAtInference, adapter_role: str | None,
                   max_tokens: int | None = None) -> RefineOutcome:
    """Critique and refine ``answers`` to ``prompts`` for ``opts.rounds`` rounds (see the module doc)."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    ctx = replace(context, sampler=sampler, emitted=[])
    fill: dict[str, Any] = {"adapter_role": adapter_role}
    pm = ctx.plugin_manager()
    critic = cast(Critic, ctx.make_stage("critic", opts.critic.name, stage_options(
        pm.stage("critic", opts.critic.name).cls.Options.model_fields, opts.critic, CRITIC_DEFAULTS, CRITIC,
        fill)))
    if max_tokens:
        fill["max_tokens"] = max_tokens
    refiner = cast(Refiner, ctx.make_stage("refiner", opts.refiner.name, stage_options(
        pm.stage("refiner", opts.refiner.name).cls.Options.model_fields, opts.refiner, REFINER_DEFAULTS,
        REFINER, fill)))
    current = list(answers)
    outcome = RefineOutcome(answers=current, settings={**opts.model_dump(), "adapter_role": adapter_role,
                                                       "max_tokens": max_tokens})
    active = list(range(len(current)))
    for _ in range(opts.rounds):
        if not active:
            break
        responses = [Response(text=current[i], prompt=prompts[i]) for i in active]
        critiques = critic.critique(responses)
        picked = [k for k, c in enumerate(critiques) if not opts.only_failing or c.verdict is not True]
        counts = {"judged": len(active), "yes": sum(c.verdict is True for c in critiques),
                  "refined": len(picked), "changed": 0, "empty": 0}
        changed: list[int] = []
        if picked:
            refinements = refiner.refine([responses[k] for k in picked], [critiques[k] for k in picked])
            per = max(len(refinements) // len(picked), 1)  # a refiner sampling n > 1: the first of each
            for j, k in enumerate(picked):
                text = refinements[j * per].text if j * per < len(refinements) else ""
                i = active[k]
                if not text.strip():
                    counts["empty"] += 1
                elif text != current[i]:
                    current[i] = text
                    changed.append(i)
        counts["changed"] = len(changed)
        outcome.rounds.append(counts)
        active = changed if opts.only_failing else active
    return outcome


def refined_results(results: Sequence[EvalResult], outcome: RefineOutcome) -> list[EvalResult]:
    """``results`` (scored on the refined answers) renamed ``<metric>+refine``, with the refinement's
    settings and per-round counts added to their details."""
    return [EvalResult(evaluator=r.evaluator, metric=r.metric + SUFFIX, value=r.value, n=r.n,
                       model_version=r.model_version, details={**r.details, **outcome.details()})
            for r in results]
