"""Read-only SQL against a lineage store, enforced by the database, not by parsing the SQL.

What it is: ``run_readonly_sql(url, sql, timeout_s=..., max_rows=...)`` and ``render_rows`` (JSON,
CSV). SQLite opens the file with ``mode=ro`` and ``PRAGMA query_only``, allows no attached
database, and installs an authorizer that lets a statement prepare only if it reads: SELECT,
READ, FUNCTION, RECURSIVE and a short list of PRAGMAs that only read (never one given a value);
ATTACH, DETACH, VACUUM (INTO), INSERT/UPDATE/DELETE, CREATE/DROP/ALTER (temp objects too),
transactions and every other PRAGMA are refused before anything runs. A progress handler stops
the statement at its deadline. PostgreSQL runs the statement as a cursor (``DECLARE ... CURSOR
FOR``, so only a query: SELECT, WITH, VALUES or TABLE; no COPY, DO or SET) in a ``SET TRANSACTION
READ ONLY`` transaction with ``SET LOCAL statement_timeout``, always rolled back, through the
extended protocol, so one string cannot smuggle a ``COMMIT; DELETE ...`` after the SELECT. Both
fetch at most ``max_rows`` rows. Refusals raise :class:`ReadOnlyViolation`, one line each.
What it is not: a query builder or a way to change the store; the table output (engine/cli).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from engine.lineage.connect import describe_error, first_line, make_engine, parse_url, safe_url
from engine.lineage.errors import ReadOnlyViolation, StoreError
from engine.lineage.migrate import check_revision, current_revision, needs_upgrade

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_ROWS = 10_000
FORMATS = ("table", "json", "csv")
PROGRESS_STEPS = 1_000  # SQLite VM steps between two looks at the clock
PG_CURSOR = "lineage_sql"
WRITE_HINTS = ("readonly", "read-only", "read only", "query_only")

# PRAGMAs that only read and whose argument, if any, names a table or an index.
PRAGMAS_NAMING = frozenset({
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check",
})
# PRAGMAs that read a setting when given no argument (and would set it when given one).
PRAGMAS_READING = frozenset({
    "database_list", "collation_list", "function_list", "module_list", "pragma_list",
    "compile_options", "user_version", "schema_version", "application_id", "data_version",
    "page_count", "page_size", "freelist_count", "encoding", "foreign_keys",
})
DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer"})
SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"})
TEMP_SCHEMA_TABLES = frozenset({"sqlite_temp_master", "sqlite_temp_schema"})

ACTION_NAMES: dict[int, str] = {
    sqlite3.SQLITE_CREATE_INDEX: "CREATE INDEX", sqlite3.SQLITE_CREATE_TABLE: "CREATE TABLE",
    sqlite3.SQLITE_CREATE_TEMP_INDEX: "CREATE TEMP INDEX",
    sqlite3.SQLITE_CREATE_TEMP_TABLE: "CREATE TEMP TABLE",
    sqlite3.SQLITE_CREATE_TEMP_TRIGGER: "CREATE TEMP TRIGGER",
    sqlite3.SQLITE_CREATE_TEMP_VIEW: "CREATE TEMP VIEW", sqlite3.SQLITE_CREATE_TRIGGER: "CREATE TRIGGER",
    sqlite3.SQLITE_CREATE_VIEW: "CREATE VIEW", sqlite3.SQLITE_DELETE: "DELETE",
    sqlite3.SQLITE_DROP_INDEX: "DROP INDEX", sqlite3.SQLITE_DROP_TABLE: "DROP TABLE",
    sqlite3.SQLITE_DROP_TEMP_INDEX: "DROP TEMP INDEX", sqlite3.SQLITE_DROP_TEMP_TABLE: "DROP TEMP TABLE",
    sqlite3.SQLITE_DROP_TEMP_TRIGGER: "DROP TEMP TRIGGER", sqlite3.SQLITE_DROP_TEMP_VIEW: "DROP TEMP VIEW",
    sqlite3.SQLITE_DROP_TRIGGER: "DROP TRIGGER", sqlite3.SQLITE_DROP_VIEW: "DROP VIEW",
    sqlite3.SQLITE_INSERT: "INSERT", sqlite3.SQLITE_PRAGMA: "PRAGMA", sqlite3.SQLITE_READ: "READ",
    sqlite3.SQLITE_SELECT: "SELECT", sqlite3.SQLITE_TRANSACTION: "TRANSACTION",
    sqlite3.SQLITE_UPDATE: "UPDATE", sqlite3.SQLITE_ATTACH: "ATTACH", sqlite3.SQLITE_DETACH: "DETACH",
    sqlite3.SQLITE_ALTER_TABLE: "ALTER TABLE", sqlite3.SQLITE_REINDEX: "REINDEX",
    sqlite3.SQLITE_ANALYZE: "ANALYZE", sqlite3.SQLITE_CREATE_VTABLE: "CREATE VIRTUAL TABLE",
    sqlite3.SQLITE_DROP_VTABLE: "DROP VIRTUAL TABLE", sqlite3.SQLITE_FUNCTION: "FUNCTION",
    sqlite3.SQLITE_SAVEPOINT: "SAVEPOINT", sqlite3.SQLITE_RECURSIVE: "RECURSIVE",
}
ALWAYS_ALLOWED = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})
# Statements that are not queries: a PostgreSQL syntax error at one of these, as the first word,
# means the statement was refused for not being a query (DECLARE CURSOR takes only queries).
PG_COMMANDS = frozenset({
    "ABORT", "ALTER", "ANALYZE", "BEGIN", "CALL", "CHECKPOINT", "CLOSE", "CLUSTER", "COMMENT",
    "COMMIT", "COPY", "CREATE", "DEALLOCATE", "DECLARE", "DELETE", "DISCARD", "DO", "DROP", "END",
    "EXECUTE", "EXPLAIN", "FETCH", "GRANT", "IMPORT", "INSERT", "LISTEN", "LOAD", "LOCK", "MERGE",
    "MOVE", "NOTIFY", "PREPARE", "REASSIGN", "REFRESH", "REINDEX", "RELEASE", "RESET", "REVOKE",
    "ROLLBACK", "SAVEPOINT", "SECURITY", "SET", "SHOW", "START", "TRUNCATE", "UNLISTEN", "UPDATE",
    "VACUUM",
})
_COMMENTS = re.compile(r"\s+|--[^\n]*(?:\n|$)|/\*.*?\*/", re.S)
_SCHEMA_VERB = re.compile(r"(CREATE|DROP|ALTER)(\s+(?:TEMP|TEMPORARY|UNIQUE|VIRTUAL))?"
                          r"(\s+(?:TABLE|VIEW|INDEX|TRIGGER))?\b", re.I)
_NEAR = re.compile(r'syntax error at or near "([^"]*)"')


Rows = list[tuple[object, ...]]
FetchMany = Callable[[int], Sequence[Sequence[object]]]  # a DB-API cursor's fetchmany


@dataclass
class SqlResult:
    columns: list[str]
    rows: Rows
    truncated: bool


def run_readonly_sql(url: str, sql: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                     max_rows: int = DEFAULT_MAX_ROWS) -> SqlResult:
    """Run one statement read-only; at most ``max_rows`` rows come back (``truncated`` says more
    were there) and the statement is stopped after ``timeout_s`` seconds."""
    if not sql.strip():
        raise StoreError("no SQL statement given")
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise StoreError(f"lineage sql: --timeout must be a positive number of seconds, not {timeout_s:g}")
    if max_rows < 1:
        raise StoreError(f"lineage sql: --max-rows must be at least 1, not {max_rows}")
    engine = make_engine(url, read_only=True, must_exist=True)
    try:
        if engine.dialect.name == "postgresql":  # check only: a read-only command never migrates
            needs_upgrade(engine, where=safe_url(parse_url(url)), create=False)
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                _check_sqlite_store(conn, url)
                columns, rows = _run_sqlite(conn, url, sql, timeout_s, max_rows)
            else:
                columns, rows = _run_postgres(conn, url, sql, timeout_s, max_rows)
            conn.rollback()
    except SQLAlchemyError as exc:
        raise _explain(exc, url) from None
    finally:
        engine.dispose()
    return SqlResult(columns, rows[:max_rows], len(rows) > max_rows)


def _check_sqlite_store(conn: Connection, url: str) -> None:
    check_revision(current_revision(conn), safe_url(parse_url(url)), create=False)


@dataclass
class SqliteGuard:
    """The authorizer and progress handler of one statement: what it refused, whether it ran out
    of time."""

    sql: str
    deadline: float
    refused: str | None = None
    timed_out: bool = False
    selecting: bool = field(default=False, repr=False)

    def authorize(self, action: int, arg1: str | None, arg2: str | None, _db: str | None,
                  _source: str | None) -> int:
        if action in ALWAYS_ALLOWED:
            self.selecting = self.selecting or action == sqlite3.SQLITE_SELECT
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() not in DENIED_FUNCTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and _reading_pragma(arg1, arg2):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and self.selecting and arg1 in SCHEMA_TABLES:
            # SQLite asks this of a SELECT from an eponymous virtual table (json_each,
            # pragma_table_info): it declares the table's columns, it writes nothing.
            return sqlite3.SQLITE_OK
        if self.refused is None:
            self.refused = _label(self.sql, action, arg1, arg2)
        return sqlite3.SQLITE_DENY

    def progress(self) -> int:
        if time.monotonic() > self.deadline:
            self.timed_out = True
            return 1  # non-zero interrupts the statement
        return 0


def _reading_pragma(name: str | None, arg: str | None) -> bool:
    key = (name or "").lower()
    return key in PRAGMAS_NAMING or (key in PRAGMAS_READING and arg is None)


def _first_words(sql: str) -> str:
    """The statement without its leading whitespace and comments."""
    pos = 0
    while match := _COMMENTS.match(sql, pos):
        pos = match.end()
    return sql[pos:]


def _label(sql: str, action: int, arg1: str | None, arg2: str | None) -> str:
    """What a refused authorizer action is, in the words of SQL."""
    head = _first_words(sql)
    if action == sqlite3.SQLITE_ATTACH and head[:6].upper() == "VACUUM":
        return "VACUUM INTO" if arg1 else "VACUUM"
    if action == sqlite3.SQLITE_PRAGMA:
        return f"PRAGMA {arg1}" + (f"={arg2}" if arg2 is not None else "")
    if action == sqlite3.SQLITE_FUNCTION:
        return f"function {arg2}()"
    if action == sqlite3.SQLITE_TRANSACTION:
        return arg1 or "a transaction"
    if action == sqlite3.SQLITE_SAVEPOINT:
        return {"BEGIN": "SAVEPOINT", "ROLLBACK": "ROLLBACK TO"}.get(arg1 or "", arg1 or "SAVEPOINT")
    if action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE):
        if arg1 in SCHEMA_TABLES:  # a change of the schema: the statement's own words name it
            verb = _SCHEMA_VERB.match(head)
            if verb:
                return " ".join(verb.group(0).upper().replace("TEMPORARY", "TEMP").split())
            word = re.match(r"[A-Za-z]+", head)
            if word:  # ANALYZE writes its statistics tables
                return word.group(0).upper()
            verbs = {sqlite3.SQLITE_INSERT: "CREATE", sqlite3.SQLITE_DELETE: "DROP"}
            return verbs.get(action, "ALTER") + (" TEMP" if arg1 in TEMP_SCHEMA_TABLES else "")
        into = {sqlite3.SQLITE_INSERT: "into", sqlite3.SQLITE_UPDATE: "of"}.get(action, "from")
        return f"{ACTION_NAMES[action]} {into} {arg1}"
    return ACTION_NAMES.get(action, f"authorizer action {action}")


def _refused(what: str) -> ReadOnlyViolation:
    return ReadOnlyViolation(f"lineage sql: refused: {what} is not allowed (read-only)")


def _timed_out(timeout_s: float) -> StoreError:
    return StoreError(f"lineage sql: the statement ran past --timeout {timeout_s:g} s and was stopped")


def _run_sqlite(conn: Connection, url: str, sql: str, timeout_s: float,
                max_rows: int) -> tuple[list[str], Rows]:
    raw = conn.connection.driver_connection
    if not isinstance(raw, sqlite3.Connection):
        raise StoreError(f"lineage sql: unexpected SQLite driver {type(raw).__name__}")
    guard = SqliteGuard(sql, time.monotonic() + timeout_s)
    raw.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)  # no second database, whatever asks for one
    raw.set_authorizer(guard.authorize)
    raw.set_progress_handler(guard.progress, PROGRESS_STEPS)
    try:
        cur = raw.cursor()
        try:
            cur.execute(sql)
            return _fetch(cur.description, cur.fetchmany, max_rows)
        finally:
            cur.close()
    except sqlite3.Error as exc:
        msg = first_line(exc)
        if guard.refused is not None:
            raise _refused(guard.refused) from None
        if guard.timed_out:
            raise _timed_out(timeout_s) from None
        if "too many attached databases" in msg:
            raise _refused("ATTACH") from None
        raise _explain_text(msg, url) from None
    finally:
        raw.set_authorizer(None)
        raw.set_progress_handler(None, 0)


def _run_postgres(conn: Connection, url: str, sql: str, timeout_s: float,
                  max_rows: int) -> tuple[list[str], Rows]:
    import psycopg

    raw = conn.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise StoreError(f"lineage sql: unexpected PostgreSQL driver {type(raw).__name__}")
    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, math.ceil(timeout_s * 1000))}")
    try:  # a server-side cursor: DECLARE takes one query only, and rows come max_rows + 1 at most
        with raw.cursor(name=PG_CURSOR) as cur:
            cur.execute(sql)
            return _fetch(cur.description, cur.fetchmany, max_rows)
    except psycopg.Error as exc:
        raise _explain_postgres(exc, sql, url, timeout_s) from None


def _fetch(description: Sequence[Sequence[object]] | None, fetchmany: FetchMany,
           max_rows: int) -> tuple[list[str], Rows]:
    if not description:
        return [], []
    return [str(d[0]) for d in description], [tuple(r) for r in fetchmany(max_rows + 1)]


def _explain_postgres(exc: Exception, sql: str, url: str, timeout_s: float) -> StoreError:
    state = getattr(exc, "sqlstate", None)
    msg = first_line(exc)
    if state == "57014":  # query_canceled: our statement_timeout
        return _timed_out(timeout_s)
    if state == "25006":  # read_only_sql_transaction
        return ReadOnlyViolation(f"lineage sql: refused: {msg} (read-only)")
    if state == "0A000" and "data-modifying" in msg:
        return _refused("a data-modifying statement in WITH")
    near = _NEAR.search(msg)
    word = _first_words(sql).split(None, 1)[0].upper() if sql.strip() else ""
    if state == "42601" and near and near.group(1).upper() == word and word in PG_COMMANDS:
        return ReadOnlyViolation(f"lineage sql: refused: {word} is not allowed (read-only: "
                                 "only a query runs, SELECT, WITH, VALUES or TABLE)")
    return _explain_text(msg, url)


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


def _unique(columns: list[str]) -> list[str]:
    """Column names as JSON keys: a repeated name gets ``_2``, ``_3``..."""
    seen: dict[str, int] = {}
    names = []
    for col in columns:
        seen[col] = seen.get(col, 0) + 1
        names.append(col if seen[col] == 1 else f"{col}_{seen[col]}")
    return names


def _plain(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def render_rows(result: SqlResult, fmt: str) -> str:
    """The rows as JSON (a list of objects, one per row) or CSV (a header, then the rows)."""
    if fmt == "json":
        keys = _unique(result.columns)
        rows = [{k: _plain(v) for k, v in zip(keys, row, strict=True)} for row in result.rows]
        return json.dumps(rows, ensure_ascii=False, default=str, indent=1) + "\n"
    if fmt == "csv":
        if not result.columns:
            return ""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(result.columns)
        for row in result.rows:
            writer.writerow(["" if v is None else _plain(v) for v in row])
        return buf.getvalue()
    raise StoreError(f"lineage sql: unknown format {fmt!r} (use one of: {', '.join(FORMATS)})")
