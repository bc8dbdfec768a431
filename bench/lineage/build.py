"""Fast builder of a synthetic 1,000,000-record lineage store for the ancestors benchmark.

What it is: ``build_million(store, n_records)``, which writes families of SPaR-shaped records
(seed -> task -> 4 responses -> 4 critiques -> 4 refinements -> 2 preference pairs -> 2 training
examples; 18 records, 23 edges each, depth 6 from an example to its seed) straight into the
store's tables: one ``executemany`` transaction on SQLite, ``COPY`` on PostgreSQL. What it is
not: the store's write path (that is measured by the ingest benchmark in run.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from engine.lineage.store import LineageStore

FAMILY = 18
RUN = "bench-1m"
ROLES = ("seeds", "tasks", "actor", "judge", "refiner", "pairs", "sft")


Edge = tuple[str, str, str, int]


def _family(f: int, execs: dict[str, str]) -> Iterator[tuple[tuple[Any, ...], list[Edge]]]:
    """(records row, edges) for every record of family ``f``."""
    def rid(kind: str, i: int = 0) -> str:
        return f"{kind[:4]}-{f:012x}{i:02x}{'0' * 10}"

    def row(kind: str, role: str, i: int, text: str) -> tuple[Any, ...]:
        return (rid(kind, i), kind, RUN, 0, execs[role], None, f"{f:032x}{i:032x}",
                json.dumps({"text": text, "meta": {}}))

    seed, task = rid("seed"), rid("task")
    yield row("seed", "seeds", 0, f"seed {f}"), []
    yield row("task", "tasks", 0, f"task {f}"), [(task, seed, "input", 0)]
    for i in range(4):
        resp, crit, ref = rid("response", i), rid("critique", i), rid("refinement", i)
        yield row("response", "actor", i, f"response {f}/{i}"), [(resp, task, "input", 0)]
        yield row("critique", "judge", i, f"critique {f}/{i}"), [(crit, resp, "judges", 0)]
        yield row("refinement", "refiner", i, f"refinement {f}/{i}"), [(ref, resp, "refines", 0),
                                                                       (ref, crit, "input", 1)]
    for i in range(2):
        pair, ex = rid("preference_pair", i), rid("training_example", i)
        links = [(pair, rid("refinement", 2 * i), "chosen", 0), (pair, rid("response", 2 * i), "rejected", 1)]
        yield row("preference_pair", "pairs", i, f"pair {f}/{i}"), links
        yield row("training_example", "sft", i, f"example {f}/{i}"), [(ex, pair, "input", 0)]


def example_id(f: int, i: int = 0) -> str:
    return f"trai-{f:012x}{i:02x}{'0' * 10}"


REC_COLS = "id, kind, run_id, iteration, execution_id, model_version, content_hash, payload"
EDGE_COLS = "child_id, parent_id, role, pos"
OUT_COLS = "execution_id, record_id, seq, kind"


def build_million(store: LineageStore, n_records: int = 1_000_000) -> int:
    """Fill ``store`` with about ``n_records`` records (whole families); returns the family count."""
    store.create_run(RUN, config={}, config_hash="bench", code_version="bench", loop="bench")
    execs = {role: store.start_stage(RUN, 0, role, kind="generator", stage=role, plugin="bench",
                                     plugin_version="0", options={}, model_version=None) for role in ROLES}
    n_families = max(1, n_records // FAMILY)
    step = 20_000
    raw = store.engine.raw_connection()
    try:
        for start in range(0, n_families, step):
            records, edges, outputs = _rows_range(start, min(n_families, start + step), execs)
            cur = raw.cursor()
            if store.dialect == "postgresql":
                for table, cols, rows in (("records", REC_COLS, records), ("edges", EDGE_COLS, edges),
                                          ("outputs", OUT_COLS, outputs)):
                    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                        for r in rows:
                            copy.write_row(r)
            else:
                cur.executemany(f"INSERT INTO records ({REC_COLS}) VALUES (?,?,?,?,?,?,?,?)", records)
                cur.executemany(f"INSERT INTO edges ({EDGE_COLS}) VALUES (?,?,?,?)", edges)
                cur.executemany(f"INSERT INTO outputs ({OUT_COLS}) VALUES (?,?,?,?)", outputs)
            cur.close()
            raw.commit()
        cur = raw.cursor()
        cur.execute("ANALYZE")
        cur.close()
        raw.commit()
    finally:
        raw.close()
    return n_families


def _rows_range(start: int, stop: int, execs: dict[str, str]) -> tuple[list[tuple[Any, ...]], ...]:
    records, edges, outputs = [], [], []
    for f in range(start, stop):
        for seq, (rec, links) in enumerate(_family(f, execs)):
            records.append(rec)
            edges.extend(links)
            outputs.append((rec[4], rec[0], f * FAMILY + seq, rec[1]))
    return records, edges, outputs
