"""Every registered generator, critic, refiner and filter honours its contract.

Batch-first, one verb, outputs in input order, every new record linked to its parents, the
outputs of the kinds the stage declares (``produces``), and the same input gives the same record
ids (so resumed stages do not duplicate records). Every loop's roles have fitting defaults, and no
plugin or loop module imports another plugin module.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from engine.contracts import ANY, Stage, StageContext, build_stage, kinds_fit, role_mismatch
from engine.manager import create_plugin_manager
from engine.records import Critique, Link, Record, Refinement, Response, Task
from plugins.sampler_scripted import ScriptedOptions, ScriptedSampler

PM = create_plugin_manager(entry_points=False)


def stages_of(kind: str) -> list[str]:
    return sorted(PM.stages(kind))  # type: ignore[arg-type]


SCRIPT = ["Fine. Final judgement: Yes", "Wrong. Final judgement: No", "[START]better[END]"]


def build(kind: str, name: str) -> Any:
    info = PM.stage(kind, name)  # type: ignore[arg-type]
    sampler = ScriptedSampler(ScriptedOptions(responses=SCRIPT))
    return build_stage(info.cls, None, StageContext(seed=1, sampler=sampler, plugins=PM))


def assert_declared(stage: Stage[Any], records: list[Any]) -> None:
    """Every output is of a kind the stage declares it produces."""
    if ANY not in stage.produces:
        kinds = {r.kind for r in records}
        assert kinds_fit(sorted(kinds), stage.produces, PM.record_kinds()), (
            f"{stage.name} produced {sorted(kinds)} but declares {stage.produces}")


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
    inputs = {"respond": tasks, "self-instruct": tasks, "extend": responses}.get(name, list)()
    stage = build("generator", name)
    out = stage.generate(inputs)
    assert_declared(stage, out)
    again = build("generator", name).generate(inputs)
    assert [r.id for r in out] == [r.id for r in again]
    assert_linked(out, {t.id for t in inputs} | {p.id for r in out for p in r.parents})
    assert build("generator", name).generate([]) == []


@pytest.mark.parametrize("name", stages_of("critic"))
def test_critic_contract(name: str) -> None:
    resp = responses()
    stage = build("critic", name)
    out = stage.critique(resp)
    assert_declared(stage, out)
    assert len(out) == len(resp)
    for r, c in zip(resp, out, strict=True):
        assert isinstance(c, Critique) and r.id in c.parent_ids()
        assert c.verdict in (True, False, None) and 0.0 <= c.vote_share <= 1.0
    assert build("critic", name).critique([]) == []


@pytest.mark.parametrize("name", stages_of("refiner"))
def test_refiner_contract(name: str) -> None:
    resp = responses()
    crits = [Critique(verdict=False, text="bad", parents=[Link(id=r.id, role="judges")]) for r in resp]
    stage = build("refiner", name)
    out = stage.refine(resp, crits)
    assert_declared(stage, out)
    assert len(out) == len(resp), "one refinement per (response, critique) pair with default options"
    known = {r.id for r in resp}
    for ref in stage.context.emitted:  # side outputs (a search tree): each node after its parent
        if isinstance(ref, Refinement):
            assert ref.parent_ids("refines")[0] in known
            known.add(ref.id)
    for r, ref in zip(resp, out, strict=True):  # in input order: each descends from its own pair
        assert isinstance(ref, Refinement)
        up = ref
        while up.parent_ids("refines")[0] != r.id:
            up = next(n for n in stage.context.emitted if n.id == up.parent_ids("refines")[0])


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
def test_loop_declares_typed_roles_with_fitting_defaults(name: str) -> None:
    cls = PM.stage("loop", name).cls
    for role, spec in cls.roles.items():
        assert spec.takes and spec.gives, f"role {role!r} declares the kinds it hands in and gets back"
        if spec.default is None:
            assert spec.optional, f"required role {role!r} has no default stage"
            continue
        stage_name = spec.default if isinstance(spec.default, str) else spec.default["name"]
        assert stage_name in PM.stages(spec.kind), f"default {stage_name!r} of {role!r} is not a {spec.kind}"
        assert role_mismatch(spec, PM.stage(spec.kind, stage_name).cls, PM.record_kinds()) is None
    for role, kinds in cls.trains.items():
        assert kinds and all(isinstance(k, str) for k in kinds), role


ROOT = Path(__file__).resolve().parents[2]


PLUGIN_MODULES = sorted((ROOT / "plugins").glob("*.py")) + sorted((ROOT / "loops").glob("*.py"))


@pytest.mark.parametrize("path", PLUGIN_MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_plugin_or_loop_imports_another_plugin_module(path: Path) -> None:
    if path.name == "__init__.py":
        return
    assert not path.name.startswith("_"), "no underscore helper modules under plugins/ or loops/"
    imported = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.append(node.module)
        elif isinstance(node, ast.Import):
            imported += [a.name for a in node.names]
    bad = [m for m in imported if m.split(".")[0] in ("plugins", "loops")]
    assert not bad, f"{path.name} imports {bad}: share code through engine.toolkit instead"
