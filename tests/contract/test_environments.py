"""Every registered environment honours the episode contract (engine/episodes.py).

Each one is rolled out on its own ``examples()`` with a scripted policy: one trajectory per task,
in task order, linked to its task and to its last turn; every turn linked to the one before; no
episode failed on the environment's own examples; no more turns than ``max_turns``; one
observation per task from ``reset`` and per episode from ``step``; and the same inputs give the
same record ids (a resumed rollout writes nothing twice).
"""

from __future__ import annotations

from typing import Any

import pytest

from engine.contracts import StageContext, build_stage
from engine.episodes import Environment, Observation
from engine.manager import create_plugin_manager
from engine.records import Trajectory, Turn
from plugins.sampler_scripted import ScriptedOptions, ScriptedSampler

PM = create_plugin_manager(entry_points=False)
POLICY = ["```python\ndef add(a, b):\n    return a + b\n```\nThe answer is 42."]


def build(name: str) -> Any:
    info = PM.stage("environment", name)
    sampler = ScriptedSampler(ScriptedOptions(responses=POLICY))
    return build_stage(info.cls, None, StageContext(seed=1, sampler=sampler, plugins=PM))


def test_built_in_environments_are_registered() -> None:
    assert {"math", "python-exec", "self-correct"} <= set(PM.stages("environment"))


@pytest.mark.parametrize("name", sorted(PM.stages("environment")))
def test_environment_contract(name: str) -> None:
    env = build(name)
    assert isinstance(env, Environment), "environments subclass engine.episodes.Environment"
    tasks = type(env).examples()
    assert tasks, "an environment names example tasks"
    first = env.reset(tasks)
    assert len(first) == len(tasks) and all(isinstance(o, Observation) and o.text for o in first)
    out = env.rollout(tasks)
    assert len(out) == len(tasks) and all(isinstance(t, Trajectory) for t in out)
    turns = {t.id: t for t in env.context.emitted if isinstance(t, Turn)}
    for task, traj in zip(tasks, out, strict=True):
        assert traj.meta["status"] == "done", traj.meta
        assert task.id in traj.parent_ids("input")
        assert 1 <= traj.meta["turns"] <= env.options.max_turns
        (last,) = traj.parent_ids("episode")
        chain = [turns[last]]
        while chain[-1].parent_ids("previous"):
            chain.append(turns[chain[-1].parent_ids("previous")[0]])
        assert [t.index for t in reversed(chain)] == list(range(traj.meta["turns"]))
        assert chain[-1].parent_ids("input") == [task.id] and chain[0].done
    again = build(name).rollout(tasks)
    assert [t.id for t in again] == [t.id for t in out], "same inputs, same records"
