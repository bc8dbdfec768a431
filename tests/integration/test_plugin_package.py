"""A third-party plugin package, built from README's "Write a plugin" section, installed with pip.

Proves that the README's example works as written: entry-point discovery, `plugins list`, a
config that uses the new stage validates, and the plugin's own test passes with the fixtures the
engine ships.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def installed_plugin(readme_package: Any) -> Iterator[Path]:
    with readme_package("Write a plugin", "autodidact-length-critic") as pkg:
        yield pkg


def test_readme_has_the_three_files(readme_section: Any) -> None:
    files = set(readme_section("Write a plugin"))
    assert files == {"pyproject.toml", "length_critic.py", "test_length_critic.py"}


def test_plugin_listed(installed_plugin: Path, autodidact_cli: Any) -> None:
    result = autodidact_cli("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {"kind": "critic", "name": "length", "plugin": "length_critic",
            "distribution": "autodidact-length-critic", "version": "0.1.0"} in rows


def test_config_uses_plugin(installed_plugin: Path, tmp_path: Path, autodidact_cli: Any) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("loop: self\nsampler: scripted\n"
                   "stages: {judge: {name: length, options: {min_words: 20}}}\n")
    result = autodidact_cli("validate", str(cfg))
    assert result.returncode == 0, result.stderr
    bad = autodidact_cli("validate", str(cfg), "stages.judge.options.min_words=0")
    assert bad.returncode == 2 and "stages.judge.options.min_words" in bad.stderr


def test_plugin_own_test_passes(installed_plugin: Path, package_tests_pass: Any) -> None:
    package_tests_pass(installed_plugin, "test_length_critic.py")
