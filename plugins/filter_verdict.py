"""The ``verdict`` filter: keep critiques by their verdict (Yes, No, or undecided).

What it is: the gate that SELF and SPaR use after a judge: keep the passing critiques (to keep
their responses) or the failing ones (to send their responses to a refiner). What it is not: a
judge; it reads verdicts that a critic already made, and passes other records through untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import ANY, Stage
from engine.records import Critique, Record


class VerdictOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep: Literal["yes", "no", "undecided"] = "yes"
    min_vote_share: float = Field(0.0, ge=0.0, le=1.0, description="with keep=yes: also need this share")


class VerdictFilter(Stage[VerdictOptions]):
    kind = "filter"
    name = "verdict"
    accepts = ("critique",)
    produces = (ANY,)

    def filter(self, records: Sequence[Record]) -> list[Record]:
        opts = self.options
        want = {"yes": True, "no": False, "undecided": None}[opts.keep]
        kept: list[Record] = []
        for rec in records:
            if not isinstance(rec, Critique):
                kept.append(rec)
            elif rec.verdict is want and (want is not True or rec.vote_share >= opts.min_vote_share):
                kept.append(rec)
        return kept


@hookimpl
def register_filters() -> list[type]:
    return [VerdictFilter]
