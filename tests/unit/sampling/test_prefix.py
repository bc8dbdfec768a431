"""Answers that start from a given text: a chat ending in an assistant message is continued, and the
``prefix`` option of LLM stages uses that (a small judge started at 'Final judgement:' votes)."""

from __future__ import annotations

from typing import Any

from engine.contracts import StageContext
from engine.records import Link, Response, Task
from engine.sampling.protocol import SampleRequest
from plugins.critic_judge import JudgeOptions, LLMJudge


def test_a_chat_ending_with_the_assistant_is_continued() -> None:
    new = SampleRequest.chat("Hi")
    cont = SampleRequest.chat([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hel"}])
    assert not new.continues and new.chat_template_kwargs() == {"add_generation_prompt": True}
    assert cont.continues
    assert cont.chat_template_kwargs() == {"add_generation_prompt": False, "continue_final_message": True}


def test_judge_prefix_is_sent_as_the_assistant_start_and_kept_in_the_votes(scripted_sampler: Any) -> None:
    seen: list[SampleRequest] = []

    def answer(req: SampleRequest, i: int) -> str:
        seen.append(req)
        return [" Yes", " No.", " yes, it does"][i]

    ctx = StageContext(seed=1, sampler=scripted_sampler(script=answer))
    judge = LLMJudge(JudgeOptions(votes=3, prefix="Final judgement:"), ctx)
    task = Task(prompt="Say hi.")
    (crit,) = judge.critique([Response(text="hi", prompt=task.prompt, parents=[Link(id=task.id)])])
    assert seen[0].messages is not None and seen[0].messages[-1] == ("assistant", "Final judgement:")
    assert (crit.votes_yes, crit.votes_no, crit.verdict) == (2, 1, True)
    assert crit.samples == ["Final judgement: Yes", "Final judgement: No.",
                                          "Final judgement: yes, it does"]
