"""Data files: the prompts a loop starts from, and the helpers stages use to read data files.

What it is: ``load_tasks`` turns each line of a JSONL file (fields ``prompt``, ``instruction`` or
``question``) into a Task record, honouring ``data.limit``; the line's other string and number
fields (``answer``, ``tests``, ...) go into the task's ``meta``, where environments read them.
Relative paths are looked up from the working directory, then from configs/. Public helpers for
stage authors: :func:`package_file` (a data file shipped inside an installed package, found
without importing it) and :func:`read_jsonl` (rows of a JSONL file, gzip-compressed when it ends
in ``.gz``); evaluators and the decontamination filter read their benchmark sets with them.
What it is not: the evaluation sets themselves (evaluators name their own) nor seed mining (a
loop's own stage).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from engine.errors import UserError
from engine.records import Task

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
TEXT_FIELDS = ("prompt", "instruction", "question")


def package_file(package: str, relative: str) -> Path | None:
    """The file ``relative`` inside the installed package ``package``, found without importing the
    package; None when the package or the file is missing."""
    spec = importlib.util.find_spec(package)
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = Path(base) / relative
        if path.is_file():
            return path
    return None


def data_problems(load: Callable[[], object]) -> list[str]:
    """For a stage's ``preflight``: [] when ``load()`` (reading its installed data) works, else the
    one-line reason it does not (its loaders raise RuntimeError naming the package to install)."""
    try:
        load()
    except (RuntimeError, OSError, ValueError) as exc:
        return [str(exc).splitlines()[0] if str(exc) else type(exc).__name__]
    return []


T = TypeVar("T")


def seeded_subset(items: list[T], n: int | None, seed: int) -> list[T]:
    """``n`` of ``items`` drawn with ``seed``, in their original order (all of them when ``n`` is None
    or not smaller): the evaluators' fixed subsets."""
    import random

    if n is None or n >= len(items):
        return items
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), n))]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The non-blank lines of a JSONL file, parsed; ``.gz`` files are decompressed on the fly."""
    fh: IO[str] = (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz"
                   else path.open(encoding="utf-8"))
    with fh:
        return [json.loads(line) for line in fh if line.strip()]


def find_source(source: str) -> Path:
    path = Path(source)
    for candidate in (path, CONFIGS / path):
        if candidate.is_file():
            return candidate
    raise UserError(f"data.source: file not found: {source}")


def load_tasks(source: str, limit: int | None = None) -> list[Task]:
    """Task records from a JSONL file; a line without a text field is an error naming the line."""
    path = find_source(source)
    tasks: list[Task] = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
            text = next((row[k] for k in TEXT_FIELDS if isinstance(row, dict) and k in row), None)
            if not isinstance(text, str):
                raise UserError(f"{path}:{lineno}: needs a string field, one of {', '.join(TEXT_FIELDS)}")
            extra = {k: v for k, v in row.items()
                     if k not in TEXT_FIELDS and isinstance(v, str | int | float)}
            tasks.append(Task(prompt=text, meta={**extra, "source": str(source), "line": lineno}))
            if limit is not None and len(tasks) >= limit:
                break
    return tasks
