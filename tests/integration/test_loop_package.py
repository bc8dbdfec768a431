"""A third-party loop package, built from README's "Write a loop" section, installed with pip.

Proves that the README's loop works as written: entry-point discovery (`plugins list`, `loops
show`), a config using the loop validates, a binding whose record kinds do not fit a role is
refused with exit code 2 naming the role, and the package's own test passes with the `run_loop`
fixture that the engine ships.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FILES = {"pyproject.toml", "best_of_n.py", "test_best_of_n.py"}


@pytest.fixture(scope="module")
def installed_loop(readme_package: Any) -> Iterator[Path]:
    with readme_package("Write a loop", "autodidact-best-of-n") as pkg:
        yield pkg


def test_readme_has_the_three_files(readme_section: Any) -> None:
    assert set(readme_section("Write a loop")) == FILES


def test_loop_listed(installed_loop: Path, autodidact_cli: Any) -> None:
    result = autodidact_cli("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = [r for r in json.loads(result.stdout) if r["name"] == "best-of-n"]
    assert len(rows) == 1
    assert {k: rows[0][k] for k in ("kind", "plugin", "version")} == {
        "kind": "loop", "plugin": "best_of_n", "version": "0.1.0"}
    show = autodidact_cli("loops", "show", "best-of-n", "--json")
    assert show.returncode == 0, show.stderr
    roles = json.loads(show.stdout)["roles"]
    assert list(roles) == ["respond", "judge", "keep"] and roles["keep"]["optional"] is True


def test_config_uses_loop(installed_loop: Path, tmp_path: Path, autodidact_cli: Any) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("loop: {name: best-of-n, options: {per_prompt: 2}}\nsampler: scripted\n"
                   "stages: {respond: {options: {n: 8}}, keep: null}\ntrainer: sft\n")
    result = autodidact_cli("validate", str(cfg))
    assert result.returncode == 0, result.stderr
    bad_option = autodidact_cli("validate", str(cfg), "loop.options.per_prompt=0")
    assert bad_option.returncode == 2 and "loop.options.per_prompt" in bad_option.stderr
    bad_kinds = autodidact_cli("validate", str(cfg), "stages.keep=dedup")
    assert bad_kinds.returncode == 2, bad_kinds.stderr
    assert "stages.keep" in bad_kinds.stderr and "role 'keep'" in bad_kinds.stderr
    bad_trainer = autodidact_cli("validate", str(cfg), "trainer=dpo")
    assert bad_trainer.returncode == 2 and "adapter role 'policy'" in bad_trainer.stderr


def test_loop_own_test_passes(installed_loop: Path, package_tests_pass: Any) -> None:
    package_tests_pass(installed_loop, "test_best_of_n.py")
