"""Every benchmark imports (an engine change that breaks one fails here, not when someone runs it)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHES = sorted(p.parent.name for p in (Path(__file__).resolve().parents[3] / "bench").glob("*/run.py"))


@pytest.mark.parametrize("name", BENCHES)
def test_benchmark_imports(name: str) -> None:
    module = importlib.import_module(f"bench.{name}.run")
    assert callable(getattr(module, "main", None)), f"bench/{name}/run.py has no main()"
