"""A third-party loop package, built from README's "Write a loop" section, installed with pip.

Proves that the README's loop works as written: entry-point discovery (`plugins list`, `loops
show`), a config using the loop validates, a binding whose record kinds do not fit a role is
refused with exit code 2 naming the role, and the package's own test passes with the `run_loop`
fixture that the engine ships.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = {"pyproject.toml", "best_of_n.py", "test_best_of_n.py"}


def readme_blocks() -> dict[str, str]:
    """Code blocks of README's 'Write a loop' section, keyed by their first-line file name."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Write a loop", 1)[1].split("\n## ", 1)[0]
    blocks = {}
    for body in re.findall(r"```(?:toml|python)\n(.*?)```", section, re.S):
        first, rest = body.split("\n", 1)
        blocks[first.lstrip("# ").strip()] = rest
    return blocks


@pytest.fixture(scope="module")
def installed_loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    pkg = tmp_path_factory.mktemp("best_of_n_pkg")
    for name, body in readme_blocks().items():
        (pkg / name).write_text(body)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["install", "--no-deps", "--no-build-isolation", str(pkg)], check=True,
                   cwd=pkg)
    try:
        yield pkg
    finally:
        subprocess.run(pip + ["uninstall", "-y", "autodidact-best-of-n"], check=True)


def autodidact(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_readme_has_the_three_files() -> None:
    assert set(readme_blocks()) == FILES


def test_loop_listed(installed_loop: Path) -> None:
    result = autodidact("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = [r for r in json.loads(result.stdout) if r["name"] == "best-of-n"]
    assert len(rows) == 1
    assert {k: rows[0][k] for k in ("kind", "plugin", "version")} == {
        "kind": "loop", "plugin": "best_of_n", "version": "0.1.0"}
    show = autodidact("loops", "show", "best-of-n", "--json")
    assert show.returncode == 0, show.stderr
    roles = json.loads(show.stdout)["roles"]
    assert list(roles) == ["respond", "judge", "keep"] and roles["keep"]["optional"] is True


def test_config_uses_loop(installed_loop: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("loop: {name: best-of-n, options: {per_prompt: 2}}\nsampler: scripted\n"
                   "stages: {respond: {options: {n: 8}}, keep: null}\ntrainer: sft\n")
    result = autodidact("validate", str(cfg))
    assert result.returncode == 0, result.stderr
    bad_option = autodidact("validate", str(cfg), "loop.options.per_prompt=0")
    assert bad_option.returncode == 2 and "loop.options.per_prompt" in bad_option.stderr
    bad_kinds = autodidact("validate", str(cfg), "stages.keep=dedup")
    assert bad_kinds.returncode == 2, bad_kinds.stderr
    assert "stages.keep" in bad_kinds.stderr and "role 'keep'" in bad_kinds.stderr
    bad_trainer = autodidact("validate", str(cfg), "trainer=dpo")
    assert bad_trainer.returncode == 2 and "adapter role 'policy'" in bad_trainer.stderr


def test_loop_own_test_passes(installed_loop: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(installed_loop / "test_best_of_n.py")],
                            capture_output=True, text=True, cwd=installed_loop)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
