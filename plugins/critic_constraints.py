"""The ``constraint-check`` critic (rules) and the ``rule-and-judge`` critic (rules, then an LLM judge).

``constraint-check``: each response's verifiable constraints are in its ``meta['checks']``
(``[{"id", "kwargs", "text"}]``: ``evolve-constraints`` puts them on the task, ``respond`` and the
refiners hand them on, engine.toolkit.judging.carried). Each check is run with lm-eval's IFEval
checker of that id (engine.toolkit.ifeval, the loader the ``ifeval`` evaluator uses; ``random`` and
langdetect reseeded per response). Verdict Yes iff every check passes; ``vote_share`` is the share
of checks passed (``votes_yes`` / ``votes_no``: checks passed / failed); the text names each failing
constraint ("fails: <sentence>"), one a line. A response with no checks gets verdict None.

``rule-and-judge``: options ``rule`` and ``judge`` (each ``{name, options}``; defaults
``constraint-check`` and ``llm-judge``). The rule critic judges every response first. Where it
says No, the verdict is No and the LLM is not asked (``vote_share`` 0, no samples; the text is the
rule's, then "Decided by the rule"). Where it says Yes or has nothing to check (None), the judge
decides: its verdict, votes, vote share and samples; where the rule had checks, its text follows
the judge's ("... decided by the judge"). ``meta`` records both: ``decided_by`` (``rule`` or
``judge``) and ``rule`` (its verdict, vote share and text). Only the judge's own samples are kept
as ``samples``, so a loop training a judge on agreeing samples never trains it on the rule's
lines. ``messages`` are the judge's (engine.contracts.Prompted).
What it is not: a checker of constraints the taxonomy cannot verify (the LLM judge covers those).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import cached_property
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Critic, Messages, Prompted, Stage
from engine.records import Critique, Link, Response
from engine.toolkit.ifeval import run_checks
from engine.toolkit.judging import helper_problems
from engine.toolkit.refining import StageChoice


class ConstraintCheckOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    loose: bool = Field(False, description="lm-eval's loose test (also without the first/last line "
                                           "and asterisks) instead of the strict one")
    seed: int = Field(0, description="seed of `random` and langdetect while checking")


class ConstraintCheck(Stage[ConstraintCheckOptions]):
    kind = "critic"
    name = "constraint-check"
    accepts = ("response",)
    produces = ("critique",)

    def critique(self, responses: Sequence[Response]) -> list[Critique]:
        out = []
        for resp in responses:
            checks = resp.meta.get("checks") or []
            link = [Link(id=resp.id, role="judges")]
            if not checks:
                out.append(Critique(verdict=None, text="no checkable constraints", parents=link))
                continue
            passed = run_checks(checks, resp.text, resp.prompt, self.options.seed, self.options.loose)
            fails = [f"fails: {c.get('text') or c['id']}" for c, ok in zip(checks, passed, strict=True)
                     if not ok]
            n_ok = sum(passed)
            out.append(Critique(
                verdict=not fails, votes_yes=n_ok, votes_no=len(fails), vote_share=n_ok / len(checks),
                text="\n".join(fails) or f"passes all {len(checks)} checked constraints",
                parents=link, meta={"checks": [c["id"] for c in checks], "passed": passed}))
        self.context.progress(len(responses))
        return out


class RuleAndJudgeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule: StageChoice = Field(default_factory=lambda: StageChoice(name="constraint-check"),
                              description="the rule critic: its No is final")
    judge: StageChoice = Field(default_factory=lambda: StageChoice(name="llm-judge"),
                               description="the LLM judge: decides where the rule passes or has "
                                           "nothing to check")


class RuleAndJudge(Stage[RuleAndJudgeOptions]):
    kind = "critic"
    name = "rule-and-judge"
    accepts = ("response",)
    produces = ("critique",)

    @classmethod
    def preflight(cls, options: RuleAndJudgeOptions) -> list[str]:
        return helper_problems({f"options.{k}": ("critic", c.name, c.options)
                                for k, c in (("rule", options.rule), ("judge", options.judge))})

    def _helper(self, choice: StageChoice) -> Critic:
        quiet = replace(self.context, progress=lambda n: None)
        return cast(Critic, quiet.make_stage("critic", choice.name, choice.options))

    @cached_property
    def rule(self) -> Critic:
        return self._helper(self.options.rule)

    @cached_property
    def judge(self) -> Critic:
        return self._helper(self.options.judge)

    def messages(self, responses: Sequence[Response]) -> list[Messages]:
        """The judge's chats (the rule shows none)."""
        if not isinstance(self.judge, Prompted):
            raise TypeError(f"the judge {self.options.judge.name!r} does not show its chats")
        return self.judge.messages(responses)

    def completion(self, output: Critique) -> str:
        return output.text

    def critique(self, responses: Sequence[Response]) -> list[Critique]:
        rules = self.rule.critique(responses)
        ask = [r for r, c in zip(responses, rules, strict=True) if c.verdict is not False]
        judged = iter(self.judge.critique(ask) if ask else [])
        out = [self._combine(resp, rule, None if rule.verdict is False else next(judged))
               for resp, rule in zip(responses, rules, strict=True)]
        self.context.progress(len(responses))
        return out

    def _combine(self, resp: Response, rule: Critique, judge: Critique | None) -> Critique:
        link = [Link(id=resp.id, role="judges")]
        meta: dict[str, Any] = {"rule": {"name": self.options.rule.name, "verdict": rule.verdict,
                                         "vote_share": rule.vote_share, "text": rule.text}}
        if judge is None:
            return Critique(verdict=False, text=f"{rule.text}\nDecided by the rule "
                                                f"({self.options.rule.name}): No.",
                            parents=link, meta={**meta, "decided_by": "rule"})
        text = judge.text
        if rule.verdict is True:
            text += f"\n[{self.options.rule.name}: {rule.text}; decided by the judge]"
        return Critique(verdict=judge.verdict, text=text, samples=judge.samples,
                        sample_verdicts=judge.sample_verdicts, votes_yes=judge.votes_yes,
                        votes_no=judge.votes_no, vote_share=judge.vote_share,
                        model_version=judge.model_version, parents=link,
                        meta={**judge.meta, **meta, "decided_by": "judge"})


@hookimpl
def register_critics() -> list[type]:
    return [ConstraintCheck, RuleAndJudge]
