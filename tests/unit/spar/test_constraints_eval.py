"""The ``constraints`` evaluator on a scripted model: held-out instructions with evolved constraints,
scored by their checks (an answer that follows them scores 1, one that breaks them 0), a fixed
draw per seed, the +refine score, and held-out instructions disjoint from SPaR's seeds and IFEval."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from engine.contracts import StageContext, build_stage
from engine.data import CONFIGS, read_jsonl
from engine.manager import create_plugin_manager
from engine.records import EvalResult
from engine.sampling.protocol import SampleRequest
from engine.toolkit.constraints import TAXONOMY
from engine.toolkit.ifeval import run_checks
from plugins.evaluator_constraints import DATA, Constraints, ConstraintsOptions, Item, load_items

PM = create_plugin_manager(entry_points=False)
JUDGE = "You are a strict judge"
REFINE = "Here is an instruction, a response to it, and a critique"
LANGUAGE = {
    "fr": "Bonjour, je suis très content de vous voir aujourd'hui, mes amis.",
    "es": "Hola, estoy muy contento de veros hoy, mis queridos amigos de la escuela.",
    "de": "Hallo, ich freue mich sehr, euch heute zu sehen, meine lieben Freunde.",
    "it": "Ciao, sono molto contento di vedervi oggi, miei cari amici della scuola.",
    "pt": "Olá, estou muito feliz por ver vocês hoje, meus queridos amigos da escola.",
}


def words(n: int, fewer: bool) -> tuple[str, str]:
    short, long = "A short answer.", " ".join(["word"] * (n + 5)) + "."
    return (short, long) if fewer else (long, short)


Pair = Callable[[dict[str, Any]], tuple[str, str]]
# checker id -> (its kwargs -> (a text that passes the check, one that fails it))
ANSWERS: dict[str, Pair] = {
    "startend:quotation": lambda k: ('"Hello there."', "Hello there."),
    "detectable_format:number_bullet_lists": lambda k: (
        "\n".join(f"* point {i}" for i in range(k["num_bullets"])), "* one point"),
    "detectable_format:title": lambda k: ("<<A Walk>>\nThe streets were quiet.", "A Walk\nThe streets."),
    "detectable_format:multiple_sections": lambda k: (
        "\n".join(f"SECTION {i + 1}\nPart {i + 1}." for i in range(k["num_sections"])), "SECTION 1\nOne."),
    "detectable_format:number_highlighted_sections": lambda k: (
        " ".join(f"A *key {i}* idea." for i in range(k["num_highlights"])), "A key idea."),
    "keywords:existence": lambda k: (" ".join(k["keywords"]) + ".", "A plain case."),
    "keywords:forbidden_words": lambda k: ("It is fine.", " ".join(k["forbidden_words"]) + "."),
    "keywords:frequency": lambda k: (" ".join([k["keyword"]] * k["frequency"]) + ".", "Nothing."),
    "detectable_content:postscript": lambda k: (f"The answer.\n{k['postscript_marker']} More.", "Done."),
    "detectable_content:number_placeholders": lambda k: (
        " ".join(f"[p{i}]" for i in range(k["num_placeholders"])), "Dear friend."),
    "length_constraints:number_words": lambda k: words(k["num_words"], k["relation"] == "less than"),
    "length_constraints:number_sentences": lambda k: ("One sentence only.", "One. Two. Three. Four. Five."),
    "length_constraints:number_paragraphs": lambda k: (
        "\n***\n".join(f"Paragraph {i}." for i in range(k["num_paragraphs"])), "Only one paragraph."),
    "language:response_language": lambda k: (LANGUAGE[k["language"]],
                                             "Hello, I am very happy to see you today, my friends."),
    "change_case:english_lowercase": lambda k: ("all lowercase here.", "Not lowercase here."),
    "change_case:english_capital": lambda k: ("ALL CAPITALS HERE.", "Not capitals here."),
    "punctuation:no_comma": lambda k: ("No commas here.", "Yes, a comma."),
    "change_case:capital_word_frequency": lambda k: ("This is VERY BIG NEWS.", "This is news."),
    "startend:end_checker": lambda k: (f"Done. {k['end_phrase']}", f"{k['end_phrase']} And more."),
}


def answer_for(item: Item, good: bool) -> str:
    """A text that passes (``good``) or fails the item's one check."""
    (check,) = item.checks
    return ANSWERS[check["id"]](check["kwargs"])[0 if good else 1]


def model(items: list[Item], good: Callable[[int], bool], seen: list[SampleRequest] | None = None) -> Any:
    """Answers item ``k`` so that it follows its constraint when ``good(k)``; as a judge says No to
    everything; as a refiner writes a following answer."""
    def script(req: SampleRequest, i: int) -> str:
        if seen is not None:
            seen.append(req)
        text = (req.messages or ())[0][1]
        k = max((j for j, it in enumerate(items) if it.prompt in text), key=lambda j: len(items[j].prompt))
        if text.startswith(JUDGE):
            return "Checked. Final judgement: No"
        if text.startswith(REFINE):
            return f"[START]{answer_for(items[k], True)}[END]"
        return answer_for(items[k], good(k))
    return script


