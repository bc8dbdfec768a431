"""The ``evolve-constraints`` generator: seed instructions -> instructions with 1 to 3 added constraints.

What it is: SPaR's instruction evolution. For each seed Task (or Seed) it makes ``variants`` new
Tasks, each with 1 to 3 constraints drawn from a taxonomy of five categories (format, content,
length, language, style), at most one per category and never two that fight over the same part of
the answer (two endings, two letter cases, two layouts). Every constraint is phrased the way
IFEval phrases its verifiable instructions ("Answer in fewer than 50 words.", "Use only lowercase
letters ...", "Wrap your entire answer in double quotation marks.") and carries the id and kwargs
of the lm-eval checker that verifies it in ``meta['checks']`` (``[{"id", "kwargs", "text"}]``, the
same in both modes; the ``respond`` generator and the refiners hand it on to every answer, and the
``constraint-check`` critic runs it). The draw is fixed by the context's
seed and the seed record's id, so a resumed run makes the same tasks with the same ids. Mode
``rule`` (default, reliable on a 135M model) appends the constraints to the instruction; mode
``llm`` asks the run's model to merge them into one rewritten instruction (template
``evolve.txt``) and falls back to the rule text (``meta['fallback']``) when the answer is
unusable. Each Task keeps the seed's text in ``meta['seed_prompt']`` and links to the seed
(role ``input``); ``constraints`` lists the constraint sentences.
What it is not: a checker (plugins/evaluator_ifeval.py scores answers) nor a judge of whether the
constrained instruction still makes sense.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations, product
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine import hookimpl
from engine.contracts import Stage
from engine.records import Link, Record, Seed, Task
from engine.toolkit.prompting import SamplingOptions, load_template, sample_texts

Category = Literal["format", "content", "length", "language", "style"]
CATEGORIES: tuple[Category, ...] = ("format", "content", "length", "language", "style")
TEMPLATE = Path(__file__).parent / "templates" / "evolve.txt"
Draw = tuple[str, str, dict[str, Any]]
"""One drawn constraint: its sentence, the IFEval checker id, the checker's kwargs."""

KEYWORDS = ("example", "simple", "reason", "idea", "people", "today", "world", "clear", "future", "home")
FORBIDDEN = ("very", "really", "just", "thing", "good", "also", "great")
END_PHRASES = ("Let me know if you have any questions.", "Hope this helps.", "That is all.",
               "Thank you for reading.")
LANGUAGES = (("fr", "French"), ("es", "Spanish"), ("de", "German"), ("it", "Italian"), ("pt", "Portuguese"))


