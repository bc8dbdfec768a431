"""The plugin manager: built-ins and entry-point plugins, and the registry of stages.

What it is: ``create_plugin_manager()``, which builds a fresh pluggy manager (no global state),
registers the built-in plugins through the same hooks as third-party ones, loads the
``autodidact`` entry points, and rejects hook implementations that match no spec; plus the stage
registry built from the registration hooks. What it is not: a place where stages run.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from engine import PROJECT, __version__, hookspecs
from engine.contracts import KINDS, StageKind, check_stage_class
from engine.errors import UserError
from engine.records import BUILTIN_KINDS, Record

TRACE_ENV = "AUTODIDACT_TRACE"
ENTRY_POINT_GROUP = "autodidact"
HOOK_OF_KIND: dict[StageKind, str] = {kind: f"register_{kind}s" for kind in KINDS}
HOOK_OF_KIND["sandbox"] = "register_sandboxes"


class PluginError(UserError):
    """A plugin could not be registered (bad stage class, duplicate stage name, bad hook)."""


@dataclass(frozen=True)
class StageInfo:
    """One registered stage: its kind, name, class, the plugin that gave it (entry-point or module
    name), that plugin's version and its distribution (the pip package: ``autodidact`` for the
    built-ins, ``local`` for plugins handed to the manager directly)."""

    kind: StageKind
    name: str
    cls: type[Any]
    plugin: str
    version: str
    distribution: str = "unknown"


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus the stage registry built from the registration hooks."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(hookspecs)
        self._stages: dict[StageKind, dict[str, StageInfo]] | None = None
        self._versions: dict[str, str] = {}
        self._dists: dict[str, str] = {}

    # -- stages -----------------------------------------------------------------------------
    def stages(self, kind: StageKind) -> dict[str, StageInfo]:
        """Registered stages of one kind by name."""
        return self._registry()[kind]

    def all_stages(self) -> list[StageInfo]:
        return [info for kind in KINDS for info in self._registry()[kind].values()]

    def stage(self, kind: StageKind, name: str) -> StageInfo:
        """The stage ``name`` of ``kind``; a KeyError whose message suggests close names."""
        known = self.stages(kind)
        if name not in known:
            raise KeyError(unknown_name_message(f"{kind}", name, list(known)))
        return known[name]

    def record_kinds(self) -> dict[str, type[Record]]:
        kinds = dict(BUILTIN_KINDS)
        for classes in self.hook.register_record_kinds():
            for cls in classes:
                kinds[cls.model_fields["kind"].default] = cls
        return kinds

    def plugin_version(self, plugin_name: str) -> str:
        return self._versions.get(plugin_name, "unknown")

    def plugin_distribution(self, plugin_name: str) -> str:
        """The pip distribution that installed the plugin (``autodidact`` for the built-ins)."""
        return self._dists.get(plugin_name, "unknown")

    def _registry(self) -> dict[StageKind, dict[str, StageInfo]]:
        if self._stages is None:
            self._stages = {kind: self._collect(kind) for kind in KINDS}
        return self._stages

    def _collect(self, kind: StageKind) -> dict[str, StageInfo]:
        found: dict[str, StageInfo] = {}
        caller = getattr(self.hook, HOOK_OF_KIND[kind])
        for impl in caller.get_hookimpls():  # registration order
            for cls in impl.function() or []:
                problems = check_stage_class(cls, kind)
                if problems:
                    raise PluginError(f"plugin {impl.plugin_name!r}: {kind} {cls!r} " + "; ".join(problems))
                info = StageInfo(kind, cls.name, cls, impl.plugin_name, self.plugin_version(impl.plugin_name),
                                 self.plugin_distribution(impl.plugin_name))
                if cls.name in found:
                    other = found[cls.name].plugin
                    raise PluginError(f"{kind} stage name {cls.name!r} is registered twice: by plugin "
                                      f"{other!r} and by plugin {impl.plugin_name!r}")
                found[cls.name] = info
        return found

    # -- loading ----------------------------------------------------------------------------
    def register_builtins(self) -> None:
        from plugins import builtin_plugins

        for modname in builtin_plugins():
            module = importlib.import_module(modname)
            self.register(module, name=modname)
            self._versions[modname] = __version__
            self._dists[modname] = PROJECT

    def load_entry_points(self) -> None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else "unknown"
            if dist == PROJECT or self.get_plugin(ep.name) is not None:
                continue  # the built-ins are registered by register_builtins
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken third-party package must name itself
                raise PluginError(f"entry point {ep.name!r} of {dist!r} failed to load: {exc}") from exc
            self.register(plugin, name=ep.name)
            self._versions[ep.name] = ep.dist.version if ep.dist else "unknown"
            self._dists[ep.name] = dist


def create_plugin_manager(*, builtins: bool = True, entry_points: bool = True,
                          plugins: list[Any] | None = None) -> PluginManager:
    """Build a fresh manager: built-ins, then entry-point plugins, then ``plugins`` given here.

    Raises PluginError when a hook implementation matches no spec. Set AUTODIDACT_TRACE=1 to
    print every hook call to stderr.
    """
    pm = PluginManager()
    if builtins:
        pm.register_builtins()
    if entry_points:
        pm.load_entry_points()
    for plugin in plugins or []:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        pm.register(plugin, name=name)
        pm._versions[name] = "local"
        pm._dists[name] = "local"
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r}: {exc}") from exc
    if os.environ.get(TRACE_ENV, "") not in ("", "0"):
        pm.trace.root.setwriter(lambda msg: sys.stderr.write(msg))
        pm.enable_tracing()
    return pm


def unknown_name_message(what: str, name: str, known: list[str]) -> str:
    """'unknown X 'name'' plus the closest known names, or the list of known names."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else (
        f"known: {', '.join(sorted(known)) or 'none'}")
    return f"unknown {what} {name!r}; {hint}"