def evaluate(options: dict[str, Any], script: Any) -> tuple[dict[str, EvalResult], Any]:
    from plugins.sampler_scripted import ScriptedSampler

    sampler = ScriptedSampler(script=script)
    ev = build_stage(PM.stage("evaluator", "constraints").cls, options,
                     StageContext(sampler=sampler, plugins=PM))
    return {r.metric: r for r in ev.evaluate(sampler, None)}, sampler  # type: ignore[attr-defined]


ONE = {"min_constraints": 1, "max_constraints": 1}


def test_the_answers_cover_every_checker_of_the_taxonomy() -> None:
    assert set(ANSWERS) == {k.checker for k in TAXONOMY}


def test_items_are_fixed_by_the_seed() -> None:
    items = load_items()
    assert len(items) == 60 == len(read_jsonl(DATA)) and len({it.prompt for it in items}) == 60
    assert items == load_items() and items != load_items(seed=1)
    assert {len(it.checks) for it in items} == {1, 2}
    assert {len(it.checks) for it in load_items(min_constraints=3, max_constraints=3)} == {3}
    for it in items:
        assert it.prompt.startswith(it.seed_prompt) and all(c["text"] in it.prompt for c in it.checks)
    picked = load_items(20, seed=2)
    assert len(picked) == 20 and picked == load_items(20, seed=2) and picked != load_items(20, seed=3)
    assert Constraints.preflight(ConstraintsOptions()) == []
    with pytest.raises(ValueError):
        ConstraintsOptions(min_constraints=3, max_constraints=2)


def test_answers_that_follow_the_constraints_score_one_and_others_zero() -> None:
    items = load_items(None, 0, **ONE)
    seen: list[SampleRequest] = []
    out, sampler = evaluate({"n": None, **ONE}, model(items, lambda k: k % 3 != 0, seen))
    expected = [int(k % 3 != 0) for k in range(len(items))]
    assert list(out) == ["prompt_strict", "inst_strict", "prompt_loose", "inst_loose"]
    for metric in ("prompt_strict", "prompt_loose"):
        assert out[metric].details["item_correct"] == expected, metric
        assert out[metric].value == pytest.approx(sum(expected) / 60) and out[metric].n == 60
        lo, hi = out[metric].details["ci95"]
        assert lo < out[metric].value < hi
    for metric in ("inst_strict", "inst_loose"):
        assert out[metric].details["item_scores"] == expected
        assert out[metric].details["item_weights"] == [1] * 60
    assert sampler.calls == 1 and sampler.requests_seen == 60
    assert all(r.params.max_tokens == 128 and r.params.temperature == 0.0 for r in seen)
    assert [(r.messages or ())[0][1] for r in seen] == [it.prompt for it in items]


def test_instruction_level_counts_each_check() -> None:
    items = load_items(30, 4, 2, 3)

    def first_only(req: SampleRequest, i: int) -> str:
        text = (req.messages or ())[0][1]
        item = next(it for it in items if it.prompt == text)
        return answer_for(Item(item.id, item.seed_prompt, item.prompt, item.checks[:1]), True)

    out, _ = evaluate({"n": 30, "seed": 4, "min_constraints": 2, "max_constraints": 3}, first_only)
    inst = out["inst_strict"]
    assert inst.details["item_weights"] == [len(it.checks) for it in items]
    assert inst.n == sum(len(it.checks) for it in items) == inst.details["constraints"]
    scores, weights = inst.details["item_scores"], inst.details["item_weights"]
    assert inst.value == pytest.approx(sum(s * w for s, w in zip(scores, weights, strict=True)) / inst.n)
    assert all(s >= 1 / w for s, w in zip(scores, weights, strict=True)), "the first check always passes"
    assert sum(c[1] for c in inst.details["by_check"].values()) == inst.n
    assert out["prompt_strict"].value <= inst.value


def test_refine_scores_the_refined_answers() -> None:
    items = load_items(12, 0, **ONE)
    out, sampler = evaluate({"n": 12, "refine": {}, **ONE}, model(items, lambda k: False))
    assert out["prompt_strict"].value == 0.0
    assert out["prompt_strict+refine"].value == 1.0
    assert out["prompt_strict+refine"].details["item_correct"] == [1] * 12
    assert sampler.calls == 3, "answers, critiques, refinements: one batch each"


def test_the_checks_agree_with_the_answers_table() -> None:
    for it in load_items(None, 0, **ONE):
        assert run_checks(list(it.checks), answer_for(it, True), it.prompt) == [True], it.prompt
        assert run_checks(list(it.checks), answer_for(it, False), it.prompt) == [False], it.prompt


def test_held_out_instructions_share_no_10_gram_with_spar_seeds_or_ifeval() -> None:
    from plugins.filter_decontaminate import benchmark_ngrams, ngrams

    seeds = str(CONFIGS / "data" / "spar-seeds.jsonl")
    grams, used = benchmark_ngrams(("ifeval", seeds), 10)
    assert used == ("ifeval", seeds) and grams
    held_out = [row["prompt"] for row in read_jsonl(DATA)]
    assert not {row["prompt"] for row in read_jsonl(CONFIGS / "data" / "spar-seeds.jsonl")} & set(held_out)
    assert all(not ngrams(text, 10) & grams for text in held_out)
    ifeval, _ = benchmark_ngrams(("ifeval",), 10)
    for seed in range(3):
        evolved = [it.prompt for it in load_items(None, seed, 1, 3)]
        assert all(not ngrams(text, 10) & ifeval for text in evolved), "evolved prompts too"
