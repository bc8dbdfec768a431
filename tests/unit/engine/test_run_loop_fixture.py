"""The ``run_loop`` fixture (engine/testing.py) on the built-in ``self`` loop: it runs a config dict in
process with a scripted sampler and reads the funnel, typed records, ancestors and run state back.

The script: the model's sample 0 is "good", sample 1 "bad"; the judge says Yes to "good" and to a
rewrite, No otherwise; a rewrite of T is "T fixed". So half of the answers fail, are refined, and pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConfigError
from engine.records import Refinement, TrainingExample
from engine.sampling.protocol import SampleRequest


def script(request: SampleRequest, i: int) -> str:
    text = request.messages[-1][1] if request.messages else ""
    if "strict judge" in text:
        answer = text.split("Response:\n", 1)[1]
        return "Final judgement: " + ("Yes" if "good" in answer or "fixed" in answer else "No")
    if "improved response" in text:
        answer = text.split("Response:\n", 1)[1].split("\n\nCritique:", 1)[0].strip()
        return f"Reflection. [START]{answer} fixed[END]"
    return ["good answer", "bad answer"][i]


@pytest.fixture
def prompts(tmp_path: Path) -> str:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question {k}?"}) + "\n" for k in range(3)))
    return str(path)


def test_run_loop_self_with_a_script_function(run_loop: Callable[..., Any], prompts: str) -> None:
    result = run_loop({"loop": "self", "iterations": 2, "data": {"source": prompts},
                       "stages": {"respond": {"options": {"n": 2}}, "judge": {"options": {"votes": 1}},
                                  "teacher_feedback": {"options": {"votes": 1}},
                                  "teacher_refine": {"options": {"max_tokens": 384}}}},
                      script=script)
    assert result.state["status"] == "finished" and result.state["iterations_done"] == 2
    assert (result.run_dir / "lineage.sqlite").is_file()
    assert result.funnel(1) == {"prompts": 3, "respond": 6, "judge": 6, "failing": 3, "refine": 3,
                                "screen": 3, "judge:refined": 3, "passing": 3, "passing:originals": 3,
                                "examples": 6, "teacher_feedback:meta": 6, "teacher_refine:meta": 3,
                                "screen:meta": 3, "teacher_feedback:meta-refined": 3, "meta-skill": 3}
    assert result.funnel(2) == result.funnel(1)
    refined = result.records("refinement", 1)  # the teacher (the model, same options) makes the same ones
    assert len(refined) == 3 and all(isinstance(r, Refinement) for r in refined)
    assert {r.text for r in refined} == {"bad answer fixed"}
    examples = result.records("training_example", 1)
    assert len(examples) == 9 and all(isinstance(e, TrainingExample) for e in examples)
    assert len(result.records("training_example")) == 18  # every iteration
    meta = next(e for e in examples if e.target_role == "meta-skill")
    kinds = {row["kind"] for row in result.ancestors(meta)}
    assert {"task", "response", "critique", "refinement"} <= kinds
    assert result.metrics(1) == {}  # no evaluators


def test_run_loop_texts_and_errors(run_loop: Callable[..., Any], prompts: str) -> None:
    texts = ["An answer.", "Final judgement: Yes"]
    result = run_loop({"loop": "self", "data": {"source": prompts, "limit": 1},
                       "stages": {"respond": {"options": {"n": 1}}}}, script=texts)
    assert result.funnel(1)["prompts"] == 1 and result.funnel(1)["respond"] == 1
    assert result.records("response", 1)[0].text == "An answer."
    second = run_loop({"loop": "self", "data": {"source": prompts, "limit": 1}}, script=texts)
    assert second.run_dir != result.run_dir  # each call has its own output directory
    with pytest.raises(ConfigError, match="stages.judge.options.votes"):
        run_loop({"loop": "self", "stages": {"judge": {"options": {"votes": 0}}}})
    with pytest.raises(ValueError, match="scripted sampler"):
        run_loop({"loop": "self", "sampler": "transformers"}, script=texts)
