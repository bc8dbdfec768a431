"""Read-only SQL against a lineage store, enforced by the database, not by parsing the SQL.

What it is: ``run_readonly_sql(url, sql)``. SQLite opens the file with ``mode=ro`` and
``PRAGMA query_only``; PostgreSQL runs the statement in a ``SET TRANSACTION READ ONLY``
transaction that is always rolled back, through the extended protocol (a prepared statement), so
one string cannot smuggle a ``COMMIT; DELETE ...`` after the SELECT. SQLite's driver likewise
refuses more than one statement. What it is not: a query builder or a way to change the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from engine.lineage.connect import describe_error, first_line, make_engine, parse_url, safe_url
from engine.lineage.errors import ReadOnlyViolation, StoreError
from engine.lineage.migrate import check_revision, current_revision, needs_upgrade

WRITE_HINTS = ("readonly", "read-only", "read only", "query_only")


@dataclass
class SqlResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


def run_readonly_sql(url: str, sql: str, *, limit: int = 1000) -> SqlResult:
    """Run one statement read-only; at most ``limit`` rows come back (``truncated`` says so)."""
    if not sql.strip():
        raise StoreError("no SQL statement given")
    engine = make_engine(url, read_only=True, must_exist=True)
    try:
        if engine.dialect.name == "postgresql":  # check only: a read-only command never migrates
            needs_upgrade(engine, where=safe_url(parse_url(url)), create=False)
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                _check_sqlite_store(conn, url)
                cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                cur.execute(sql)
            else:
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                cur.execute(sql, prepare=True)
            columns = [d[0] for d in cur.description or []]
            rows = [tuple(r) for r in cur.fetchmany(limit + 1)] if cur.description else []
            conn.rollback()
    except SQLAlchemyError as exc:
        raise _explain(exc, url) from None
    except Exception as exc:  # raw DB-API errors from the driver cursor
        if type(exc).__module__.split(".")[0] in ("sqlite3", "psycopg"):
            raise _explain_text(first_line(exc), url) from None
        raise
    finally:
        engine.dispose()
    return SqlResult(columns, rows[:limit], len(rows) > limit)


def _check_sqlite_store(conn: Connection, url: str) -> None:
    check_revision(current_revision(conn), safe_url(parse_url(url)), create=False)


def _explain(exc: SQLAlchemyError, url: str) -> StoreError:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        msg = first_line(exc.orig)
        if any(h in msg.lower() for h in WRITE_HINTS):
            return _explain_text(msg, url)
    return describe_error(exc, url)


def _explain_text(msg: str, url: str) -> StoreError:
    if any(h in msg.lower() for h in WRITE_HINTS):
        return ReadOnlyViolation(f"lineage sql is read-only; the statement tried to change the store ({msg})")
    return StoreError(f"SQL error: {msg}")
