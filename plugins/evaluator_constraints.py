"""The ``constraints`` evaluator: held-out instructions with evolved, machine-checked constraints.

What it is: the ~60 held-out seed instructions of ``configs/data/constraints-heldout.jsonl``
(written for this evaluator: none is a SPaR training seed, and none shares a 10-gram with SPaR's
seeds or with IFEval's prompts), each given 1 to 3 constraints (``min_constraints`` ..
``max_constraints``) by the same taxonomy and draw the ``evolve-constraints`` generator uses
(engine.toolkit.constraints, rule mode: the sentences appended to the instruction), the draw fixed
by ``seed`` and the instruction's text; ``n`` picks a seeded subset (None: all). Each item is asked
once as a chat, all in ONE sampler call (greedy by default, the adapter of ``adapter_role``), and
its answer scored by lm-eval's IFEval checkers of its constraints (engine.toolkit.ifeval.run_checks,
strict and loose; ``random`` and langdetect reseeded per answer). Four metrics, as the ``ifeval``
evaluator reports them: ``prompt_strict`` and ``prompt_loose`` (every constraint of the item
followed; ``details["item_correct"]`` per item, in item order, for the report's exact McNemar, and
the Wilson ``ci95``), ``inst_strict`` and ``inst_loose`` (the share of constraints followed;
``item_scores`` and ``item_weights`` per item for a weighted paired bootstrap, and a seeded
bootstrap ``ci95`` over items). With ``refine`` (engine.toolkit.refining) the refined answers are
scored too, as the four ``<metric>+refine``. With a run directory, every answer and its checks go
to ``<run>/constraints/iteration-<i>.jsonl``.
What it is not: IFEval (the ``ifeval`` evaluator), nor a judge of anything the checkers cannot
verify (content, helpfulness).
"""

from __future__ import annotations

import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine import hookimpl
from engine.contracts import Stage
from engine.data import CONFIGS, data_problems, read_jsonl, seeded_subset
from engine.records import EvalResult
from engine.toolkit.constraints import CATEGORIES, draw_constraints, join_constraints
from engine.toolkit.ifeval import INSTALL, checkers, run_checks
from engine.toolkit.refining import (
    RefineAtInference,
    answer_prompts,
    refine_answers,
    refine_problems,
    refined_results,
)
from engine.toolkit.stats import bootstrap_mean, wilson

DATA = CONFIGS / "data" / "constraints-heldout.jsonl"
METRICS = ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")
Scores = tuple[list[bool], list[bool]]
"""Per-constraint (strict, loose) results of one answer."""


class ConstraintsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int | None = Field(60, ge=1, le=10_000, description="a seeded subset of this many items (None: all)")
    seed: int = Field(0, description="seed of the constraint draw and of the subset")
    min_constraints: int = Field(1, ge=1, le=3, description="fewest constraints per item")
    max_constraints: int = Field(2, ge=1, le=3, description="most constraints per item")
    max_tokens: int = Field(128, ge=1, le=32768, description="new tokens per answer")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0: greedy")
    adapter_role: str | None = Field("policy", description="adapter role of the model under test")
    score_seed: int = Field(0, description="seed of `random` and langdetect while checking")
    save_responses: bool = Field(True, description="write answers and checks under the run directory")
    refine: RefineAtInference | None = Field(None, description="also score the answers after the model's "
                                             "own critique and refinement (<metric>+refine)")

    @model_validator(mode="after")
    def _ordered(self) -> ConstraintsOptions:
        if self.min_constraints > self.max_constraints:
            raise ValueError("min_constraints must not exceed max_constraints")
        return self


@dataclass(frozen=True)
class Item:
    """One held-out item: its id (``heldout-<line>``), the seed instruction, the evolved prompt and
    its checks (``[{"id", "kwargs", "text"}]``, as ``evolve-constraints`` stores them)."""

    id: str
    seed_prompt: str
    prompt: str
    checks: tuple[dict[str, Any], ...]


def load_items(n: int | None = 60, seed: int = 0, min_constraints: int = 1,
               max_constraints: int = 2) -> list[Item]:
    """The held-out items (see the module doc), in file order; the same for the same arguments."""
    if not DATA.is_file():
        raise RuntimeError(f"constraints: the held-out instructions ({DATA}) are missing")
    items = []
    for line, row in enumerate(read_jsonl(DATA), 1):
        text = row["prompt"]
        rng = random.Random(f"constraints:{seed}:{text}")
        drawn = draw_constraints(rng, rng.randint(min_constraints, max_constraints), CATEGORIES)
        checks = tuple({"id": d[1], "kwargs": d[2], "text": d[0]} for _, d in drawn)
        items.append(Item(id=f"heldout-{line}", seed_prompt=text,
                          prompt=join_constraints(text, [d[0] for _, d in drawn]), checks=checks))
    return seeded_subset(items, n, seed)


