"""autodidact engine: the core that plugins and loops build on.

What it is: the public surface for plugin authors (``hookimpl``, the stage contracts, the
records) and the entry to the plugin manager. What it is not: any heavy machinery; importing
``engine`` never imports torch, transformers, vllm, ray or trl.
"""

from __future__ import annotations

import pluggy

PROJECT = "autodidact"
__version__ = "0.1.0"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "__version__", "hookimpl", "hookspec"]
