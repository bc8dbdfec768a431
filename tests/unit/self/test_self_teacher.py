"""SELF's meta-skill data from a teacher: feedback and a refined answer for the policy's answers,
kept only when the refinement is better (correct, where the task has a gold answer; a higher Yes
share of the teacher's verdict otherwise), mixed into the round's fine-tuning; the teacher roles
unbound fall back to the accepted self-refinements; a record the teacher could not serve is a
StageError against its input under ``on_error: skip`` and the run goes on."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.records import StageError, TrainingExample
from engine.testing import SCRIPT_SAMPLER, LoopResult

MATH = [{"prompt": "Calculate 7 - 3. End with: The answer is <number>.", "answer": "4"},
        {"prompt": "Compute 60 - 50. End with: The answer is <number>.", "answer": "10"}]


def script(request: Any, i: int) -> str:
    text = request.messages[-1][1]
    if text.startswith("You are a strict judge"):
        return "Wrong sum. Final judgement: No" if "The answer is 5" in text else "Final judgement: Yes"
    if "improved response between the markers" in text:
        if "TEACHER" in text and "60 - 50" in text and "FLAKY" in text:
            raise ConnectionError("teacher unreachable")
        fixed = "7 - 3 = 4. The answer is 4." if "7 - 3" in text else "The answer is 99."
        return f"[START]{fixed}[END]"
    return "Let me add. The answer is 5."


@pytest.fixture
def math_data(tmp_path: Path) -> str:
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in MATH))
    return str(path)


def config(source: str, **stages: Any) -> dict[str, Any]:
    return {"loop": "self", "iterations": 1, "data": {"source": source},
            "stages": {"respond": {"name": "respond", "options": {"n": 1}}, **stages}}


def meta_examples(run: LoopResult) -> list[TrainingExample]:
    return [r for r in run.records("training_example", 1)
            if isinstance(r, TrainingExample) and r.target_role == "meta-skill"]


def test_math_meta_skill_is_kept_only_when_the_refined_answer_is_correct(
        run_loop: Callable[..., LoopResult], math_data: str) -> None:
    run = run_loop(config(math_data), script=script)
    funnel = run.funnel(1)
    assert funnel["teacher_feedback:meta"] == 2 and funnel["teacher_refine:meta"] == 2
    assert funnel["meta-skill"] == 1, funnel  # 60 - 50 -> 99 is judged Yes but is wrong
    (kept,) = meta_examples(run)
    assert "7 - 3" in kept.messages[0]["content"] and "The answer is 4" in kept.messages[1]["content"]
    assert "Wrong sum" in kept.messages[1]["content"]  # the teacher's feedback, then the refinement


def test_without_a_gold_answer_a_higher_yes_share_decides(run_loop: Callable[..., LoopResult]) -> None:
    run = run_loop({**config("data/self-prompts.jsonl"), "data": {"source": "data/self-prompts.jsonl",
                                                                  "limit": 2}}, script=script)
    assert run.funnel(1)["meta-skill"] == 2  # each rewrite is judged Yes where the answer was judged No


def test_the_teacher_is_a_named_sampler(run_loop: Callable[..., LoopResult], math_data: str) -> None:
    teacher = {"sampler": "teacher"}
    run = run_loop({**config(math_data, teacher_feedback={"name": "llm-judge", "options": teacher},
                             teacher_refine={"name": "critique-refine", "options": teacher}),
                    "samplers": {"teacher": {"name": SCRIPT_SAMPLER}}}, script=script)
    import sqlite3

    with sqlite3.connect(run.run_dir / "sample-cache.sqlite") as db:
        made = dict(db.execute("SELECT sampler, count(*) FROM samples GROUP BY sampler").fetchall())
    assert made.get("teacher", 0) >= 3 and run.funnel(1)["meta-skill"] == 1, made


def test_unbound_teacher_falls_back_to_accepted_self_refinements(
        run_loop: Callable[..., LoopResult], math_data: str) -> None:
    run = run_loop(config(math_data, teacher_feedback=None, teacher_refine=None), script=script)
    assert "meta-skill" not in run.funnel(1) and "teacher_feedback:meta" not in run.funnel(1)
    assert len(meta_examples(run)) == 2  # both self-refinements were judged Yes, right or wrong


def test_a_record_the_teacher_cannot_serve_is_a_failed_record_and_the_run_goes_on(
        run_loop: Callable[..., LoopResult], math_data: str, tmp_path: Path) -> None:
    template = tmp_path / "teacher-refine.txt"
    template.write_text("TEACHER FLAKY. Write an improved response between the markers [START] and [END].\n"
                        "{prompt}\n{response}\n{critique}")
    refine = {"name": "critique-refine", "options": {"template": str(template)}, "on_error": "skip"}
    run = run_loop(config(math_data, teacher_refine=refine), script=script)
    errors = [r for r in run.records("stage_error", 1) if isinstance(r, StageError)]
    assert len(errors) == 1 and "teacher unreachable" in errors[0].error
    (failed_input,) = errors[0].parent_ids("input")
    response = {r.id: r for r in run.records("response", 1)}[failed_input]
    assert "60 - 50" in response.prompt  # type: ignore[attr-defined]
    assert run.funnel(1)["meta-skill"] == 1 and run.state["status"] == "finished", run.state


def test_a_teacher_failure_stops_the_run_under_the_default_policy(
        run_loop: Callable[..., LoopResult], math_data: str, tmp_path: Path) -> None:
    from engine.errors import StageFailed

    template = tmp_path / "teacher-refine.txt"
    template.write_text("TEACHER FLAKY improved response between the markers\n"
                        "{prompt}\n{response}\n{critique}")
    refine = {"name": "critique-refine", "options": {"template": str(template)}}
    with pytest.raises(StageFailed, match="teacher_refine"):
        run_loop(config(math_data, teacher_refine=refine), script=script)
