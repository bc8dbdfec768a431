"""The ``llm-judge`` critic: n critiques per response, a Yes/No verdict each, majority vote.

What it is: the shared judge of SPaR and SELF. Each response gets ``votes`` sampled critiques
(one batched sampler call for the whole batch); a configurable regex parses each critique's
final Yes/No; the verdict is the majority, with a tie policy (``drop`` gives verdict None).
The critique record keeps the vote counts, the vote share of Yes and the texts.
What it is not: a reward model; unparseable critiques count as neither Yes nor No.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from engine import hookimpl
from engine.contracts import Stage
from engine.records import Critique, Link, Response
from plugins._llm import SamplingOptions, load_template, sample_texts


class JudgeOptions(SamplingOptions):
    votes: int = Field(5, ge=1, le=64, description="critiques sampled per response")
    yes_pattern: str = r"judg(?:e)?ment\s*:\s*\**\s*yes"
    no_pattern: str = r"judg(?:e)?ment\s*:\s*\**\s*no"
    tie: Literal["drop", "yes", "no"] = "drop"
    max_tokens: int = Field(192, ge=1, le=32768)


def parse_verdict(text: str, yes: str, no: str) -> bool | None:
    """True/False from the LAST verdict phrase in ``text``; None if there is none."""
    hits = [(m.start(), True) for m in re.finditer(yes, text, re.I)]
    hits += [(m.start(), False) for m in re.finditer(no, text, re.I)]
    return max(hits)[1] if hits else None


def majority(yes: int, no: int, tie: str) -> bool | None:
    if yes != no:
        return yes > no
    return {"yes": True, "no": False}.get(tie)


def judge_prompts(pairs: Sequence[tuple[str, str]], opts: JudgeOptions) -> list[str]:
    """The judge prompt of each (instruction, response text) pair."""
    template = load_template(opts.template, "judge.txt")
    return [template.format(prompt=prompt, response=text) for prompt, text in pairs]


def tally(texts: Sequence[str], opts: JudgeOptions) -> dict[str, Any]:
    """The vote fields of a Critique from sampled judge texts: verdict, votes and the Yes share."""
    verdicts = [parse_verdict(t, opts.yes_pattern, opts.no_pattern) for t in texts]
    yes, no = verdicts.count(True), verdicts.count(False)
    return {"verdict": majority(yes, no, opts.tie), "votes_yes": yes, "votes_no": no,
            "vote_share": yes / len(texts)}


def make_critique(response_id: str, texts: Sequence[str], version: str | None,
                  opts: JudgeOptions) -> Critique:
    """The critique of one response from its sampled judge texts."""
    return Critique(**tally(texts, opts), text="\n---\n".join(texts), model_version=version,
                    parents=[Link(id=response_id, role="judges")])


class LLMJudge(Stage):
    kind = "critic"
    name = "llm-judge"
    Options = JudgeOptions

    def critique(self, responses: Sequence[Response]) -> list[Critique]:
        opts = self.options
        assert isinstance(opts, JudgeOptions)
        prompts = judge_prompts([(r.prompt, r.text) for r in responses], opts)
        sampled = sample_texts(self.context, self.name, prompts, opts, n=opts.votes, seed_offset=1)
        return [make_critique(resp.id, texts, version, opts)
                for resp, (texts, version) in zip(responses, sampled, strict=True)]


@hookimpl
def register_critics() -> list[type]:
    return [LLMJudge]
