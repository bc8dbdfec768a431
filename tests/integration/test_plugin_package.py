"""A third-party plugin package, built from README's "Write a plugin" section, installed with pip.

Proves that the README's example works as written: entry-point discovery, `plugins list`, a
config that uses the new stage validates, and the plugin's own test passes with the fixtures the
engine ships.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_blocks() -> dict[str, str]:
    """Code blocks of README's 'Write a plugin' section, keyed by their first-line file name."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Write a plugin", 1)[1].split("\n## ", 1)[0]
    blocks = {}
    for body in re.findall(r"```(?:toml|python)\n(.*?)```", section, re.S):
        first, rest = body.split("\n", 1)
        blocks[first.lstrip("# ").strip()] = rest
    return blocks


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pkg = tmp_path_factory.mktemp("length_critic_pkg")
    for name, body in readme_blocks().items():
        (pkg / name).write_text(body)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["install", "--no-deps", "--no-build-isolation", str(pkg)], check=True,
                   cwd=pkg)
    yield pkg
    subprocess.run(pip + ["uninstall", "-y", "autodidact-length-critic"], check=True)


def autodidact(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_readme_has_the_three_files() -> None:
    assert set(readme_blocks()) == {"pyproject.toml", "length_critic.py", "test_length_critic.py"}


def test_plugin_listed(installed_plugin: Path) -> None:
    result = autodidact("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {"kind": "critic", "name": "length", "plugin": "length_critic",
            "distribution": "autodidact-length-critic", "version": "0.1.0"} in rows


def test_config_uses_plugin(installed_plugin: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("loop: self\nsampler: scripted\n"
                   "stages: {judge: {name: length, options: {min_words: 20}}}\n")
    result = autodidact("validate", str(cfg))
    assert result.returncode == 0, result.stderr
    bad = autodidact("validate", str(cfg), "stages.judge.options.min_words=0")
    assert bad.returncode == 2 and "stages.judge.options.min_words" in bad.stderr


def test_plugin_own_test_passes(installed_plugin: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(installed_plugin / "test_length_critic.py")],
                            capture_output=True, text=True, cwd=installed_plugin)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
