"""Lineage store benchmark: bulk ingest against a naive one-INSERT-per-record baseline measured
in the same run, and the ancestors query at depth 6 in a 1,000,000-record store, on SQLite and
PostgreSQL. Prints a table and writes it to bench/lineage/RESULTS.md.

What it is: ``python -m bench.lineage [--quick] [--backends sqlite,postgres]``. Ingest rates
include building rows from pydantic records (the runner's real cost). The naive baseline writes
each record with its own INSERT statements (record, edges, output) and commits it, as a runner
that stored records one at a time would. What it is not: a test; targets are reported, not
asserted (bulk >= 20x naive and >= 50,000 records/s on SQLite; ancestors median <= 10 ms).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.lineage.build import FAMILY, build_million, example_id
from engine.lineage import LineageStore, queries
from engine.lineage.bulk import TABLES
from engine.lineage.rows import RecordRows
from engine.records import Link, Record, Response, Task

PG_URL = os.environ.get("AUTODIDACT_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).with_name("RESULTS.md")


@contextmanager
def store_for(backend: str, tmp: Path, name: str) -> Iterator[LineageStore]:
    """A fresh store: a SQLite file under ``tmp``, or a PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        store = LineageStore.open(f"sqlite:///{tmp / f'{name}.sqlite'}")
        try:
            yield store
        finally:
            store.close()
        return
    schema = f"bench_{name}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    store = LineageStore.open(f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}")
    try:
        yield store
    finally:
        store.close()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def make_records(n: int, tag: str) -> list[Record]:
    """``n`` responses (with parents) to n/4 tasks: what a sampler stage hands the runner."""
    tasks = [Task(prompt=f"{tag} task {i}") for i in range(max(1, n // 4))]
    return [Response(text=f"{tag} response {i} " + "lorem ipsum " * 8, sample_index=i, model_version="m0",
                     parents=[Link(id=tasks[i % len(tasks)].id)]) for i in range(n)]


def bulk_rate(store: LineageStore, n: int, batch: int, tag: str = "") -> tuple[float, float]:
    """(records per second of wall clock, records per CPU-second of this process)."""
    recs = make_records(n, f"bulk{tag}")
    eid = store.start_stage("ingest", 0, f"bulk{tag}", kind="sampler", stage="s", plugin="p",
                            plugin_version="0", options={}, model_version="m0")
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, n, batch):
        store.write_records("ingest", 0, eid, recs[i:i + batch])
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def naive_rate(store: LineageStore, n: int, tag: str = "") -> float:
    """One record at a time: its own INSERT statements (record, edges, output) and its own commit."""
    recs = make_records(n, f"naive{tag}")
    eid = store.start_stage("ingest", 0, f"naive{tag}", kind="sampler", stage="s", plugin="p",
                            plugin_version="0", options={}, model_version="m0")
    mark = "%s" if store.dialect == "postgresql" else "?"
    sql = {table: f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(mark for _ in cols)}) "
                  "ON CONFLICT DO NOTHING"
           for table, cols, _ in TABLES}
    start = time.perf_counter()
    for seq, rec in enumerate(recs):
        rows = RecordRows.build("ingest", 0, eid, [rec])
        with store.engine.begin() as conn:
            conn.exec_driver_sql(sql["records"], rows.records[0])
            for edge in rows.edges:
                conn.exec_driver_sql(sql["edges"], edge)
            conn.exec_driver_sql(sql["outputs"], rows.outputs(eid, seq)[0])
    return n / (time.perf_counter() - start)


def ancestors_ms(store: LineageStore, n_families: int, n_queries: int) -> tuple[float, float, int]:
    rng = random.Random(0)
    ids = [example_id(rng.randrange(n_families), rng.randrange(2)) for _ in range(n_queries + 20)]
    for rid in ids[:20]:  # warm the pool and the caches
        queries.ancestors(store, rid, max_depth=6)
    times, depth = [], 0
    for rid in ids[20:]:
        start = time.perf_counter()
        rows = queries.ancestors(store, rid, max_depth=6)
        times.append((time.perf_counter() - start) * 1000)
        depth = max(depth, max(r["depth"] for r in rows))
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], depth


def relax_durability(store: LineageStore) -> None:
    """No flush to disk per commit from now on: SQLite synchronous=NORMAL, PostgreSQL
    synchronous_commit=off. Shows how much of the naive cost is the per-commit flush."""
    sql = "SET synchronous_commit = off" if store.dialect == "postgresql" else "PRAGMA synchronous=NORMAL"

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(sql)
        cur.close()
        if store.dialect == "postgresql":
            dbapi_conn.commit()

    sa.event.listen(store.engine, "connect", on_connect)
    store.engine.dispose()


