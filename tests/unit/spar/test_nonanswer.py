"""The ``non-answer`` filter: verdicts, empty texts and copies of the critique are dropped, each
with its reason in lineage; SPaR never pairs a verdict as the chosen answer, SELF never trains on one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.contracts import StageContext
from engine.records import Critique, Link, PreferencePair, Refinement, Response, TrainingExample
from engine.sampling.protocol import SampleRequest
from plugins.filter_nonanswer import NonAnswer, NonAnswerOptions, copied_share, non_answer

CRITIQUE = "The answer uses capital letters. It should use only lowercase letters. Final judgement: No"


@pytest.mark.parametrize(("text", "reason"), [
    ("Final judgement: No", "verdict"), ("final judgment: yes.", "verdict"), ("No", "verdict"),
    ("**Yes.**", "verdict"), ("The walk was calm.\n\nFinal judgement: Yes", "verdict"),
    ("", "empty"), ("  \n\t", "empty"),
    ("It should use only lowercase letters.", "copy of the critique"),
    ("The answer uses capital letters. It should use only lowercase letters.", "copy of the critique"),
    ("the walk was calm and the river was quiet.", None), ("no rain fell on the quiet streets today.", None),
    ("Yes, the museum opens at nine and closes at five.", None),
])
def test_reasons(text: str, reason: str | None) -> None:
    assert non_answer(text, CRITIQUE, NonAnswerOptions()) == reason


def test_copy_share() -> None:
    assert copied_share("only lowercase letters", CRITIQUE) == 1.0
    assert copied_share("letters", CRITIQUE) == 1.0 and copied_share("walk", CRITIQUE) == 0.0
    assert copied_share("use only lowercase letters in a calm walk by the river", CRITIQUE) < 0.5


def test_the_filter_keeps_answers_and_records_each_drop_with_its_reason() -> None:
    root = Response(text="Not Lowercase.", prompt="Say it.")
    crit = Critique(verdict=False, text=CRITIQUE, parents=[Link(id=root.id, role="judges")])
    refs = [Refinement(text=t, prompt="Say it.", sample_index=i, meta={"critique": CRITIQUE},
                       parents=[Link(id=root.id, role="refines"), Link(id=crit.id, role="input")])
            for i, t in enumerate(["Final judgement: No", "a real rewrite in lowercase.", " ",
                                   "It should use only lowercase letters."])]
    stage = NonAnswer(context=StageContext())
    kept = stage.filter([crit, *refs])
    assert kept == [crit, refs[1]], "other kinds pass through, in input order"
    drops = {c.parent_ids("judges")[0]: c for c in stage.context.emitted if isinstance(c, Critique)}
    assert {i: drops[r.id].meta["reason"] for i, r in enumerate(refs) if r.id in drops} == {
        0: "verdict", 2: "empty", 3: "copy of the critique"}
    assert all(c.verdict is False and c.meta["kept"] is False and c.meta["filter"] == "non-answer"
               and c.text.startswith("non-answer: ") for c in drops.values())
    assert stage.filter([]) == []


def verdict_refiner(req: SampleRequest, i: int) -> str:
    """The actor's answers are judged No, anything else Yes; the refiner writes a verdict."""
    content = req.messages[-1][1] if req.messages else ""
    if "strict judge" in content:
        text = content.split("Response:\n", 1)[1]
        return "Final judgement: " + ("No" if "the actor's answer" in text else "Yes")
    if "improved response" in content:
        return "I think so. [START]Final judgement: No[END]"
    return f"the actor's answer #{i}"


def spar(run_loop: Callable[..., Any], refine: dict[str, Any], **loop: Any) -> Any:
    stages = {"respond": {"options": {"n": 2}}, "judge": {"name": "llm-judge", "options": {"votes": 3}},
              "refine": refine, **loop}
    return run_loop({"loop": "spar", "iterations": 1, "data": {"limit": 2}, "stages": stages},
                    script=verdict_refiner)


def drops(result: Any) -> dict[str, str]:
    return {c.parent_ids("judges")[0]: c.meta["reason"] for c in result.records("critique", 1)
            if c.meta.get("filter") == "non-answer"}


def test_spar_pairs_no_verdict_and_records_why(run_loop: Callable[..., Any]) -> None:
    tree = {"options": {"branch": 2, "select": 1, "depth": 2, "judge": {"votes": 3}, "rule": None}}
    result = spar(run_loop, tree)
    nodes = [r for r in result.records("refinement", 1) if isinstance(r, Refinement)]
    assert nodes and all(n.text == "Final judgement: No" for n in nodes)
    assert result.funnel(1)["failing"] == 4 and result.funnel(1)["pairs"] == 0
    assert not [p for p in result.records("preference_pair", 1)]
    assert set(drops(result)) == {n.id for n in nodes} and set(drops(result).values()) == {"verdict"}
    assert all(n.value == 0.0 for n in nodes)
    assert len(nodes) == 4 * 2, "a dropped node is never expanded: one level of 2 children per root"


def test_spar_screens_finals_of_any_refiner(run_loop: Callable[..., Any]) -> None:
    result = spar(run_loop, {"name": "critique-refine"})
    assert result.funnel(1)["refine"] == 4 and result.funnel(1)["screen"] == 0
    assert "judge:finals" not in result.funnel(1), "a dropped final is not judged"
    assert result.funnel(1)["pairs"] == 0 and set(drops(result).values()) == {"verdict"}
    unguarded = spar(run_loop, {"name": "critique-refine"}, screen=None)
    chosen = [p.chosen for p in unguarded.records("preference_pair", 1) if isinstance(p, PreferencePair)]
    assert chosen == ["Final judgement: No"] * 4, "without the guard the judge's Yes pairs the verdict"


def self_script(req: SampleRequest, i: int) -> str:
    content = req.messages[-1][1] if req.messages else ""
    if "strict judge" in content:
        return "Final judgement: " + ("No" if "bad answer" in content.split("Response:\n", 1)[1] else "Yes")
    if "improved response" in content:
        return "[START]Final judgement: Yes[END]"
    return "bad answer"


def test_self_never_trains_on_a_verdict(run_loop: Callable[..., Any], tmp_path: Any) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(f'{{"prompt": "Question {k}?"}}\n' for k in range(3)))
    config = {"loop": "self", "iterations": 1, "data": {"source": str(prompts)},
              "stages": {"judge": {"options": {"votes": 1}}, "teacher_feedback": None,
                         "teacher_refine": None}}
    result = run_loop(config, script=self_script)
    funnel = result.funnel(1)
    assert funnel["refine"] == 3 and funnel["screen"] == 0 and funnel["judge:refined"] == 0
    assert "examples" not in funnel or funnel["examples"] == 0
    examples = [e for e in result.records("training_example", 1) if isinstance(e, TrainingExample)]
    assert not any("Final judgement" in m["content"] for e in examples for m in e.messages)
    refs = {r.id for r in result.records("refinement", 1)}
    assert set(drops(result)) == refs and set(drops(result).values()) == {"verdict"}
    config["stages"]["screen"] = None  # type: ignore[index]
    unguarded = run_loop(config, script=self_script)
    trained = [m["content"] for e in unguarded.records("training_example", 1)
               if isinstance(e, TrainingExample) for m in e.messages if m["role"] == "assistant"]
    assert "Final judgement: Yes" in trained, "without the guard SELF trains on the verdict"
