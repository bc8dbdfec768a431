"""The ``llm-judge`` critic: n critiques per response, a Yes/No verdict each, majority vote.

What it is: the shared judge of SPaR and SELF. Each response gets ``votes`` sampled critiques
(one batched sampler call for the whole batch); a configurable regex parses each critique's
final Yes/No; the verdict is the majority, with a tie policy (``drop`` gives verdict None).
The critique record keeps the vote counts, the vote share of Yes, and every sampled critique with
its own verdict. ``messages(responses)`` shows the judge chats (engine.contracts.Prompted), so a
loop can train a judge in this judge's own format. Prompts, parsing and tallies are the public
toolkit's (engine.toolkit.judging).
What it is not: a reward model; unparseable critiques count as neither Yes nor No.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine import hookimpl
from engine.contracts import Messages, Stage
from engine.records import Critique, Response
from engine.toolkit.judging import JudgeOptions, judge_messages, make_critique
from engine.toolkit.prompting import sample_chats


class LLMJudge(Stage[JudgeOptions]):
    kind = "critic"
    name = "llm-judge"
    accepts = ("response",)
    produces = ("critique",)

    def messages(self, responses: Sequence[Response]) -> list[Messages]:
        return judge_messages(responses, self.options)

    def completion(self, output: Critique) -> str:
        return output.text

    def critique(self, responses: Sequence[Response]) -> list[Critique]:
        opts = self.options
        sampled = sample_chats(self.context, self.name, self.messages(responses), opts, n=opts.votes,
                               seed_offset=1)
        return [make_critique(resp.id, texts, version, opts)
                for resp, (texts, version) in zip(responses, sampled, strict=True)]


@hookimpl
def register_critics() -> list[type]:
    return [LLMJudge]
