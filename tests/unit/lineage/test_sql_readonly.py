"""``autodidact lineage sql`` is read-only in fact: SQLite's authorizer refuses every statement
that is not a read (and no file appears for ATTACH or VACUUM INTO), PostgreSQL runs only a query
in a read-only transaction; both stop at --timeout, cut at --max-rows and print table, JSON or CSV.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.lineage import app
from engine.lineage import LineageStore
from engine.records import Record

runner = CliRunner()
SQLITE = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
POSTGRES = pytest.mark.parametrize("store_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                                   indirect=True)
FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["sql", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    return lines[0]


@pytest.fixture
def location(store: LineageStore, graph: dict[str, Record]) -> str:
    """The store as the CLI takes it: the run directory for SQLite, the URL for PostgreSQL."""
    url = str(store.url)
    return str(Path(url.removeprefix("sqlite:///")).parent) if url.startswith("sqlite") else url


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def snapshot(store: LineageStore) -> list[object]:
    """Row counts of the main tables and the schema: what a write would change."""
    with store.engine.connect() as conn:
        counts = [int(conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one())
                  for t in ("runs", "records", "edges", "outputs", "stage_executions")]
        if store.engine.dialect.name == "sqlite":
            schema = conn.exec_driver_sql("SELECT type, name, sql FROM sqlite_master ORDER BY name").all()
        else:
            schema = conn.exec_driver_sql("SELECT table_name FROM information_schema.tables "
                                          "WHERE table_schema = current_schema() ORDER BY 1").all()
    return [counts, [tuple(r) for r in schema]]


@SQLITE
@pytest.mark.parametrize(("statement", "what"), [
    ("ATTACH DATABASE '{elsewhere}/attached.db' AS e", "ATTACH"),
    ("VACUUM INTO '{elsewhere}/copy.db'", "VACUUM INTO"),
    ("PRAGMA writable_schema=1", "PRAGMA writable_schema=1"),
    ("INSERT INTO runs (id) VALUES ('x')", "INSERT into runs"),
    ("CREATE TEMP TABLE scratch (x)", "CREATE TEMP TABLE"),
    ("DROP TABLE edges", "DROP TABLE"),
], ids=["attach", "vacuum-into", "pragma-value", "insert", "temp-table", "drop"])
def test_sqlite_refuses(location: str, store: LineageStore, tmp_path: Path, statement: str,
                        what: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before, state = files(tmp_path), snapshot(store)
    line = one_line_error(*invoke(location, statement.format(elsewhere=elsewhere)))
    assert line == f"error: lineage sql: refused: {what} is not allowed (read-only)"
    assert files(tmp_path) == before and not any(elsewhere.iterdir())
    assert snapshot(store) == state


@SQLITE
@pytest.mark.parametrize("statement", [
    "PRAGMA table_info(records)", "PRAGMA index_list(edges)", "PRAGMA user_version",
    "SELECT name FROM pragma_table_info('records')", "SELECT key, value FROM json_each('[1, 2]')",
    f"{FOREVER} SELECT x FROM c LIMIT 3",
])
def test_sqlite_reads_run(location: str, statement: str) -> None:
    code, out, err = invoke(location, statement, "--format", "json")
    assert code == 0, err
    assert isinstance(json.loads(out), list)


@SQLITE
def test_sqlite_pragma_given_a_value_is_refused_even_if_it_reads(location: str) -> None:
    line = one_line_error(*invoke(location, "PRAGMA user_version = 7"))
    assert "refused: PRAGMA user_version=7" in line


@POSTGRES
@pytest.mark.parametrize(("statement", "needle"), [
    ("INSERT INTO runs (id) VALUES ('x')", "refused: INSERT is not allowed"),
    ("COPY (SELECT 1) TO '{elsewhere}/copy.csv'", "refused: COPY is not allowed"),
    ("WITH d AS (DELETE FROM records RETURNING id) SELECT * FROM d", "refused: a data-modifying"),
    ("SELECT nextval('ro_probe')", "refused: cannot execute nextval() in a read-only transaction"),
    ("DROP TABLE edges", "refused: DROP is not allowed"),
    ("SELECT 1; DELETE FROM records", "multiple commands"),
], ids=["insert", "copy-to-file", "with-delete", "read-only-transaction", "drop", "two-statements"])
def test_postgres_refuses(location: str, store: LineageStore, tmp_path: Path, statement: str,
                          needle: str) -> None:
    with store.engine.begin() as conn:  # a sequence: nextval writes even inside a SELECT
        conn.exec_driver_sql("CREATE SEQUENCE ro_probe")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = snapshot(store)
    line = one_line_error(*invoke(location, statement.format(elsewhere=elsewhere)))
    assert needle in line
    assert snapshot(store) == state and not any(elsewhere.iterdir())
    with store.engine.connect() as conn:  # the sequence was not advanced
        assert conn.exec_driver_sql("SELECT last_value, is_called FROM ro_probe").one() == (1, False)


def test_timeout_stops_a_statement_that_runs_forever(location: str) -> None:
    started = time.monotonic()
    line = one_line_error(*invoke(location, f"{FOREVER} SELECT count(*) FROM c", "--timeout", "0.5"))
    assert line == "error: lineage sql: the statement ran past --timeout 0.5 s and was stopped"
    assert time.monotonic() - started < 30  # generous: only "it stopped", not how fast


def test_max_rows_cuts_and_says_so(location: str) -> None:
    code, out, err = invoke(location, f"{FOREVER} SELECT x FROM c", "--max-rows", "5", "--format", "csv")
    assert code == 0, err
    assert list(csv.reader(io.StringIO(out))) == [["x"], ["1"], ["2"], ["3"], ["4"], ["5"]]
    assert err.strip().splitlines() == [
        "lineage sql: showing the first 5 rows; more were cut (raise --max-rows)"]
    code, out, err = invoke(location, f"{FOREVER} SELECT x FROM c LIMIT 5", "--max-rows", "5", "-f", "csv")
    assert code == 0 and len(out.splitlines()) == 6 and err == ""


def test_formats(location: str, graph: dict[str, Record]) -> None:
    query = "SELECT id, kind FROM records ORDER BY id"
    expected = sorted((r.id, r.kind) for r in graph.values())
    code, out, err = invoke(location, query, "--format", "json")
    assert code == 0, err
    assert [(row["id"], row["kind"]) for row in json.loads(out)] == expected
    code, out, err = invoke(location, query, "--format", "csv")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["id", "kind"] and [tuple(r) for r in rows[1:]] == expected
    long = "x" * 300
    code, out, err = invoke(location, f"SELECT '{long}' AS long_value, 'short' AS other")
    assert code == 0, err
    assert any(long in line and "short" in line for line in out.splitlines()), out  # piped: no wrap
    one_line_error(*invoke(location, "SELECT 1", "--format", "xml"))
