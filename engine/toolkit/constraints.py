"""The verifiable-constraint taxonomy: constraint kinds with the IFEval checker that verifies each.

What it is: the five categories (format, content, length, language, style), every
:class:`ConstraintKind` (its sentence, phrased the way IFEval phrases its verifiable instructions,
the parts of the answer it claims, the id and kwargs of the lm-eval checker that verifies it),
:func:`draw_constraints` (a seeded draw of compatible constraints) and :func:`join_constraints`
(an instruction with its constraint sentences appended). The ``evolve-constraints`` generator
draws SPaR's training tasks with it, the ``constraints`` evaluator its held-out test items.
What it is not: a checker (engine.toolkit.ifeval runs the checks) nor a generator.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations, product
from typing import Any, Literal

Category = Literal["format", "content", "length", "language", "style"]
CATEGORIES: tuple[Category, ...] = ("format", "content", "length", "language", "style")
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
