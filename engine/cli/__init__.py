"""The ``autodidact`` command line (Typer + rich).

What it is: the entry point ``main`` and the Typer app that mounts the command groups defined in
this package (run, plugins, lineage). What it is not: any logic of its own; commands call into
the engine and turn user errors into one-line messages with exit code 2.
"""

from __future__ import annotations

from engine.cli.app import app, main

__all__ = ["app", "main"]
