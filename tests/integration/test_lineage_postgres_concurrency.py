"""Concurrent writers lose nothing: 8 processes write 10,000 records each into one PostgreSQL
store (its own schema, dropped afterwards) and the store holds exactly 80,000 of them, plus one
copy of 1,000 records that every process also writes (idempotence under contention)."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from engine.lineage import LineageStore
from engine.records import Link, Response, Seed

PG_URL = os.environ.get("AUTODIDACT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WRITERS, PER_WRITER, BATCH, SHARED = 8, 10_000, 1_000, 1_000

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = f"lt_conc_{uuid.uuid4().hex[:8]}"
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {str(exc).splitlines()[0]}")
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


def shared_records() -> list[Seed]:
    return [Seed(text=f"shared seed {i}") for i in range(SHARED)]


def write(url: str, writer: int) -> int:
    store = LineageStore.open(url)
    try:
        store.create_run("conc", config={"writers": WRITERS}, config_hash="h", code_version="v", loop="test")
        shared_exec = store.start_stage("conc", 0, "seeds", kind="generator", stage="seeds", plugin="p",
                                        plugin_version="1", options={}, model_version=None)
        store.write_records("conc", 0, shared_exec, shared_records())
        eid = store.start_stage("conc", 0, f"writer-{writer}", kind="sampler", stage="s", plugin="p",
                                plugin_version="1", options={}, model_version="m0")
        seeds = shared_records()
        new = 0
        for start in range(0, PER_WRITER, BATCH):
            batch = [Response(text=f"writer {writer} record {i}", sample_index=i,
                              parents=[Link(id=seeds[i % SHARED].id)]) for i in range(start, start + BATCH)]
            new += store.write_records("conc", 0, eid, batch)
        store.finish_stage(eid, n_in=SHARED, n_out=new, seconds=0.0)
        return new
    finally:
        store.close()


def test_eight_writers_lose_nothing(pg_url: str) -> None:
    LineageStore.open(pg_url).close()  # migrate once up front; concurrent openers are tested elsewhere
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(WRITERS) as pool:
        written = pool.starmap(write, [(pg_url, k) for k in range(WRITERS)])
    assert written == [PER_WRITER] * WRITERS
    with LineageStore.open(pg_url, create=False) as store, store.engine.connect() as conn:
        def count(sql: str) -> int:
            return int(conn.exec_driver_sql(sql).scalar_one())

        assert count("SELECT count(*) FROM records WHERE kind = 'response'") == WRITERS * PER_WRITER
        assert count("SELECT count(DISTINCT id) FROM records") == WRITERS * PER_WRITER + SHARED
        assert count("SELECT count(*) FROM records WHERE kind = 'seed'") == SHARED
        assert count("SELECT count(*) FROM edges") == WRITERS * PER_WRITER
        assert count("SELECT count(*) FROM outputs") == WRITERS * PER_WRITER + SHARED
        assert count("SELECT count(*) FROM stage_executions") == WRITERS + 1
