"""Docs match code: every hookspec is in README's Hook reference, every stage kind in its table."""

from __future__ import annotations

import inspect
from pathlib import Path

from engine import hookspecs
from engine.contracts import KINDS, VERBS

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()


def hook_names() -> list[str]:
    return [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(f, "autodidact_spec")]


def test_every_hookspec_documented() -> None:
    section = README.split("## Hook reference", 1)[1].split("\n## ", 1)[0]
    names = hook_names()
    assert len(names) >= 15
    missing = [n for n in names if f"`{n}" not in section]
    assert not missing, f"hooks missing from README's Hook reference: {missing}"


def test_every_kind_and_verb_documented() -> None:
    for kind in KINDS:
        assert f"| {kind} | `{VERBS[kind]}(" in README, kind


def test_import_engine_is_light() -> None:
    import subprocess
    import sys

    code = ("import sys, engine, engine.manager, engine.config, engine.records, engine.contracts; "
            "heavy = {'torch', 'transformers', 'vllm', 'ray', 'trl'} & set(sys.modules); "
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
