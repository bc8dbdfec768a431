"""The ``stdlib-seeds`` generator: seed functions mined from the Python standard library.

What it is: SelfCodeAlign's seed rules applied to the running interpreter's own stdlib source
(PSF licence, present on every machine): top-level public functions with a docstring, at least
one argument and a ``return <value>``, that do not touch ``os`` or ``sys``, within a size window;
near-duplicates removed with MinHash LSH (datasketch, Jaccard 0.5 on token 5-grams). The mined
pool is computed once per process (``lru_cache``); each call draws ``count`` seeds from a
permutation fixed by the run seed, sliced by iteration, so iterations get different seeds and a
rerun gets the same ones. Input records are *requests*: each batch needs at least one (the loop
ingests one request record); every seed links to the requests as its parents. No inputs, no seeds.
What it is not: a general corpus miner (no third-party code, no methods, no files outside stdlib).
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import ANY, Stage
from engine.records import Link, Record, Seed

SKIP_PARTS = frozenset({"test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip",
                        "site-packages", "dist-packages", "pydoc_data", "__pycache__", "distutils"})
BANNED_NAMES = frozenset({"os", "sys"})


class StdlibSeedsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(16, ge=1, le=100_000, description="seeds drawn per call")
    min_lines: int = Field(3, ge=1, description="shortest seed function, in source lines")
    max_lines: int = Field(40, ge=1, description="longest seed function, in source lines")
    jaccard: float = Field(0.5, gt=0.0, le=1.0, description="MinHash near-duplicate threshold")
    per_iteration: bool = Field(True, description="slice the permutation by iteration (no repeats)")


def stdlib_dir() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["stdlib"])


def _banned_aliases(tree: ast.Module) -> frozenset[str]:
    """Module-level names bound to os or sys or their members (``import sys as _sys``, ``from os import
    path``), plus ``os`` and ``sys`` themselves."""
    names = set(BANNED_NAMES)
    for stmt in ast.walk(tree):
        if isinstance(stmt, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in stmt.names
                      if a.name.split(".")[0] in BANNED_NAMES}
        elif isinstance(stmt, ast.ImportFrom) and (stmt.module or "").split(".")[0] in BANNED_NAMES:
            names |= {a.asname or a.name for a in stmt.names}
    return frozenset(names)


def _uses_banned(node: ast.AST, banned: frozenset[str]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id in banned:
            return True
        if isinstance(sub, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in sub.names] + ([sub.module] if isinstance(sub, ast.ImportFrom)
                                                   and sub.module else [])
            if any(m.split(".")[0] in BANNED_NAMES for m in mods):
                return True
    return False


def _returns_value(fn: ast.FunctionDef) -> bool:
    """A ``return <value>`` in the function's own body (not in a nested def or class)."""
    stack: list[ast.AST] = list(fn.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Return) and node.value is not None:
            return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return False


def seed_functions(source: str, module: str, min_lines: int = 3,
                   max_lines: int = 40) -> list[tuple[str, str]]:
    """(``module:function``, source) of the functions in ``source`` that satisfy the seed rules."""
    if not re.search(r"^def ", source, re.M):
        return []
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines()
    banned = _banned_aliases(tree)
    out = []
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef) or fn.name.startswith("_"):
            continue
        args = fn.args
        if not (args.args or args.posonlyargs or args.kwonlyargs or args.vararg or args.kwarg):
            continue
        if not ast.get_docstring(fn) or not _returns_value(fn) or _uses_banned(fn, banned):
            continue
        end = fn.end_lineno or fn.lineno
        if not min_lines <= end - fn.lineno + 1 <= max_lines:
            continue
        text = "\n".join(lines[fn.lineno - 1:end])
        out.append((f"{module}:{fn.name}", text))
    return out


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _shingles(text: str, k: int = 5) -> set[str]:
    tokens = re.findall(r"\w+|[^\w\s]", text)
    return {" ".join(tokens[i:i + k]) for i in range(max(1, len(tokens) - k + 1))}


def near_dedup(items: Sequence[tuple[str, str]], threshold: float,
               num_perm: int = 64) -> list[tuple[str, str]]:
    """Keep the first of each group of near-duplicates (MinHash LSH at ``threshold``), in order."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept, hashes = [], {}
    for i, (name, text) in enumerate(items):
        mh = MinHash(num_perm=num_perm, seed=1)
        mh.update_batch([s.encode() for s in _shingles(text)])
        if any(mh.jaccard(hashes[c]) >= threshold for c in lsh.query(mh)):
            continue
        hashes[str(i)] = mh
        lsh.insert(str(i), mh)
        kept.append((name, text))
    return kept


@lru_cache(maxsize=4)
def mined_pool(min_lines: int = 3, max_lines: int = 40, jaccard: float = 0.5,
               root: str | None = None) -> tuple[tuple[str, str], ...]:
    """Every seed function of the stdlib at ``root`` (default: the running interpreter's), sorted."""
    base = Path(root) if root else stdlib_dir()
    found: list[tuple[str, str]] = []
    for path in sorted(base.rglob("*.py")):
        if SKIP_PARTS & set(path.relative_to(base).parts):
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        found += seed_functions(source, _module_name(path, base), min_lines, max_lines)
    found.sort()
    return tuple(near_dedup(found, jaccard))


class StdlibSeeds(Stage[StdlibSeedsOptions]):
    """Draws ``count`` seed functions from the mined stdlib pool (inputs are requests of any kind)."""

    kind = "generator"
    name = "stdlib-seeds"
    accepts = (ANY,)
    produces = ("seed",)

    def generate(self, inputs: Sequence[Record]) -> list[Record]:
        opts = self.options
        if not inputs:
            return []
        pool = mined_pool(opts.min_lines, opts.max_lines, opts.jaccard)
        ctx = self.context
        base_seed = ctx.seed - ctx.iteration if opts.per_iteration else ctx.seed
        order = list(range(len(pool)))
        random.Random(base_seed).shuffle(order)
        start = (max(ctx.iteration - 1, 0) * opts.count) % max(len(pool), 1) if opts.per_iteration else 0
        picks = (order[start:] + order[:start])[:opts.count]
        parents = [Link(id=r.id, role="input") for r in inputs]
        return [Seed(text=pool[i][1], source=pool[i][0], parents=parents) for i in picks]


@hookimpl
def register_generators() -> list[type]:
    return [StdlibSeeds]
