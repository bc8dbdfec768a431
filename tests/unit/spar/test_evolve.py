"""The ``evolve-constraints`` generator: 1 to 3 constraints from the taxonomy, lineage, determinism,
verifiable checks, the llm mode, and the SPaR seed instructions."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest
from pydantic import ValidationError

from engine.contracts import StageContext
from engine.data import load_tasks
from engine.records import Link, Record, Response, Seed, Task, record_namespace
from engine.sampling.protocol import SampleRequest
from plugins.evaluator_ifeval import checkers, score
from plugins.generator_evolve import CATEGORIES, TAXONOMY, EvolveConstraints, EvolveOptions
from plugins.sampler_scripted import ScriptedSampler

SEEDS = [Task(prompt=f"Describe a walk through city number {i}") for i in range(60)]


def evolve(inputs: Sequence[Record], seed: int = 0, **options: object) -> list[Task]:
    stage = EvolveConstraints(EvolveOptions.model_validate(options), StageContext(seed=seed))
    out = [t for t in stage.generate(inputs) if isinstance(t, Task)]
    assert len(out) == len(stage.generate(inputs))
    return out


def test_one_to_three_constraints_from_the_taxonomy() -> None:
    out = evolve(SEEDS)
    assert len(out) == len(SEEDS)
    assert Counter(len(t.constraints) for t in out).keys() == {1, 2, 3}
    kinds = {k.name: k for k in TAXONOMY}
    assert {k.category for k in TAXONOMY} == set(CATEGORIES)
    for task in out:
        cats = task.meta["constraint_categories"]
        assert set(cats) <= set(CATEGORIES) and len(cats) == len(set(cats)) == len(task.constraints)
        slots = [s for name in task.meta["constraint_kinds"] for s in kinds[name].slots.split()]
        assert len(slots) == len(set(slots)), "no two constraints claim the same part of the answer"
        assert len(task.meta["checks"]) == len(task.constraints)
        seed_prompt = task.meta["seed_prompt"]
        assert task.prompt.startswith(seed_prompt) and all(c in task.prompt for c in task.constraints)
    assert Counter(c for t in out for c in t.meta["constraint_categories"]).keys() == set(CATEGORIES)


def test_each_task_links_to_its_seed() -> None:
    seeds = SEEDS[:3] + [Seed(text="Explain how tides work.")]
    out = evolve(seeds, variants=2)
    assert len(out) == 8
    for i, task in enumerate(out):
        seed = seeds[i // 2]
        assert task.parents == [Link(id=seed.id, role="input")]
        assert task.meta["seed_prompt"] == (seed.prompt if isinstance(seed, Task) else seed.text)
    assert evolve([]) == [] and evolve([Response(text="not a seed")]) == []


def test_deterministic_given_the_context_seed() -> None:
    first, again = evolve(SEEDS), evolve(SEEDS)
    assert [t.id for t in first] == [t.id for t in again]
    assert [t.prompt for t in first] == [t.prompt for t in again]
    other = evolve(SEEDS, seed=1)
    assert sum(a.prompt != b.prompt for a, b in zip(first, other, strict=True)) > len(SEEDS) // 2
    alone = evolve(SEEDS[5:6])
    assert alone[0].id == first[5].id, "a task's draw depends on its seed record, not on the batch"


def test_draws_do_not_depend_on_the_run_scoped_ids() -> None:
    runs = []
    for run in ("run-a/1", "run-b/1"):  # each run namespaces its records' ids
        with record_namespace(run):
            seeds = [Task(prompt=s.prompt) for s in SEEDS[:20]]
            runs.append(evolve(seeds))
    assert runs[0][0].id != runs[1][0].id
    assert [t.prompt for t in runs[0]] == [t.prompt for t in runs[1]], "same seed, same constraints"


def test_options_restrict_the_draw() -> None:
    only_length = evolve(SEEDS[:20], categories=["length"])
    assert all(t.meta["constraint_categories"] == ["length"] for t in only_length)
    three = evolve(SEEDS[:20], min_constraints=3, max_constraints=3)
    assert all(len(t.constraints) == 3 for t in three)
    with pytest.raises(ValidationError, match="min_constraints"):
        EvolveOptions(min_constraints=3, max_constraints=2)
    with pytest.raises(ValidationError, match="extra"):
        EvolveOptions.model_validate({"mode": "rule", "constraint": 2})
    with pytest.raises(ValidationError):
        EvolveOptions.model_validate({"categories": ["colour"]})


def test_every_constraint_is_checkable_by_ifeval() -> None:
    registry = checkers().instructions_registry.INSTRUCTION_DICT
    rng = random.Random(0)
    for kind in TAXONOMY:
        for _ in range(8):
            text, check_id, kwargs = kind.draw(rng)
            assert text.endswith((".", "?")) and "{" not in text
            registry[check_id](check_id).build_description(**kwargs)
    task = next(t for t in evolve(SEEDS, categories=["style"]) if t.meta["constraint_kinds"] == ["no_comma"])
    row = {"key": 0, "prompt": task.prompt, "instruction_id_list": [c["id"] for c in task.meta["checks"]],
           "kwargs": [c["kwargs"] for c in task.meta["checks"]]}
    assert score(row, "The streets were quiet and the river was calm.") == ([True], [True])
    assert score(row, "The streets were quiet, and the river was calm.") == ([False], [False])


def test_llm_mode_rewrites_or_falls_back() -> None:
    seen: list[SampleRequest] = []

    def script(request: SampleRequest, i: int) -> str:
        seen.append(request)
        prompt = request.messages[-1][1] if request.messages else ""
        if "city number 1\n" in prompt:
            return "ok"
        return "New instruction: Describe a city walk, following every listed requirement.\n\nNotes."

    stage = EvolveConstraints(EvolveOptions(mode="llm"), StageContext(seed=0, sampler=ScriptedSampler(
        script=script)))
    out = [t for t in stage.generate(SEEDS[:3]) if isinstance(t, Task)]
    rule = evolve(SEEDS[:3])
    assert len(seen) == 3 and all(r.params.temperature == 0.0 for r in seen)
    assert "- " + rule[0].constraints[0] in seen[0].message_dicts()[-1]["content"]
    assert out[0].prompt == "Describe a city walk, following every listed requirement."
    assert out[0].constraints == rule[0].constraints and str(out[0].model_version).startswith("scripted-")
    assert out[1].meta["fallback"] and out[1].prompt == rule[1].prompt and out[1].meta["raw"] == "ok"


def test_spar_seed_instructions() -> None:
    from plugins.filter_decontaminate import Decontaminate, DecontaminateOptions

    seeds = load_tasks("data/spar-seeds.jsonl")
    assert 30 <= len(seeds) <= 60 and len({t.prompt for t in seeds}) == len(seeds)
    clean = Decontaminate(DecontaminateOptions(benchmarks=["ifeval"]))
    assert len(clean.filter(seeds)) == len(seeds)
    evolved = evolve(seeds, variants=2)
    assert len(clean.filter(evolved)) == len(evolved), "constraint phrasings share no 10-gram with IFEval"
