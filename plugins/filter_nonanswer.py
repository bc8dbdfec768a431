"""The ``non-answer`` filter: drop rewrites that are not answers (a verdict, nothing, or the critique).

What it is: the guard SPaR and SELF put before judging refinements (a 135M refiner sometimes
writes "Final judgement: No" instead of a rewrite, and a 135M judge sometimes prefers it). A
response or refinement is dropped when its text is empty or whitespace (``empty``), is a verdict
(``verdict``: it contains a judge's verdict phrase, ``verdict_pattern``, or is only a bare
Yes/No), or copies the critique it was conditioned on (``copy of the critique``: at least
``copy_share`` of its word trigrams, or all of a text shorter than three words, occur in the
critique). The critique text comes from the record's ``meta['critique']``, which the refiners
record (engine.toolkit.judging.carried); a record without one is not checked for copying. Each
dropped record gets a side output (``emit``; the runner writes it under this filter's execution):
a Critique that judges it (role ``judges``), verdict No, text "non-answer: <reason>", ``meta``
{kept: false, reason, filter}, the decision pattern ``autodidact lineage tree`` shows. Records of
other kinds pass through untouched.
What it is not: a judge of quality; an answer that is wrong but is an answer is kept.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import ANY, Stage
from engine.records import Critique, Link, Record, Response

BARE = re.compile(r"^[\s*_#>\"'`.:!-]*(final\s+(judg(e)?ment|verdict|answer)\s*:?\s*)?(yes|no)"
                  r"[\s*_\"'`.!]*$", re.I)
"""A text that is only a verdict: "Yes", "**No.**", "Final verdict: yes"."""


class NonAnswerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict_pattern: str = Field(r"judg(?:e)?ment\s*:\s*\**\s*(?:yes|no)\b",
                                 description="regex (case-insensitive) of a judge's verdict phrase")
    copy_share: float = Field(0.8, gt=0.0, le=1.0, description="drop a text with at least this share "
                              "of its word trigrams in the critique it was conditioned on")


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _trigrams(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}


def copied_share(text: str, source: str) -> float:
    """The share of ``text``'s word trigrams found in ``source`` (a text under three words: 1.0 when
    its words appear in ``source`` in order, else 0.0)."""
    words = _words(text)
    if len(words) < 3:
        return float(bool(words) and f" {' '.join(words)} " in f" {' '.join(_words(source))} ")
    grams = _trigrams(words)
    return len(grams & _trigrams(_words(source))) / len(grams)


def non_answer(text: str, critique: str | None, opts: NonAnswerOptions) -> str | None:
    """Why ``text`` is not an answer (``empty``, ``verdict``, ``copy of the critique``), or None."""
    if not text.strip():
        return "empty"
    if BARE.match(text) or re.search(opts.verdict_pattern, text, re.I):
        return "verdict"
    if critique and copied_share(text, critique) >= opts.copy_share:
        return "copy of the critique"
    return None


class NonAnswer(Stage[NonAnswerOptions]):
    kind = "filter"
    name = "non-answer"
    accepts = ("response",)  # a refinement is a response
    produces = (ANY,)  # the records it is handed, fewer

    def filter(self, records: Sequence[Record]) -> list[Record]:
        kept: list[Record] = []
        for rec in records:
            critique = rec.meta.get("critique") if isinstance(rec, Response) else None
            reason = non_answer(rec.text, critique, self.options) if isinstance(rec, Response) else None
            if reason is None:
                kept.append(rec)
                continue
            self.emit([Critique(verdict=False, text=f"non-answer: {reason}",
                                parents=[Link(id=rec.id, role="judges")],
                                meta={"kept": False, "reason": reason, "filter": self.name})])
        return kept


@hookimpl
def register_filters() -> list[type]:
    return [NonAnswer]
