"""pytest fixtures for plugin authors, shipped with the engine (entry point ``pytest11``).

What it is: ``plugin_manager`` (a fresh manager with the built-ins only), ``scripted_sampler``
(a factory of samplers returning canned completions), ``stage_context`` (a StageContext wired to
a scripted sampler), ``lineage_store`` (an in-memory SQLite lineage store), ``bubblewrap_sandbox``
(a real bubblewrap sandbox for the test module, skipped where bubblewrap cannot run), ``make_stage``
(build any registered stage by kind and name with validated options) and ``run_loop`` (run a
whole loop config in process and read back its lineage: a :class:`LoopResult`).

``run_loop(config, plugins=[module], script=...)`` takes a config as a dict (the YAML's keys),
registers ``plugins`` beside the built-ins (entry points are not loaded), runs every iteration
in this process (``runtime.ray`` false) into a fresh directory under pytest's ``tmp_path``
(``output_dir`` is replaced) and returns a :class:`LoopResult`. Unless the config names a sampler,
the run samples from the scripted one: ``script=None`` (its default text), a list of texts
(handed out in turn) or a function ``fn(request, i) -> str`` (the i-th completion of a
``SampleRequest``; ``request.messages[-1][1]`` is the last message's text). A config that does not
resolve raises ``engine.errors.ConfigError``; an exception in the loop propagates. What it is not:
a test suite; these fixtures only help a plugin's own tests.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from engine.contracts import Stage, StageContext, StageKind
    from engine.lineage.store import LineageStore
    from engine.manager import PluginManager
    from engine.records import Record
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
def make_stage(plugin_manager: PluginManager, stage_context: StageContext) -> Callable[..., Stage[Any]]:
    """Factory: ``make_stage("critic", "llm-judge", votes=3)``; ``plugins=[module]`` registers
    your plugin (beside the built-ins) first, ``context=`` replaces the scripted context."""
    from engine.manager import create_plugin_manager

    def make(kind: StageKind, name: str, context: StageContext | None = None,
             plugins: list[Any] | None = None, **options: Any) -> Stage[Any]:
        from dataclasses import replace

        from engine.contracts import build_stage

        pm = create_plugin_manager(entry_points=False, plugins=plugins) if plugins else plugin_manager
        info = pm.stage(kind, name)
        ctx = replace(context or stage_context, plugins=pm)
        return build_stage(info.cls, options, ctx)

    return make


@pytest.fixture
def lineage_store() -> Iterator[LineageStore]:
    """An in-memory SQLite lineage store, migrated, closed after the test."""
    from engine.lineage.store import LineageStore

    store = LineageStore.open("sqlite://")
    yield store
    store.close()


@dataclass(frozen=True)
class LoopResult:
    """A finished run, read back from its lineage store (read-only; each call opens the store).

    ``run_dir`` holds ``run.json``, ``config.yaml`` and ``lineage.sqlite``; ``state`` is ``run.json``
    (``status``, ``iterations_done``, ``model_version``, ``adapters``...)."""

    run_dir: Path
    run_id: str
    state: dict[str, Any]
    kinds: dict[str, type[Record]] = field(default_factory=dict, repr=False)

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        from engine.lineage.connect import make_engine

        engine = make_engine(self.state["store_url"], read_only=True)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()

    def funnel(self, iteration: int) -> dict[str, int]:
        """Records out per role in ``iteration``: ``{"prompts": 4, "respond": 8, "judge:refined": 3,
        "train:policy": 1, ...}`` (a keyed call is ``role:key``; an ingest counts what it wrote)."""
        from engine.lineage import queries

        with self._connect() as conn:
            rows = queries.funnel(conn, self.run_id)
        return {r["role"]: r["n_out"] for r in rows if r["iteration"] == iteration}

    def records(self, kind: str, iteration: int | None = None) -> list[Record]:
        """The typed records of ``kind`` written in ``iteration`` (every iteration when None), each
        once, in write order."""
        from engine.lineage import queries
        from engine.lineage.rows import load_records

        its = [iteration] if iteration is not None else range(int(self.state.get("iterations_done", 0)) + 1)
        with self._connect() as conn:
            ids = [row["id"] for it in its for row in queries.records_of_kind(conn, self.run_id, it, kind)]
            return load_records(conn, ids, self.kinds or None)

    def ancestors(self, record: Record | str) -> list[dict[str, Any]]:
        """Where a record came from: rows (id, kind, depth, role, parent), engine.lineage.queries."""
        from engine.lineage import queries

        with self._connect() as conn:
            return queries.ancestors(conn, record if isinstance(record, str) else record.id)

    def metrics(self, iteration: int) -> dict[str, float]:
        """Evaluator results of ``iteration`` as ``{"evaluator/metric": value}``."""
        from engine.lineage import queries

        with self._connect() as conn:
            rows = queries.metrics(conn, self.run_id)
        return {f"{r['evaluator']}/{r['metric']}": r["value"] for r in rows if r["iteration"] == iteration}


@pytest.fixture(scope="module")
def bubblewrap_sandbox() -> Iterator[Any]:
    """The real bubblewrap sandbox (2 workers), shared by a test module; the test is skipped, with
    the reason, where bubblewrap cannot run."""
    import importlib  # by name: the sandbox package is not part of the engine's strict typing

    local = importlib.import_module("plugins.sandbox_local")
    why = importlib.import_module("sandbox.bubblewrap").probe()
    if why is not None:
        pytest.skip(f"bubblewrap unavailable here: {why}")
    box = local.BubblewrapSandbox(local.BubblewrapOptions(concurrency=2, disk_mb=16))
    yield box
    box.close()


@pytest.fixture
def run_loop(tmp_path: Path) -> Callable[..., LoopResult]:
    """Factory: ``run_loop({"loop": "best-of-n", "data": {...}}, plugins=[best_of_n], script=fn)``
    runs the config to the end in this process and returns a :class:`LoopResult` (see the module
    docstring for ``script``)."""
    counter = itertools.count(1)

    def run(config: dict[str, Any], plugins: Sequence[Any] = (),
            script: Sequence[str] | Callable[[Any, int], str] | None = None) -> LoopResult:
        from engine.config import parse_config, resolve_config
        from engine.manager import create_plugin_manager
        from engine.runtime.run import start_run

        data = copy.deepcopy(dict(config))
        extra = list(plugins)
        if "sampler" in data:
            if script is not None:
                raise ValueError("script= needs the scripted sampler, but the config names "
                                 f"{data['sampler']!r}")
        elif callable(script):
            extra.append(_script_plugin(script))
            data["sampler"] = {"name": SCRIPT_SAMPLER}
        elif script is not None:
            data["sampler"] = {"name": "scripted", "options": {"responses": list(script)}}
        else:
            data["sampler"] = {"name": "scripted"}
        data["runtime"] = {**(data.get("runtime") or {}), "ray": False}
        data["output_dir"] = str(tmp_path / "run_loop" / str(next(counter)))
        pm = create_plugin_manager(entry_points=False, plugins=extra)
        source = "run_loop config"
        resolved = resolve_config(parse_config(data, source=source), pm, source=source)
        run_dir = start_run(resolved, pm)
        state = json.loads((run_dir / "run.json").read_text())
        return LoopResult(run_dir, str(state["run_id"]), state, pm.record_kinds())

    return run


SCRIPT_SAMPLER = "run-loop-script"
"""The sampler ``run_loop`` registers for a ``script`` function."""


def _script_plugin(script: Callable[[Any, int], str]) -> Any:
    """A plugin registering the sampler ``run-loop-script``: the scripted sampler with ``script``."""
    from engine import hookimpl
    from plugins.sampler_scripted import ScriptedOptions, ScriptedSampler

    class ScriptSampler(ScriptedSampler):
        name = SCRIPT_SAMPLER

        def __init__(self, options: ScriptedOptions | None = None, context: object = None) -> None:
            super().__init__(options, context, script=script)

    class ScriptPlugin:
        @hookimpl
        def register_samplers(self) -> list[type]:
            return [ScriptSampler]

    return ScriptPlugin()
