"""The ``evolve-constraints`` generator: seed instructions -> instructions with 1 to 3 added constraints.

What it is: SPaR's instruction evolution. For each seed Task (or Seed) it makes ``variants`` new
Tasks, each with 1 to 3 constraints drawn from the taxonomy of engine.toolkit.constraints (five
categories: format, content, length, language, style), at most one per category and never two
that fight over the same part of the answer (two endings, two letter cases, two layouts). Every
constraint is phrased the way IFEval phrases its verifiable instructions ("Answer in fewer than
50 words.", "Use only lowercase letters ...", "Wrap your entire answer in double quotation
marks.") and carries the id and kwargs of the lm-eval checker that verifies it in
``meta['checks']`` (``[{"id", "kwargs", "text"}]``, the same in both modes; the ``respond``
generator and the refiners hand it on to every answer, and the ``constraint-check`` critic runs
it). The draw is fixed by the context's seed and the seed record's id, so a resumed run makes the
same tasks with the same ids. Mode ``rule`` (default, reliable on a 135M model) appends the
constraints to the instruction; mode ``llm`` asks the run's model to merge them into one
rewritten instruction (template ``evolve.txt``) and falls back to the rule text
(``meta['fallback']``) when the answer is unusable. Each Task keeps the seed's text in
``meta['seed_prompt']`` and links to the seed (role ``input``); ``constraints`` lists the
constraint sentences.
What it is not: a checker (plugins/evaluator_ifeval.py scores answers) nor a judge of whether the
constrained instruction still makes sense.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine import hookimpl
from engine.contracts import Stage
from engine.records import Link, Record, Seed, Task
from engine.toolkit.constraints import (
    CATEGORIES,
    TAXONOMY,
    Category,
    ConstraintKind,
    Draw,
    draw_constraints,
    join_constraints,
)
from engine.toolkit.prompting import SamplingOptions, load_template, sample_texts

TEMPLATE = Path(__file__).parent / "templates" / "evolve.txt"
__all__ = ["CATEGORIES", "TAXONOMY", "Category", "ConstraintKind", "Draw", "EvolveConstraints",
           "EvolveOptions", "draw_constraints", "join_constraints", "parse_rewrite"]


class EvolveOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["rule", "llm"] = Field("rule", description="rule: append the constraints; llm: ask the "
                                         "model to merge them into one rewritten instruction")
    variants: int = Field(1, ge=1, le=64, description="evolved tasks made from each seed")
    min_constraints: int = Field(1, ge=1, le=3)
    max_constraints: int = Field(3, ge=1, le=3)
    categories: list[Category] = Field(default_factory=lambda: list(CATEGORIES), min_length=1,
                                       description="the taxonomy categories to draw from")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="llm mode: temperature of the rewrite")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(160, ge=1, le=32768, description="llm mode: new tokens of the rewrite")
    template: str | None = Field(None, description="llm mode: path of a template ({prompt}, {constraints})")
    adapter_role: str | None = Field("policy", description="llm mode: adapter role that rewrites")
    min_chars: int = Field(20, ge=1, description="llm mode: a shorter rewrite falls back to the rule text")

    @model_validator(mode="after")
    def _ordered(self) -> EvolveOptions:
        if self.min_constraints > self.max_constraints:
            raise ValueError("min_constraints must not exceed max_constraints")
        return self


def parse_rewrite(text: str) -> str:
    """The rewritten instruction in a model's answer: its first paragraph, labels and quotes dropped."""
    text = re.sub(r"^\s*(new|rewritten)?\s*instruction\s*:\s*", "", text.strip(), flags=re.I)
    first = re.split(r"\n\s*\n", text, maxsplit=1)[0].strip()
    return first.strip('"').strip()


class EvolveConstraints(Stage[EvolveOptions]):
    kind = "generator"
    name = "evolve-constraints"
    accepts = ("task", "seed")
    produces = ("task",)

    def generate(self, inputs: Sequence[Record]) -> list[Record]:
        opts = self.options
        seeds = [r for r in inputs if isinstance(r, (Task, Seed))]
        plans = []
        for seed in seeds:
            prompt = seed.prompt if isinstance(seed, Task) else seed.text
            for j in range(opts.variants):
                rng = random.Random(f"{self.context.seed}:{prompt}:{j}")  # content, not the run-scoped id
                k = rng.randint(opts.min_constraints, opts.max_constraints)
                plans.append((seed, prompt, draw_constraints(rng, k, opts.categories)))
        rewrites: list[tuple[str | None, str | None]] = [(None, None)] * len(plans)
        if opts.mode == "llm" and plans:
            template = load_template(opts.template, TEMPLATE)
            prompts = [template.format(prompt=p, constraints="\n".join(f"- {d[0]}" for _, d in drawn))
                       for _, p, drawn in plans]
            sampling = SamplingOptions(n=1, temperature=opts.temperature, top_p=opts.top_p,
                                       max_tokens=opts.max_tokens, adapter_role=opts.adapter_role)
            rewrites = [(texts[0] if texts else "", version) for texts, version in
                        sample_texts(self.context, self.name, prompts, sampling, seed_offset=3)]
        out: dict[str, Record] = {}
        for (seed, prompt, drawn), (raw, version) in zip(plans, rewrites, strict=True):
            sentences = [d[0] for _, d in drawn]
            meta: dict[str, Any] = {
                "seed_prompt": prompt, "mode": opts.mode,
                "constraint_kinds": [c.name for c, _ in drawn],
                "constraint_categories": [c.category for c, _ in drawn],
                "checks": [{"id": d[1], "kwargs": d[2], "text": d[0]} for _, d in drawn]}
            text = join_constraints(prompt, sentences)
            if raw is not None:
                rewritten = parse_rewrite(raw)
                meta["raw"] = raw
                if len(rewritten) >= opts.min_chars and rewritten != prompt.strip():
                    text = rewritten
                else:
                    meta["fallback"] = True
            category = seed.category if isinstance(seed, Task) else None
            difficulty = seed.difficulty if isinstance(seed, Task) else None
            task = Task(prompt=text, constraints=sentences, category=category, difficulty=difficulty,
                        model_version=version, meta=meta, parents=[Link(id=seed.id, role="input")])
            out.setdefault(task.id, task)
        return list(out.values())


@hookimpl
def register_generators() -> list[type]:
    return [EvolveConstraints]
