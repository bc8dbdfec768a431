"""Built-in stages, one per module, registered exactly like third-party plugins.

Every module in this package is a pluggy plugin: it implements ``register_*`` hooks from
engine.hookspecs with ``@hookimpl``. The plugin manager registers each module found here under
its dotted name; nothing else in the engine names a built-in. Modules keep heavy imports
(torch, transformers, vllm, trl) inside the functions that need them.
"""

from __future__ import annotations

import importlib
import pkgutil

BUILTIN_PACKAGES = ("plugins", "loops")
"""Packages whose every public module is a built-in plugin (stages here, loop recipes in loops/)."""


def builtin_plugins() -> list[str]:
    """Dotted names of the built-in plugin modules, sorted."""
    names = []
    for pkg in BUILTIN_PACKAGES:
        path = importlib.import_module(pkg).__path__
        names += [f"{pkg}.{m.name}" for m in pkgutil.iter_modules(path) if not m.name.startswith("_")]
    return sorted(names)
