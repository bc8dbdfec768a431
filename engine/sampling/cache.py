"""The request cache: nothing is sampled twice for the same model version, input, parameters and n.

What it is: ``SampleCache``, an SQLite file of results keyed on (model version, messages or prompt,
sampling parameters including n, and the seed unless greedy), kept beside the lineage store (``run_dir /
sample-cache.sqlite``), and ``CachedSampler``, a wrapper that sends only the misses to its backend
(deduplicated) and marks hits ``cached=True``. What it is not: a lineage store, or a cache of
partial results: a request is cached only whole, after its backend answered it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from engine.sampling.protocol import Sampler, SampleRequest, SampleResult

CACHE_FILE = "sample-cache.sqlite"
SCHEMA = """CREATE TABLE IF NOT EXISTS samples (
  key TEXT PRIMARY KEY, model_version TEXT NOT NULL, request TEXT NOT NULL, result TEXT NOT NULL,
  created REAL NOT NULL, sampler TEXT NOT NULL DEFAULT 'policy')"""


def request_key(model_version: str, request: SampleRequest) -> str:
    """Stable key of one request under one model version (the adapter is part of the version).
    A greedy request's (temperature 0) seed is left out (keyed as None): it does not change the
    output, so greedy requests that differ only in seed share one entry."""
    params = request.params.model_dump(mode="json")
    if request.params.temperature == 0:
        params["seed"] = None
    body = {"v": model_version, "messages": request.messages, "prompt": request.prompt, "params": params}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def version_of(sampler: object, adapter: str | None) -> str:
    """The model version a sampler would use for ``adapter``: its ``model_version_for(adapter)``
    method, else its ``model_version`` attribute (samplers without adapters)."""
    fn = getattr(sampler, "model_version_for", None)
    if callable(fn):
        return str(fn(adapter))
    version = getattr(sampler, "model_version", None)
    if version is None:
        raise TypeError(f"{type(sampler).__name__} has neither model_version_for() nor model_version; "
                        f"it cannot be cached")
    if adapter is not None:
        raise TypeError(f"{type(sampler).__name__} does not serve adapters (no model_version_for())")
    return str(version)


class SampleCache:
    """An SQLite table of sampled results. Safe across threads and processes (WAL, busy timeout)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(samples)")}
            if "sampler" not in columns:  # a cache written before samplers had names
                conn.execute("ALTER TABLE samples ADD COLUMN sampler TEXT NOT NULL DEFAULT 'policy'")

    @classmethod
    def in_run_dir(cls, run_dir: Path | str) -> SampleCache:
        """The cache beside a run's lineage store: ``run_dir/sample-cache.sqlite``."""
        return cls(Path(run_dir) / CACHE_FILE)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0)
            self._local.conn = conn
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, SampleResult]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, SampleResult] = {}
        conn = self._conn()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT key, result FROM samples WHERE key IN ({marks})", chunk).fetchall()
            found.update((k, SampleResult.model_validate_json(r)) for k, r in rows)
        return found

    def put_many(self, items: Iterable[tuple[str, SampleRequest, SampleResult]],
                 sampler: str = "policy") -> None:
        """Store results under their keys; ``sampler`` is the name of the run's sampler that made them."""
        now = time.time()
        rows = [(k, res.model_version or "", req.model_dump_json(), res.model_dump_json(exclude={"cached"}),
                 now, sampler) for k, req, res in items]
        with self._conn() as conn:
            conn.executemany("INSERT OR REPLACE INTO samples (key, model_version, request, result, created, "
                             "sampler) VALUES (?, ?, ?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM samples").fetchone()[0])

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class CachedSampler:
    """Wraps a sampler: hits come from the cache (``cached=True``), misses go to the backend once.

    It forwards ``name``, ``resources`` and the model version methods, so the runtime and stages
    treat it as the sampler it wraps. ``hits`` and ``misses`` count requests.
    """

    def __init__(self, backend: Sampler, cache: SampleCache, name: str = "policy") -> None:
        self.backend = backend
        self.cache = cache
        self.sampler_name = name  # which of the run's named samplers this is (cache rows record it)
        self.hits = 0
        self.misses = 0

    def __getattr__(self, attr: str) -> Any:  # name, resources, model_version... of the backend
        return getattr(self.backend, attr)

    def model_version_for(self, adapter: str | None) -> str:
        return version_of(self.backend, adapter)

    def sample(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        versions = {a: self.model_version_for(a) for a in {r.adapter for r in requests}}  # once per adapter
        keys = [request_key(versions[r.adapter], r) for r in requests]
        found = self.cache.get_many(keys)
        todo: dict[str, SampleRequest] = {}
        for key, req in zip(keys, requests, strict=True):
            if key not in found and key not in todo:
                todo[key] = req
        if todo:
            answers = self.backend.sample(list(todo.values()))
            if len(answers) != len(todo):
                raise RuntimeError(f"sampler {self.backend.name!r} answered {len(answers)} of "
                                   f"{len(todo)} requests")
            self.cache.put_many(((k, req, res) for (k, req), res in zip(todo.items(), answers, strict=True)),
                                self.sampler_name)
            fresh = dict(zip(todo, answers, strict=True))
        else:
            fresh = {}
        self.misses += len(todo)
        out = []
        for key in keys:
            if key in found:
                self.hits += 1
                out.append(found[key].model_copy(update={"cached": True}))
            else:
                out.append(fresh[key])
        return out