def _none(v: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class ConstraintKind:
    """A kind of constraint: its category, the parts of the answer it claims (``slots``), the
    lm-eval checker that verifies it, its sentence (a format string over a value ``v`` drawn from
    ``choices``) and the checker's kwargs for that value."""

    name: str
    category: Category
    slots: str
    checker: str
    text: str
    choices: tuple[Any, ...] = (None,)
    kwargs: Callable[[Any], dict[str, Any]] = _none

    def draw(self, rng: random.Random) -> Draw:
        v = rng.choice(self.choices)
        return self.text.format(v=v), self.checker, self.kwargs(v)


TAXONOMY: tuple[ConstraintKind, ...] = (
    ConstraintKind("quotation", "format", "wrap", "startend:quotation",
                   "Wrap your entire answer in double quotation marks."),
    ConstraintKind("bullets", "format", "layout", "detectable_format:number_bullet_lists",
                   "Answer with exactly {v} bullet points, each on its own line starting with '* '.",
                   (2, 3, 4), lambda v: {"num_bullets": v}),
    ConstraintKind("title", "format", "start", "detectable_format:title",
                   "Start your answer with a title inside double angular brackets, for example <<Title>>."),
    ConstraintKind("sections", "format", "layout start", "detectable_format:multiple_sections",
                   "Divide your answer into {v} sections and begin each with SECTION X, such as SECTION 1.",
                   (2, 3), lambda v: {"section_spliter": "SECTION", "num_sections": v}),
    ConstraintKind("highlights", "style", "", "detectable_format:number_highlighted_sections",
                   "Highlight at least {v} parts of your answer with markdown, i.e. *highlighted part*.",
                   (1, 2, 3), lambda v: {"num_highlights": v}),
    ConstraintKind("keywords", "content", "words", "keywords:existence",
                   'Include the keywords "{v[0]}" and "{v[1]}" in your answer.',
                   tuple(combinations(KEYWORDS, 2)), lambda v: {"keywords": list(v)}),
    ConstraintKind("forbidden", "content", "", "keywords:forbidden_words",
                   'Do not use the words "{v[0]}" or "{v[1]}" anywhere in your answer.',
                   tuple(combinations(FORBIDDEN, 2)), lambda v: {"forbidden_words": list(v)}),
    ConstraintKind("frequency", "content", "words", "keywords:frequency",
                   'Use the word "{v[0]}" at least {v[1]} times.', tuple(product(KEYWORDS, (2, 3))),
                   lambda v: {"relation": "at least", "keyword": v[0], "frequency": v[1]}),
    ConstraintKind("postscript", "content", "end", "detectable_content:postscript",
                   'At the end of your answer, add a postscript starting with "{v}".',
                   ("P.S.", "P.P.S"), lambda v: {"postscript_marker": v}),
    ConstraintKind("placeholders", "content", "", "detectable_content:number_placeholders",
                   "Include at least {v} placeholders in square brackets, such as [name].",
                   (1, 2, 3), lambda v: {"num_placeholders": v}),
    ConstraintKind("max_words", "length", "length", "length_constraints:number_words",
                   "Answer in fewer than {v} words.", (30, 40, 50, 60, 80, 100),
                   lambda v: {"relation": "less than", "num_words": v}),
    ConstraintKind("min_words", "length", "length", "length_constraints:number_words",
                   "Answer with at least {v} words.", (50, 80, 100, 150),
                   lambda v: {"relation": "at least", "num_words": v}),
    ConstraintKind("max_sentences", "length", "length", "length_constraints:number_sentences",
                   "Your answer must contain fewer than {v} sentences.", (2, 3, 4, 5),
                   lambda v: {"relation": "less than", "num_sentences": v}),
    ConstraintKind("paragraphs", "length", "length layout", "length_constraints:number_paragraphs",
                   "Write exactly {v} paragraphs, separated from each other by the markdown divider ***.",
                   (2, 3), lambda v: {"num_paragraphs": v}),
    ConstraintKind("language", "language", "case end words", "language:response_language",
                   "Your entire answer must be in {v[1]}; no other language is allowed.", LANGUAGES,
                   lambda v: {"language": v[0]}),
    ConstraintKind("lowercase", "language", "case", "change_case:english_lowercase",
                   "Answer in English using only lowercase letters; no capital letters are allowed."),
    ConstraintKind("capitals", "language", "case", "change_case:english_capital",
                   "Write your entire answer in English, in capital letters only."),
    ConstraintKind("no_comma", "style", "", "punctuation:no_comma", "Do not use any commas in your answer."),
    ConstraintKind("capital_words", "style", "case", "change_case:capital_word_frequency",
                   "Use at least {v} words written in all capital letters for emphasis.", (2, 3),
                   lambda v: {"capital_relation": "at least", "capital_frequency": v}),
    ConstraintKind("end_phrase", "style", "end case", "startend:end_checker",
                   'Finish your answer with the words "{v}" and write nothing after them.', END_PHRASES,
                   lambda v: {"end_phrase": v}),
)
"""Every constraint kind. Two kinds that share a slot never go together: two endings, two letter
cases or languages, two layouts, two openings, English keywords in an answer in another language."""


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


def draw_constraints(rng: random.Random, k: int,
                     categories: Sequence[Category]) -> list[tuple[ConstraintKind, Draw]]:
    """Up to ``k`` constraints, at most one per category, no two sharing a slot (at least one)."""
    chosen: list[tuple[ConstraintKind, Draw]] = []
    used: set[str] = set()
    for category in rng.sample(sorted(set(categories)), len(set(categories))):
        fits = [c for c in TAXONOMY if c.category == category and not set(c.slots.split()) & used]
        if fits and len(chosen) < k:
            kind = rng.choice(fits)
            chosen.append((kind, kind.draw(rng)))
            used |= set(kind.slots.split())
    return chosen


def join_constraints(prompt: str, sentences: Sequence[str]) -> str:
    """The rule-mode instruction: the seed text, closed with a full stop if needed, then the constraints."""
    base = prompt.rstrip()
    if base and base[-1].isalnum():
        base += "."
    return " ".join([base, *sentences])


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
