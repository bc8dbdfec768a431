"""Helpers for the whole-loop integration tests: run a shipped config to the end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.config import load_config
from engine.manager import create_plugin_manager
from engine.runtime.run import start_run

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture
def finished_run(tmp_path: Path) -> Callable[[str, list[str]], tuple[Path, str]]:
    """Run ``configs/NAME`` with overrides into tmp_path; assert it finished every iteration and
    return (run directory, run id)."""

    def go(name: str, overrides: list[str]) -> tuple[Path, str]:
        pm = create_plugin_manager()
        resolved = load_config(CONFIGS / name, [f"output_dir={tmp_path}", *overrides], pm)
        run_dir = start_run(resolved, pm)
        state = json.loads((run_dir / "run.json").read_text())
        assert state["status"] == "finished"
        assert state["iterations_done"] == resolved.config.iterations
        return run_dir, str(state["run_id"])

    return go
