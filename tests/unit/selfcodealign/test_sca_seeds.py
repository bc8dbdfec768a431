"""Seed mining rules (docstring, arguments, a return value, no os/sys), near-dedup, deterministic draws."""

from __future__ import annotations

import ast
from pathlib import Path

from engine.contracts import StageContext
from engine.records import Record, Seed
from plugins.seeds_stdlib import StdlibSeeds, StdlibSeedsOptions, mined_pool, near_dedup, seed_functions

SOURCE = '''
import os
import sys as _sys
from os.path import join

def good(a, b):
    """Add two numbers."""
    total = a + b
    return total

def no_doc(a):
    x = a
    return x

def no_args():
    """Nothing in."""
    y = 1
    return y

def no_return(a):
    """Prints only."""
    print(a)
    print(a)

def nested_return_only(a):
    """The only return is in a nested function."""
    def inner():
        return a
    inner()

def uses_os(path):
    """Touches os."""
    p = os.path.join(path, "x")
    return p

def aliased_sys(a):
    """Uses an alias of sys."""
    return _sys.maxsize + a + join

def imports_sys(a):
    """Imports sys."""
    import sys
    return sys.maxsize + a

def _private(a):
    """Private."""
    b = a
    return b

class K:
    def method(self, a):
        """A method, not a top-level function."""
        c = a
        return c
'''


def test_seed_rules() -> None:
    found = dict(seed_functions(SOURCE, "mod"))
    assert list(found) == ["mod:good"]
    assert found["mod:good"].startswith("def good(a, b):") and found["mod:good"].endswith("return total")


def test_size_window() -> None:
    assert seed_functions(SOURCE, "mod", min_lines=5) == []
    assert seed_functions("def f(:\n", "bad") == []


def test_near_dedup_keeps_first_of_similar() -> None:
    body = "\n".join(f"    v{i} = a * {i} + b" for i in range(30))
    one = f"def f(a, b):\n{body}\n    return v1"
    two = one.replace("def f", "def g")
    other = "def h(x):\n    '''Other.'''\n    return sorted(set(x), key=str.lower)[::-1]"
    kept = near_dedup([("m:f", one), ("m:g", two), ("m:h", other)], threshold=0.5)
    assert [name for name, _ in kept] == ["m:f", "m:h"]


def test_pool_from_a_fake_stdlib(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(SOURCE)
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "t.py").write_text(SOURCE)
    assert mined_pool(root=str(tmp_path)) == (("pkg:good", dict(seed_functions(SOURCE, "pkg"))["pkg:good"]),)


def test_real_stdlib_pool_and_draws() -> None:
    pool = mined_pool()
    assert len(pool) > 200
    for name, text in pool:
        assert ":" in name and text.startswith("def ")
        names = {n.id for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Name)}
        assert not names & {"os", "sys", "_os", "_sys"}, name
    request = Record(kind="seed_request")
    ctx = StageContext(seed=7000 + 1, iteration=1)
    first = StdlibSeeds(StdlibSeedsOptions(count=5), ctx).generate([request])
    again = StdlibSeeds(StdlibSeedsOptions(count=5), StageContext(seed=7001, iteration=1)).generate([request])
    assert [s.id for s in first] == [s.id for s in again] and len(first) == 5
    assert all(isinstance(s, Seed) and s.parent_ids() == [request.id] for s in first)
    later = StageContext(seed=7002, iteration=2)
    second = StdlibSeeds(StdlibSeedsOptions(count=5), later).generate([request])
    assert not {s.source for s in first} & {s.source for s in second}, "iterations draw new seeds"
    assert StdlibSeeds(StdlibSeedsOptions(count=5), ctx).generate([]) == []
