"""Every registered generator, critic, refiner and filter honours its contract.

Batch-first, one verb, outputs in input order, every new record linked to its parents, and the
same input gives the same record ids (so resumed stages do not duplicate records).
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.contracts import Stage, StageContext
from engine.manager import create_plugin_manager
from engine.records import Critique, Link, Record, Refinement, Response, Task
from plugins.sampler_scripted import ScriptedOptions, ScriptedSampler

PM = create_plugin_manager(entry_points=False)


def stages_of(kind: str) -> list[str]:
    return sorted(PM.stages(kind))  # type: ignore[arg-type]


SCRIPT = ["Fine. Final judgement: Yes", "Wrong. Final judgement: No", "[START]better[END]"]


def build(kind: str, name: str) -> Stage:
    info = PM.stage(kind, name)  # type: ignore[arg-type]
    sampler = ScriptedSampler(ScriptedOptions(responses=SCRIPT))
    stage: Stage = info.cls(info.cls.Options(), StageContext(seed=1, sampler=sampler))
    return stage


def tasks() -> list[Task]:
    return [Task(prompt=f"Say {i}.") for i in range(3)]


def responses() -> list[Response]:
    return [Response(text=f"{i}", prompt=f"Say {i}.", parents=[Link(id=t.id)]) for i, t in enumerate(tasks())]


def assert_linked(records: list[Any], allowed_parents: set[str]) -> None:
    for rec in records:
        assert isinstance(rec, Record)
        assert rec.parents, f"{rec.kind} {rec.id} has no parents"
        assert {p.id for p in rec.parents} <= allowed_parents


@pytest.mark.parametrize("name", stages_of("generator"))
def test_generator_contract(name: str) -> None:
    inputs = tasks() if name == "respond" else []
    out = build("generator", name).generate(inputs)
    again = build("generator", name).generate(inputs)
    assert [r.id for r in out] == [r.id for r in again]
    assert_linked(out, {t.id for t in inputs} | {p.id for r in out for p in r.parents})
    assert build("generator", name).generate([]) == []


@pytest.mark.parametrize("name", stages_of("critic"))
def test_critic_contract(name: str) -> None:
    resp = responses()
    out = build("critic", name).critique(resp)
    assert len(out) == len(resp)
    for r, c in zip(resp, out, strict=True):
        assert isinstance(c, Critique) and r.id in c.parent_ids()
        assert c.verdict in (True, False, None) and 0.0 <= c.vote_share <= 1.0
    assert build("critic", name).critique([]) == []


@pytest.mark.parametrize("name", stages_of("refiner"))
def test_refiner_contract(name: str) -> None:
    resp = responses()
    crits = [Critique(verdict=False, text="bad", parents=[Link(id=r.id, role="judges")]) for r in resp]
    out = build("refiner", name).refine(resp, crits)
    assert len(out) >= len(resp)
    known = {r.id for r in resp}
    for ref in out:  # refines an input, or a refinement before it in the output (a search tree)
        assert isinstance(ref, Refinement)
        assert ref.parent_ids("refines")[0] in known
        known.add(ref.id)


@pytest.mark.parametrize("name", stages_of("filter"))
def test_filter_contract(name: str) -> None:
    recs: list[Record] = responses()
    recs += [Critique(verdict=v, parents=[Link(id=r.id, role="judges")]) for v, r in zip(
        (True, False, None), responses(), strict=True)]
    kept = build("filter", name).filter(recs)
    ids = [r.id for r in recs]
    assert all(k.id in ids for k in kept)
    assert [ids.index(k.id) for k in kept] == sorted(ids.index(k.id) for k in kept), "order kept"


@pytest.mark.parametrize("name", stages_of("loop"))
def test_loop_declares_roles(name: str) -> None:
    cls = PM.stage("loop", name).cls
    assert set(cls.defaults) == set(cls.roles), "every role has a default stage"
    for role, kind in cls.roles.items():
        default = cls.defaults[role]
        stage_name = default if isinstance(default, str) else default["name"]
        assert stage_name in PM.stages(kind), f"default {stage_name!r} of role {role!r} is not a {kind}"