def ingest(store: LineageStore, backend: str, args: argparse.Namespace, label: str,
           log: Callable[[str], None]) -> tuple[float, float, float]:
    """Best-of-``rounds`` rates (records/s) of the bulk path and of the naive baseline, and the
    bulk path's best records per CPU-second."""
    naive_n = args.naive if backend == "sqlite" else args.naive // 2
    bulk = naive = cpu = 0.0
    for rnd in range(args.rounds):
        naive = max(naive, naive_rate(store, naive_n, f"{label}{rnd}"))
        wall, per_cpu = bulk_rate(store, args.ingest, args.batch, f"{label}{rnd}")
        bulk, cpu = max(bulk, wall), max(cpu, per_cpu)
        log(f"{backend} {label} round {rnd}: bulk {bulk:,.0f}/s, naive {naive:,.0f}/s (best so far)")
    return bulk, naive, cpu


def run_backend(backend: str, args: argparse.Namespace, tmp: Path,
                log: Callable[[str], None]) -> list[list[str]]:
    rows: list[list[str]] = []
    flush = "fsync per commit" if backend == "sqlite" else "synchronous_commit on"
    relaxed = "synchronous=NORMAL" if backend == "sqlite" else "synchronous_commit off"
    with store_for(backend, tmp, "ingest") as store:
        store.create_run("ingest", config={}, config_hash="b", code_version="b", loop="bench")
        bulk, naive, cpu = ingest(store, backend, args, "durable", log)
    with store_for(backend, tmp, "relaxed") as store:  # a fresh store of the same size
        store.create_run("ingest", config={}, config_hash="b", code_version="b", loop="bench")
        relax_durability(store)
        bulk_r, naive_r, _ = ingest(store, backend, args, "relaxed", log)
    target = ">= 20x, >= 50,000/s" if backend == "sqlite" else ">= 20x"
    ok = bulk / naive >= 20 and (backend != "sqlite" or bulk >= 50_000)
    rows.append([backend, f"bulk ingest, records/s (store settings: {flush})", f"{bulk:,.0f}",
                 f"naive {naive:,.0f}", f"{bulk / naive:,.1f}x", target, "yes" if ok else "NO"])
    rows.append([backend, f"bulk ingest, records/s ({relaxed}, for reference)", f"{bulk_r:,.0f}",
                 f"naive {naive_r:,.0f}", f"{bulk_r / naive_r:,.1f}x", "", ""])
    if backend == "sqlite":  # all of SQLite's work is in this process: CPU time shows it without the load
        rows.append([backend, "bulk ingest, records per CPU-second of the writer (for reference)",
                     f"{cpu:,.0f}", "", "", "", ""])
    with store_for(backend, tmp, "million") as store:
        start = time.perf_counter()
        families = build_million(store, args.records)
        built = time.perf_counter() - start
        log(f"{backend}: built {families * FAMILY:,} records in {built:.0f} s")
        median, p95, depth = ancestors_ms(store, families, args.queries)
        log(f"{backend}: ancestors depth {depth}: median {median:.2f} ms, p95 {p95:.2f} ms")
    rows.append([backend, f"ancestors to depth {depth}, {families * FAMILY:,} records, ms",
                 f"median {median:.2f}", f"p95 {p95:.2f}", "", "<= 10 ms", "yes" if median <= 10 else "NO"])
    return rows


NOTES = """Notes. Rates are the best of 3 rounds on a machine shared with other test runs, so wall-clock
rates are lower than the writer's CPU allows; the "records per CPU-second" row is the SQLite rate
with the load taken out (all of SQLite's work happens in the writing process). Per record, about
7 us go to building rows from pydantic records (model dump, canonical JSON, sha256 content hash)
and about 11 us to SQLite B-tree inserts (records, edges, outputs) and the commit (issue 19's
profile: 2026-12-03, about 56,000-60,000 records per CPU-second on a lightly loaded machine, so
the 50,000/s target holds only without much load). The 20x ratio is against a naive writer that
pays the store's flush per commit; where that flush is cheap (an idle disk) the ratio falls
below 20x; with the flush turned off, batching alone gains 4-7x.
"""


HEADER = ["backend", "measure", "value", "baseline (same run)", "ratio", "target", "met"]


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lineage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--records", type=int, default=1_000_000, help="size of the ancestors store")
    parser.add_argument("--ingest", type=int, default=50_000, help="records written by the bulk path")
    parser.add_argument("--batch", type=int, default=5_000, help="records per write_records call")
    parser.add_argument("--naive", type=int, default=2_000, help="records written one at a time (SQLite)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="ingest rounds; the best of each is kept")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a measurement")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.ingest, args.batch, args.naive, args.queries = 20_000, 5_000, 1_000, 100, 30
        args.rounds = 1
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-lineage-") as tmp:
        for backend in args.backends.split(","):
            rows += run_backend(backend.strip(), args, Path(tmp), lambda m: print(m, file=sys.stderr))
    table = markdown(rows)
    print(table)
    if not args.quick and not args.no_write:
        RESULTS.write_text(
            "# Lineage store benchmark\n\nMeasured by `python -m bench.lineage` on "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({os.cpu_count()} cores shared with other "
            f"work, load average {os.getloadavg()[0]:.1f} at the end; SQLite "
            f"{sa.__version__ and __import__('sqlite3').sqlite_version}, PostgreSQL on 127.0.0.1). Ingest: "
            f"{args.ingest:,} responses in batches of {args.batch:,}; naive: one record per transaction.\n\n"
            + table + "\n\n" + NOTES)
    return 0
