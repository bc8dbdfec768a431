"""The ``constraint-check`` critic (lm-eval's checkers on the checks a task carries) and the
``rule-and-judge`` critic (the rule's No is final, the LLM judge decides the rest), the checks
handed on from task to response to refinement, and the tree search judged by both."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from engine.contracts import StageContext, build_stage
from engine.manager import create_plugin_manager
from engine.records import Critique, Link, PreferencePair, Refinement, Response, Task, TrainingExample
from engine.sampling.protocol import SampleRequest
from engine.toolkit.ifeval import run_checks
from plugins.critic_constraints import ConstraintCheck, RuleAndJudge
from plugins.generator_evolve import TAXONOMY, EvolveConstraints, EvolveOptions
from plugins.generator_respond import Respond, RespondOptions
from plugins.refiner_critique import CritiqueRefiner
from plugins.refiner_tree import TreeOptions, TreeSearchRefiner
from plugins.sampler_scripted import ScriptedSampler

PM = create_plugin_manager(entry_points=False)
MANY = " ".join(["word"] * 60) + "."

# kind -> (the drawn value, a text that passes its check, one that fails it)
CASES: dict[str, tuple[Any, str, str]] = {
    "quotation": (None, '"Hello there."', "Hello there."),
    "bullets": (2, "* one\n* two", "* one"),
    "title": (None, "<<A Walk>>\nThe streets were quiet.", "A Walk\nThe streets were quiet."),
    "sections": (2, "SECTION 1\nFirst part.\nSECTION 2\nSecond part.", "SECTION 1\nOnly one part."),
    "highlights": (1, "A *key* idea.", "A key idea."),
    "keywords": (("example", "simple"), "A simple example.", "A plain case."),
    "forbidden": (("very", "really"), "It is fine.", "It is very fine."),
    "frequency": (("idea", 2), "One idea, then another idea.", "One idea only."),
    "postscript": ("P.S.", "The answer.\nP.S. One more thing.", "The answer."),
    "placeholders": (1, "Dear [name], hello.", "Dear friend, hello."),
    "max_words": (30, "A short answer.", MANY),
    "min_words": (50, MANY, "A short answer."),
    "max_sentences": (2, "One sentence only.", "One. Two. Three. Four."),
    "paragraphs": (2, "First paragraph.\n***\nSecond paragraph.", "Only one paragraph."),
    "language": (("fr", "French"), "Bonjour, je suis très content de vous voir aujourd'hui, mes amis.",
                 "Hello, I am very happy to see you today, my friends."),
    "lowercase": (None, "all lowercase here.", "Not lowercase here."),
    "capitals": (None, "ALL CAPITALS HERE.", "Not capitals here."),
    "no_comma": (None, "No commas here.", "Yes, a comma."),
    "capital_words": (2, "This is VERY IMPORTANT news.", "This is important news."),
    "end_phrase": ("That is all.", "Done. That is all.", "That is all. And more."),
}


def check_of(name: str) -> dict[str, Any]:
    kind = next(k for k in TAXONOMY if k.name == name)
    value = CASES[name][0]
    return {"id": kind.checker, "kwargs": kind.kwargs(value), "text": kind.text.format(v=value)}


def answer(text: str, *names: str, prompt: str = "Describe a walk.") -> Response:
    return Response(text=text, prompt=prompt, parents=[Link(id=Task(prompt=prompt).id)],
                    meta={"checks": [check_of(n) for n in names]})


def test_the_cases_cover_every_kind_of_the_taxonomy() -> None:
    assert set(CASES) == {k.name for k in TAXONOMY}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_kind_passes_and_fails_on_known_texts(name: str) -> None:
    _, good, bad = CASES[name]
    assert run_checks([check_of(name)], good) == [True], f"{name}: {good!r} should pass"
    assert run_checks([check_of(name)], bad) == [False], f"{name}: {bad!r} should fail"


def test_the_letter_frequency_checker_is_seeded() -> None:
    check = {"id": "keywords:letter_frequency", "kwargs": {"letter": "#", "let_frequency": 2,
                                                           "let_relation": "at least"}}
    first = [run_checks([check], "banana " * k, seed=3) for k in range(1, 6)]
    assert first == [run_checks([check], "banana " * k, seed=3) for k in range(1, 6)]


def test_constraint_check_verdict_share_and_failing_sentences() -> None:
    stage = ConstraintCheck()
    both = answer("all lowercase here, with a comma.", "lowercase", "no_comma")
    good = answer("all lowercase here.", "lowercase", "no_comma")
    bare = Response(text="Anything.", prompt="Say anything.")
    out = stage.critique([both, good, bare])
    assert [c.verdict for c in out] == [False, True, None]
    assert out[0].vote_share == 0.5 and (out[0].votes_yes, out[0].votes_no) == (1, 1)
    assert out[0].text == "fails: Do not use any commas in your answer."
    assert out[1].vote_share == 1.0 and "passes all 2" in out[1].text
    assert out[2].vote_share == 0.0 and out[2].votes_yes == out[2].votes_no == 0
    assert all(c.parent_ids("judges") == [r.id] for c, r in zip(out, [both, good, bare], strict=True))
    assert stage.critique([]) == []


def counting(verdict: str) -> ScriptedSampler:
    return ScriptedSampler(script=lambda req, i: f"Fine. Final judgement: {verdict}")


def combined(sampler: ScriptedSampler, **options: Any) -> RuleAndJudge:
    ctx = StageContext(seed=0, sampler=sampler, plugins=PM)
    return build_stage(RuleAndJudge, {"judge": {"name": "llm-judge", "options": {"votes": 3}}, **options},
                       ctx)  # type: ignore[return-value]


def test_rule_and_judge_says_no_without_the_llm_where_a_rule_fails() -> None:
    sampler = counting("Yes")
    stage = combined(sampler)
    (crit,) = stage.critique([answer("Not lowercase, and a comma.", "lowercase", "no_comma")])
    assert sampler.calls == 0, "the LLM judge is not asked"
    assert crit.verdict is False and crit.vote_share == 0.0 and crit.samples == []
    assert crit.meta["decided_by"] == "rule" and crit.meta["rule"]["vote_share"] == 0.0
    assert "fails: Answer in English using only lowercase letters" in crit.text
    assert "Decided by the rule" in crit.text


def test_rule_and_judge_defers_to_the_llm_where_the_rule_passes_or_has_nothing_to_check() -> None:
    sampler = counting("No")
    stage = combined(sampler)
    failing = answer("Not lowercase.", "lowercase")
    passing = answer("all lowercase here.", "lowercase")
    unchecked = Response(text="Anything.", prompt="Say anything.")
    out = stage.critique([failing, passing, unchecked])
    assert sampler.calls == 1, "one judge call, for the two the rule does not settle"
    assert [c.verdict for c in out] == [False, False, False]
    assert [c.meta["decided_by"] for c in out] == ["rule", "judge", "judge"]
    assert out[1].samples and out[1].sample_verdicts == [False] * 3 and out[1].votes_no == 3
    assert "decided by the judge" in out[1].text and out[1].meta["rule"]["verdict"] is True
    assert out[2].text == "Fine. Final judgement: No", "no checks: the judge's text as it is"
    yes = combined(counting("Yes")).critique([passing, unchecked])
    assert [c.verdict for c in yes] == [True, True] and [c.vote_share for c in yes] == [1.0, 1.0]
    assert len(stage.messages([passing])) == 1, "the judge's chats"


def test_checks_travel_from_the_task_to_its_answers_and_their_refinements() -> None:
    (task,) = EvolveConstraints(EvolveOptions(), StageContext(seed=0)).generate(
        [Task(prompt="Describe a walk through the city.")])
    assert isinstance(task, Task) and [c["text"] for c in task.meta["checks"]] == task.constraints
    sampler = ScriptedSampler(script=lambda req, i: "[START]a rewrite[END]")
    (resp,) = Respond(RespondOptions(n=1), StageContext(sampler=sampler)).generate([task])
    assert isinstance(resp, Response) and resp.meta["checks"] == task.meta["checks"]
    crit = Critique(verdict=False, text="fails: something", parents=[Link(id=resp.id, role="judges")])
    (ref,) = CritiqueRefiner(context=StageContext(sampler=sampler)).refine([resp], [crit])
    assert ref.meta == {"checks": task.meta["checks"], "critique": "fails: something"}


def test_tree_search_finals_pass_every_checkable_constraint() -> None:
    """The LLM judge says Yes to everything; the rule keeps the capitalized rewrites out."""
    def script(req: SampleRequest, i: int) -> str:
        content = req.messages[-1][1] if req.messages else ""
        if "strict judge" in content:
            return "Final judgement: Yes"
        return ["[START]Still Not Lowercase.[END]", "[START]now all lowercase.[END]"][i % 2]

    sampler = ScriptedSampler(script=script)
    root = answer("Not Lowercase.", "lowercase")
    crit = Critique(verdict=False, text="fails: lowercase", parents=[Link(id=root.id, role="judges")])
    stage = TreeSearchRefiner(TreeOptions(branch=2, depth=1),
                              StageContext(seed=0, sampler=sampler, plugins=PM))
    (final,) = stage.refine([root], [crit])
    assert final.text == "now all lowercase." and final.value == 1.0
    nodes = {n.text: n for n in stage.context.emitted if isinstance(n, Refinement)}
    crits = {c.parent_ids("judges")[0]: c for c in stage.context.emitted if isinstance(c, Critique)}
    bad = nodes["Still Not Lowercase."]
    assert crits[bad.id].verdict is False and crits[bad.id].meta["decided_by"] == "rule" and bad.value == 0.0
    judge_only = TreeSearchRefiner(TreeOptions(branch=2, depth=1, rule=None),
                                   StageContext(seed=0, sampler=ScriptedSampler(script=script), plugins=PM))
    (first,) = judge_only.refine([root], [crit])
    assert first.text == "Still Not Lowercase.", "without the rule the judge passes the first rewrite"


def test_spar_with_its_default_judge_pairs_only_answers_that_pass_their_checks(
        run_loop: Callable[..., Any]) -> None:
    """Length constraints only. The LLM judge says Yes to everything, so only the rule fails the
    actor's short answers (where the task asks for many words or paragraphs); the refiner's first
    rewrite breaks the constraint (the judge alone would choose it: ties go to the first child), its
    second follows it, and the rule makes the second the chosen one."""
    def script(req: SampleRequest, i: int) -> str:
        content = req.messages[-1][1] if req.messages else ""
        if "strict judge" in content:
            return "Fine. Final judgement: Yes"
        if "improved response" in content:
            words = re.search(r"at least (\d+) words", content)
            parts = re.search(r"exactly (\d+) paragraphs", content)
            good = (" ".join(["word"] * (int(words[1]) + 5)) + "." if words else
                    "\n***\n".join(["a short paragraph."] * int(parts[1])) if parts else "ok")
            return f"[START]{['Still Wrong, Here.', good][i % 2]}[END]"
        return f"the actor's answer #{i}"

    result = run_loop({"loop": "spar", "iterations": 1, "data": {"limit": 8},
                       "stages": {"evolve": {"options": {"categories": ["length"], "max_constraints": 1}},
                                  "respond": {"options": {"n": 2}},
                                  "refine": {"options": {"branch": 2, "depth": 1}}}}, script=script)
    funnel = result.funnel(1)
    judged = [c for c in result.records("critique", 1) if isinstance(c, Critique) and "decided_by" in c.meta]
    assert funnel["failing"] > 0 and {c.meta["decided_by"] for c in judged} == {"rule", "judge"}
    assert all(c.verdict is False for c in judged if c.meta["decided_by"] == "rule")
    tasks = {t.id: t for t in result.records("task", 1) if isinstance(t, Task)}
    responses = {r.id: r for r in result.records("response", 1) if isinstance(r, Response)}
    pairs = [p for p in result.records("preference_pair", 1) if isinstance(p, PreferencePair)]
    assert pairs and funnel["pairs"] == len(pairs)
    assert all(p.chosen != "Still Wrong, Here." for p in pairs)
    for pair in pairs:
        root = responses[pair.parent_ids("rejected")[0]]
        checks = tasks[root.parent_ids("input")[0]].meta["checks"]
        assert all(run_checks(checks, pair.chosen, root.prompt)), (pair.chosen, checks)
    rft = [e for e in result.records("training_example", 1) if isinstance(e, TrainingExample)]
    said = [m["content"] for e in rft for m in e.messages if m["role"] == "assistant"]
    assert said and not any("fails:" in text for text in said), "the judge is not trained on the rule's lines"
