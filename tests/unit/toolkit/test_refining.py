"""Refinement at inference (engine.toolkit.refining): the critic's verdict picks what is refined,
one critic and one refiner call per round, rounds on the latest answers, the adapter passed on."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from engine.contracts import StageContext
from engine.manager import create_plugin_manager
from engine.records import EvalResult
from engine.sampling.protocol import SampleRequest
from engine.toolkit.refining import RefineAtInference, refine_answers, refined_results
from plugins.sampler_scripted import ScriptedSampler

PM = create_plugin_manager(entry_points=False)
JUDGE = "You are a strict judge"
REFINE = "Here is an instruction, a response to it, and a critique"


def user(req: SampleRequest) -> str:
    return next(text for role, text in req.messages or () if role == "user")


def section(text: str, name: str) -> str:
    """The text under ``name:`` in a judge or refine prompt (up to the next blank-line section)."""
    return text.split(f"\n{name}:\n", 1)[1].split("\n\n", 1)[0].strip()


def script(fixes: dict[str, str]) -> Any:
    """A model that judges 'good...' Yes, 'bad...' No, anything else with no verdict, and rewrites
    a response by ``fixes`` (unknown: an empty rewrite)."""
    def answer(req: SampleRequest, i: int) -> str:
        text = user(req)
        if text.startswith(JUDGE):
            resp = section(text, "Response")
            verdict = "Yes" if resp.startswith("good") else "No" if resp.startswith("bad") else "?"
            return f"Looks {resp}. Final judgement: {verdict}" if verdict != "?" else "I cannot tell."
        if text.startswith(REFINE):
            return f"Better now. [START]{fixes.get(section(text, 'Response'), '')}[END]"
        raise AssertionError(f"unexpected request {text[:40]!r}")
    return answer


def run(answers: list[str], fixes: dict[str, str], **opts: Any) -> tuple[Any, ScriptedSampler, list[Any]]:
    seen: list[SampleRequest] = []
    inner = script(fixes)

    def recording(req: SampleRequest, i: int) -> str:
        seen.append(req)
        return inner(req, i)

    sampler = ScriptedSampler(script=recording)
    ctx = StageContext(seed=3, plugins=PM, adapters={"policy": "adapter-p7"})
    out = refine_answers(ctx, sampler, [f"Question {k}?" for k in range(len(answers))], answers,
                         RefineAtInference(**opts), "policy", max_tokens=77)
    return out, sampler, seen


def test_only_answers_not_judged_yes_are_refined_in_one_call_each() -> None:
    out, sampler, seen = run(["good one", "bad two", "unclear three"],
                             {"bad two": "good two", "unclear three": "good three", "good one": "worse"})
    assert out.answers == ["good one", "good two", "good three"], "Yes kept; No and no-verdict refined"
    assert out.rounds == [{"judged": 3, "yes": 1, "refined": 2, "changed": 2, "empty": 0}]
    assert sampler.calls == 2, "one critic call, one refiner call"
    refines = [r for r in seen if user(r).startswith(REFINE)]
    assert len(refines) == 2 and all("good one" not in user(r) for r in refines)
    assert all(r.adapter == "adapter-p7" for r in seen), "the model under test's adapter"
    judge = next(r for r in seen if user(r).startswith(JUDGE))
    assert (judge.params.max_tokens, judge.params.n, judge.params.temperature) == (96, 1, 0.0)
    assert refines[0].params.max_tokens == 77, "the refiner writes as long as the evaluator's answers"
    assert "Question 1?" in user(refines[0]), "the refiner sees the evaluator's prompt"


def test_every_answer_is_refined_without_only_failing() -> None:
    out, _, _ = run(["good one", "bad two"], {"good one": "good one, polished", "bad two": "good two"},
                    only_failing=False)
    assert out.answers == ["good one, polished", "good two"]
    assert out.rounds[0]["refined"] == 2 and out.rounds[0]["yes"] == 1


def test_two_rounds_refine_twice_on_the_latest_answers() -> None:
    fixes = {"bad a": "bad b", "bad b": "good c"}
    out, sampler, seen = run(["bad a", "good z"], fixes, rounds=2)
    assert out.answers == ["good c", "good z"]
    assert [(r["judged"], r["refined"], r["changed"]) for r in out.rounds] == [(2, 1, 1), (1, 1, 1)], \
        "round 2 judges only the answer that changed"
    assert sampler.calls == 4
    once, _, _ = run(["bad a", "good z"], fixes, rounds=1)
    assert once.answers == ["bad b", "good z"]


def test_an_empty_refinement_keeps_the_answer_and_ends_the_rounds() -> None:
    out, sampler, _ = run(["bad x"], {}, rounds=3)
    assert out.answers == ["bad x"]
    assert out.rounds == [{"judged": 1, "yes": 0, "refined": 1, "changed": 0, "empty": 1}]
    assert sampler.calls == 2, "nothing changed, so nothing is judged again"


def test_all_accepted_means_no_refiner_call() -> None:
    out, sampler, _ = run(["good a", "good b"], {"good a": "bad"})
    assert out.answers == ["good a", "good b"] and sampler.calls == 1
    assert out.rounds[0]["refined"] == 0


def test_critic_options_merge_over_the_defaults_and_unknown_keys_are_refused() -> None:
    _, _, seen = run(["bad a"], {"bad a": "good"}, critic={"name": "llm-judge", "options": {"votes": 3}})
    judge = next(r for r in seen if user(r).startswith(JUDGE))
    assert (judge.params.n, judge.params.max_tokens) == (3, 96)
    with pytest.raises(ValidationError):
        RefineAtInference(rounds=0)
    with pytest.raises(ValidationError):
        RefineAtInference(critc={"name": "llm-judge"})  # type: ignore[call-arg]
    with pytest.raises(ValidationError):  # the stage's own Options refuse a key it does not have
        run(["bad a"], {}, critic={"name": "llm-judge", "options": {"vote": 3}})


def test_refined_results_are_renamed_and_carry_the_counts() -> None:
    out, _, _ = run(["bad a"], {"bad a": "good a"})
    plain = EvalResult(evaluator="e", metric="accuracy", value=0.5, n=2, details={"k": 1})
    (refined,) = refined_results([plain], out)
    assert refined.metric == "accuracy+refine" and refined.value == 0.5 and refined.id != plain.id
    assert refined.details["k"] == 1 and refined.details["refine_rounds"] == out.rounds
    assert refined.details["refine"]["rounds"] == 1 and refined.details["refine_changed"] == 1
    assert plain.metric == "accuracy" and "refine" not in plain.details


def test_preflight_names_an_unknown_stage_or_a_bad_option() -> None:
    from engine.toolkit.refining import refine_problems
    from plugins.evaluator_gsm8k import GSM8K, GSM8KOptions

    assert refine_problems(None) == [] and refine_problems(RefineAtInference()) == []
    bad = RefineAtInference(critic={"name": "llm-judg"}, refiner={"name": "critique-refine",  # type: ignore[arg-type]
                                                                  "options": {"max_token": 5}})
    problems = refine_problems(bad)
    assert len(problems) == 2 and problems[0].startswith("refine.critic: ") and "llm-judg" in problems[0]
    assert problems[1].startswith("refine.refiner: ") and "max_token" in problems[1]
    assert GSM8K.preflight(GSM8KOptions(refine=bad)) == problems  # type: ignore[arg-type]


class Fixed:
    """A sampler with set replies: text and finish reason per prompt (None: no completion)."""

    name = "fixed"

    def __init__(self, replies: dict[str, tuple[str, str] | None], version: str = "m@1") -> None:
        self.replies, self.version, self.seen = replies, version, []  # type: list[SampleRequest]

    def sample(self, requests: list[SampleRequest]) -> list[Any]:
        from engine.sampling.protocol import Completion, SampleResult

        self.seen += requests
        out = []
        for r in requests:
            reply = self.replies[user(r)]
            comps = [] if reply is None else [Completion(text=reply[0], tokens=3, finish_reason=reply[1])]
            out.append(SampleResult(completions=comps, prompt_tokens=1, model_version=self.version))
        return out


def test_answer_prompts_one_call_versions_adapter_and_truncation() -> None:
    """One sampler call for all prompts with the role's adapter and the run's seed; answers in input
    order, "" where the sampler gave none; hits of max_tokens counted; the evaluated version wins
    over what the sampler reports, which is used when none is given."""
    from engine.toolkit.refining import answer_prompts

    sampler = Fixed({"a": ("A", "stop"), "b": ("B...", "length"), "c": None})
    progress: list[int] = []
    ctx = StageContext(seed=7, adapters={"policy": "/adapters/p1"}, progress=progress.append)
    got = answer_prompts(ctx, sampler, ["b", "a", "c"], max_tokens=5, temperature=0.3, adapter_role="policy")  # type: ignore[arg-type]
    assert got.texts == ["B...", "A", ""] and got.truncated == 1 and got.finish == ["length", "stop", None]
    assert got.version == "m@1" and got.adapter == "/adapters/p1" and progress == [3]
    assert [(r.adapter, r.params.seed, r.params.max_tokens, r.params.temperature) for r in sampler.seen] == \
        [("/adapters/p1", 7, 5, 0.3)] * 3
    base = answer_prompts(StageContext(), sampler, ["a"], max_tokens=5, model_version="base@0")  # type: ignore[arg-type]
    assert base.version == "base@0" and base.adapter is None and sampler.seen[-1].adapter is None
