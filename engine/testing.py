"""pytest fixtures for plugin authors, shipped with the engine (entry point ``pytest11``).

What it is: ``plugin_manager`` (a fresh manager with the built-ins only), ``scripted_sampler``
(a factory of samplers returning canned completions), ``stage_context`` (a StageContext wired to
a scripted sampler), ``lineage_store`` (an in-memory SQLite lineage store) and ``make_stage``
(build any registered stage by kind and name with validated options). What it is not: a test
suite; these fixtures only help a plugin's own tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from engine.contracts import Stage, StageContext, StageKind
    from engine.lineage.store import LineageStore
    from engine.manager import PluginManager
    from engine.sampling.protocol import SampleRequest


@pytest.fixture
def plugin_manager() -> PluginManager:
    """A fresh plugin manager with the built-in plugins only (no entry points)."""
    from engine.manager import create_plugin_manager

    return create_plugin_manager(entry_points=False)


@pytest.fixture
def scripted_sampler() -> Callable[..., Any]:
    """Factory: ``scripted_sampler(["text", ...])`` or ``scripted_sampler(script=fn)``.

    ``fn(request, i)`` returns the i-th completion of a request. The sampler counts ``calls``.
    """
    from plugins.sampler_scripted import ScriptedOptions, ScriptedSampler

    def make(responses: list[str] | None = None,
             script: Callable[[SampleRequest, int], str] | None = None) -> ScriptedSampler:
        opts = ScriptedOptions(responses=responses) if responses else ScriptedOptions()
        return ScriptedSampler(opts, script=script)

    return make


@pytest.fixture
def stage_context(scripted_sampler: Callable[..., Any]) -> StageContext:
    """A StageContext whose sampler is a scripted one answering 'Final judgement: Yes'."""
    from engine.contracts import StageContext

    return StageContext(seed=0, sampler=scripted_sampler(["Final judgement: Yes"]))


@pytest.fixture
def make_stage(plugin_manager: PluginManager, stage_context: StageContext) -> Callable[..., Stage]:
    """Factory: ``make_stage("critic", "llm-judge", votes=3)``; ``plugins=[module]`` registers
    your plugin (beside the built-ins) first, ``context=`` replaces the scripted context."""
    from engine.manager import create_plugin_manager

    def make(kind: StageKind, name: str, context: StageContext | None = None,
             plugins: list[Any] | None = None, **options: Any) -> Stage:
        pm = create_plugin_manager(entry_points=False, plugins=plugins) if plugins else plugin_manager
        info = pm.stage(kind, name)
        stage: Stage = info.cls(info.cls.Options.model_validate(options), context or stage_context)
        return stage

    return make


@pytest.fixture
def lineage_store() -> Iterator[LineageStore]:
    """An in-memory SQLite lineage store, migrated, closed after the test."""
    from engine.lineage.store import LineageStore

    store = LineageStore.open("sqlite://")
    yield store
    store.close()
