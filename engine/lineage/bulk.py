"""Bulk, idempotent insertion of record rows: the store's hot write path, per backend.

What it is: ``insert_rows(conn, rows, outputs)``. SQLite: one ``executemany`` of ``INSERT ... ON
CONFLICT DO NOTHING`` per table. PostgreSQL: ``COPY`` into session-temporary staging tables,
then one ``INSERT ... SELECT ... ORDER BY key ON CONFLICT DO NOTHING`` per table (the fixed key
order keeps concurrent writers from deadlocking). Returns how many outputs were new. What it is
not: the public API (LineageStore.write_records) or row building (rows.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from engine.lineage.rows import EDGE_COLUMNS, OUTPUT_COLUMNS, RECORD_COLUMNS, RecordRows

TABLES = (("records", RECORD_COLUMNS, "id"), ("edges", EDGE_COLUMNS, "child_id, parent_id, role"),
          ("outputs", OUTPUT_COLUMNS, "execution_id, record_id"))


def insert_rows(conn: Connection, rows: RecordRows, outputs: list[tuple[Any, ...]]) -> int:
    """Insert records, edges and outputs in the caller's transaction; returns new outputs."""
    data = {"records": rows.records, "edges": rows.edges, "outputs": outputs}
    if conn.dialect.name == "postgresql":
        return _postgres(conn, data)
    return _sqlite(conn, data)


def _sqlite(conn: Connection, data: dict[str, list[tuple[Any, ...]]]) -> int:
    new = 0
    for table, columns, _ in TABLES:
        if not data[table]:
            continue
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT DO NOTHING"
        new = conn.exec_driver_sql(sql, data[table]).rowcount
    return int(new)


def _postgres(conn: Connection, data: dict[str, list[tuple[Any, ...]]]) -> int:
    raw: Any = conn.connection.driver_connection
    new = 0
    for table, columns, key in TABLES:
        if not data[table]:
            continue
        cols = ", ".join(columns)
        staging = f"lineage_staging_{table}"
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} "
                             f"(LIKE {table}) ON COMMIT DELETE ROWS")
        with raw.cursor() as cur, cur.copy(f"COPY {staging} ({cols}) FROM STDIN") as copy:
            for row in data[table]:
                copy.write_row(row)
        result = conn.exec_driver_sql(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {staging} "
                                      f"ORDER BY {key} ON CONFLICT DO NOTHING")
        new = result.rowcount
    return int(new)
