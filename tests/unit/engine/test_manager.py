"""The plugin manager: built-ins as plugins, duplicates named, unknown hooks rejected, tracing."""

from __future__ import annotations

import types

import pytest

from engine import hookimpl
from engine.contracts import Stage
from engine.manager import PluginError, create_plugin_manager


def make_plugin(name: str, stage_name: str) -> types.SimpleNamespace:
    class Crit(Stage):
        kind = "critic"

        def critique(self, responses):  # type: ignore[no-untyped-def]
            return []

    Crit.name = stage_name

    @hookimpl
    def register_critics() -> list[type]:
        return [Crit]

    mod = types.ModuleType(name)
    mod.register_critics = register_critics  # type: ignore[attr-defined]
    return mod  # type: ignore[return-value]


def test_builtins_registered_through_hooks() -> None:
    pm = create_plugin_manager(entry_points=False)
    assert pm.stage("critic", "llm-judge").plugin == "plugins.critic_judge"
    assert pm.stage("loop", "self").plugin == "loops.self_evolve"
    assert pm.get_plugin("plugins.sampler_scripted") is not None


def test_each_manager_is_fresh() -> None:
    a = create_plugin_manager(entry_points=False, plugins=[make_plugin("extra", "my-critic")])
    b = create_plugin_manager(entry_points=False)
    assert "my-critic" in a.stages("critic") and "my-critic" not in b.stages("critic")


def test_duplicate_stage_names_both_plugins() -> None:
    pm = create_plugin_manager(entry_points=False, plugins=[make_plugin("first_pkg", "dup"),
                                                            make_plugin("second_pkg", "dup")])
    with pytest.raises(PluginError) as info:
        pm.stages("critic")
    assert "first_pkg" in str(info.value) and "second_pkg" in str(info.value)


def test_duplicate_of_builtin_is_rejected() -> None:
    pm = create_plugin_manager(entry_points=False, plugins=[make_plugin("thirdparty", "llm-judge")])
    with pytest.raises(PluginError, match="plugins.critic_judge.*thirdparty"):
        pm.stages("critic")


def test_unknown_hook_rejected() -> None:
    mod = types.ModuleType("typo_plugin")

    @hookimpl
    def register_critcs() -> list[type]:
        return []

    mod.register_critcs = register_critcs  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="typo_plugin"):
        create_plugin_manager(entry_points=False, plugins=[mod])


def test_bad_stage_class_named() -> None:
    class NoVerb(Stage):
        kind = "critic"
        name = "noverb"

    mod = types.ModuleType("bad_plugin")
    mod.register_critics = hookimpl(lambda: [NoVerb])  # type: ignore[attr-defined]
    pm = create_plugin_manager(entry_points=False, plugins=[mod])
    with pytest.raises(PluginError, match="bad_plugin.*critique"):
        pm.stages("critic")


def test_unknown_stage_suggests() -> None:
    pm = create_plugin_manager(entry_points=False)
    with pytest.raises(KeyError, match="did you mean 'llm-judge'"):
        pm.stage("critic", "llm_judge")


def test_tracing_env(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AUTODIDACT_TRACE", "1")
    pm = create_plugin_manager(entry_points=False)
    pm.hook.on_iteration_start(run_id="r", iteration=1)
    assert "on_iteration_start" in capsys.readouterr().err