def score_item(item: Item, answer: str, seed: int = 0) -> Scores:
    """The item's per-constraint (strict, loose) results for ``answer``."""
    checks = list(item.checks)
    return (run_checks(checks, answer, item.prompt, seed),
            run_checks(checks, answer, item.prompt, seed, loose=True))


class Constraints(Stage[ConstraintsOptions]):
    kind = "evaluator"
    name = "constraints"

    @classmethod
    def preflight(cls, options: ConstraintsOptions) -> list[str]:
        missing = [] if importlib.util.find_spec("lm_eval") else [
            f"constraints: the IFEval checkers (lm_eval) are not installed; {INSTALL}"]
        return data_problems(lambda: load_items(options.n, options.seed, options.min_constraints,
                                                options.max_constraints)) + missing + \
            refine_problems(options.refine)

    def evaluate(self, sampler: Any, model_version: str | None) -> list[EvalResult]:
        opts = self.options
        items = load_items(opts.n, opts.seed, opts.min_constraints, opts.max_constraints)
        checkers()  # fail on missing checkers before spending time on sampling
        prompts = [it.prompt for it in items]
        got = answer_prompts(self.context, sampler, prompts, max_tokens=opts.max_tokens,
                             temperature=opts.temperature, adapter_role=opts.adapter_role,
                             model_version=model_version)
        version, answers = got.version, got.texts
        scores = [score_item(it, text, opts.score_seed) for it, text in zip(items, answers, strict=True)]
        refined: list[tuple[str, Scores]] | None = None
        outcome = None
        if opts.refine is not None:
            outcome = refine_answers(self.context, sampler, prompts, answers, opts.refine, opts.adapter_role,
                                     max_tokens=opts.max_tokens)
            refined = [(text, score_item(it, text, opts.score_seed))
                       for it, text in zip(items, outcome.answers, strict=True)]
        if opts.save_responses and self.context.run_dir is not None:
            self.save(items, answers, scores, refined)
        base = {"n_items": len(items), "constraints": sum(len(it.checks) for it in items), "n": opts.n,
                "seed": opts.seed, "min_constraints": opts.min_constraints,
                "max_constraints": opts.max_constraints, "max_tokens": opts.max_tokens,
                "temperature": opts.temperature, "adapter": got.adapter, "score_seed": opts.score_seed,
                "truncated": got.truncated}
        out = self.results(items, scores, version, base)
        if outcome is not None and refined is not None:
            out += refined_results(self.results(items, [s for _, s in refined], version, base), outcome)
        return out

    def results(self, items: list[Item], scores: list[Scores], version: str | None,
                base: dict[str, Any]) -> list[EvalResult]:
        """The four metrics of ``scores``, in METRICS order."""
        m, n_checks = base["n_items"], base["constraints"]
        ids = [it.id for it in items]
        out = []
        for j, mode in enumerate(("strict", "loose")):
            flags = [s[j] for s in scores]
            correct = [int(all(f)) for f in flags]
            fractions = [sum(f) / len(f) if f else 0.0 for f in flags]
            weights = [len(f) for f in flags]
            out.append(EvalResult(evaluator=self.name, metric=f"prompt_{mode}",
                                  value=sum(correct) / m if m else 0.0, n=m, model_version=version,
                                  details={**base, "ids": ids, "item_correct": correct,
                                           "ci95": list(wilson(sum(correct), m))}))
            out.append(EvalResult(evaluator=self.name, metric=f"inst_{mode}",
                                  value=sum(map(sum, flags)) / n_checks if n_checks else 0.0, n=n_checks,
                                  model_version=version,
                                  details={**base, "ids": ids, "by_check": by_check(items, flags),
                                           "item_scores": fractions, "item_weights": weights,
                                           "ci95": list(bootstrap_mean(fractions, weights=weights))}))
        return sorted(out, key=lambda r: METRICS.index(r.metric))

    def save(self, items: list[Item], answers: list[str], scores: list[Scores],
             refined: list[tuple[str, Scores]] | None = None) -> None:
        assert self.context.run_dir is not None
        folder = Path(self.context.run_dir) / self.name
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"iteration-{self.context.iteration}.jsonl").open("w", encoding="utf-8") as fh:
            for k, (item, text, (strict, loose)) in enumerate(zip(items, answers, scores, strict=True)):
                line = {"id": item.id, "prompt": item.prompt, "checks": list(item.checks), "response": text,
                        "strict": strict, "loose": loose}
                if refined is not None:
                    line.update(refined=refined[k][0], refined_strict=refined[k][1][0],
                                refined_loose=refined[k][1][1])
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")


def by_check(items: list[Item], flags: list[list[bool]]) -> dict[str, list[int]]:
    """``{checker id: [followed, total]}``."""
    counts: dict[str, list[int]] = {}
    for item, fl in zip(items, flags, strict=True):
        for check, ok in zip(item.checks, fl, strict=True):
            c = counts.setdefault(check["id"], [0, 0])
            c[0] += ok
            c[1] += 1
    return dict(sorted(counts.items()))


@hookimpl
def register_evaluators() -> list[type]:
    return [Constraints]
