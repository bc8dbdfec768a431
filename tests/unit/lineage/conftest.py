"""Fixtures of the lineage store suite: the same tests on SQLite and on the real PostgreSQL.

Each PostgreSQL test gets its own schema (``lt_<session>_<n>``, set through ``search_path`` in
the URL) that is dropped afterwards, so concurrent test runs never collide. Set
AUTODIDACT_TEST_PG_URL to point elsewhere than postgresql://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.lineage import LineageStore
from engine.records import (
    Critique,
    Link,
    PreferencePair,
    Record,
    Refinement,
    Response,
    Seed,
    Task,
    TrainingExample,
)

PG_URL = os.environ.get("AUTODIDACT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SESSION = uuid.uuid4().hex[:8]
_counter = itertools.count()


def _pg_available() -> str | None:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means: skip the postgres half
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    problem = _pg_available()
    if problem:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {problem}")
    yield PG_URL
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:  # leftovers of this session, if a test died mid-way
        names = conn.exec_driver_sql("SELECT nspname FROM pg_namespace WHERE nspname LIKE %(p)s",
                                     {"p": f"lt_{SESSION}_%"}).scalars().all()
        for name in names:
            conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    import sqlalchemy as sa

    schema = f"lt_{SESSION}_{next(_counter)}"
    engine = sa.create_engine(pg_admin)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in pg_admin else "?"
    yield f"{pg_admin}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lineage.sqlite'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[LineageStore]:
    st = LineageStore.open(store_url)
    yield st
    st.close()


def open_stage(store: LineageStore, run_id: str, iteration: int, role: str, kind: str = "generator",
               model_version: str | None = None, attempt_key: str = "") -> str:
    store.start_iteration(run_id, iteration)
    return store.start_stage(run_id, iteration, role, kind=kind, stage=f"{role}-stage", plugin="builtin",
                             plugin_version="0.1.0", options={"n": 1}, model_version=model_version,
                             attempt_key=attempt_key)


def build_graph(store: LineageStore, run_id: str = "r1") -> dict[str, Record]:
    """A small SPaR-like lineage over two iterations: seed -> task -> 2 responses -> critique ->
    refinement -> preference pair -> training example; iteration 1 keeps fewer records."""
    store.create_run(run_id, config={"loop": "spar"}, config_hash="cfg", code_version="abc", loop="spar")
    seed = Seed(text="def add(a, b): return a + b", source="stdlib")
    task = Task(prompt="write add", parents=[Link(id=seed.id)])
    good = Response(text="good", parents=[Link(id=task.id)], sample_index=0, model_version="m0")
    bad = Response(text="bad", parents=[Link(id=task.id)], sample_index=1, model_version="m0")
    crit = Critique(verdict=False, votes_no=3, parents=[Link(id=bad.id, role="judges")])
    ref = Refinement(text="fixed", parents=[Link(id=bad.id, role="refines"), Link(id=crit.id, role="input")])
    pair = PreferencePair(prompt="write add", chosen="fixed", rejected="bad",
                          parents=[Link(id=ref.id, role="chosen"), Link(id=bad.id, role="rejected")])
    ex = TrainingExample(prompt="write add", completion="fixed", parents=[Link(id=pair.id)])
    writes: list[tuple[int, str, str, list[Record], int]] = [
        (0, "seeds", "generator", [seed], 0), (0, "tasks", "generator", [task], 1),
        (0, "actor", "sampler", [good, bad], 1), (0, "judge", "critic", [crit], 2),
        (0, "refiner", "refiner", [ref], 2), (0, "pairs", "generator", [pair], 2),
        (0, "sft", "generator", [ex], 1),
        (1, "seeds", "generator", [seed], 0), (1, "tasks", "generator", [task], 1),
    ]
    for iteration, role, kind, recs, n_in in writes:
        version = "m0" if role == "actor" else None
        eid = open_stage(store, run_id, iteration, role, kind, model_version=version)
        store.write_records(run_id, iteration, eid, recs)
        store.finish_stage(eid, n_in=n_in, n_out=len(recs), seconds=0.5)
    return {"seed": seed, "task": task, "good": good, "bad": bad, "crit": crit, "ref": ref, "pair": pair,
            "ex": ex}



@pytest.fixture
def stage() -> Callable[..., str]:
    """``stage(store, run_id, iteration, role, kind=..., model_version=..., attempt_key=...)``."""
    return open_stage


@pytest.fixture
def graph(store: LineageStore) -> dict[str, Record]:
    """The records of :func:`build_graph`, written to ``store`` as run ``r1``."""
    return build_graph(store)
