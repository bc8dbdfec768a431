"""``autodidact lineage`` through Typer's CliRunner: output, and one-line exit-2 errors that leave
the store unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.lineage import app
from engine.lineage import LineageStore
from engine.records import Record

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, out: str, err: str, needle: str) -> None:
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
    assert "Traceback" not in out + err


@pytest.fixture
def location(store: LineageStore, graph: dict[str, Record]) -> str:
    """The store as the CLI takes it: the run directory for SQLite, the URL for PostgreSQL."""
    url = str(store.url)
    return str(Path(url.removeprefix("sqlite:///")).parent) if url.startswith("sqlite") else url


def fingerprint(store: LineageStore) -> list[int]:
    with store.engine.connect() as conn:
        return [int(conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one())
                for t in ("runs", "records", "edges", "outputs", "stage_executions")]


def test_show_tree_funnel_diff(location: str, graph: dict[str, Record]) -> None:
    code, out, _ = invoke("show", graph["ref"].id, "--store", location)
    assert code == 0 and "refinement" in out and graph["bad"].id in out
    assert "refines" in out and "fixed" in out
    code, out, _ = invoke("tree", graph["ex"].id, "--store", location)
    assert code == 0 and graph["seed"].id in out and "chosen" in out and "rejected" in out
    code, out, _ = invoke("tree", graph["seed"].id, "--down", "--depth", "2", "--store", location)
    assert code == 0 and graph["bad"].id in out and graph["crit"].id not in out
    code, out, _ = invoke("funnel", location)
    assert code == 0 and "refiner" in out and "actor-stage" in out
    code, out, _ = invoke("diff", location, "0", "1")
    assert code == 0 and "seeds" in out


def test_export_and_sql(location: str, graph: dict[str, Record], tmp_path: Path) -> None:
    target = tmp_path / "out" / "data.parquet"
    code, out, _ = invoke("export", location, "--iteration", "0", "--kind", "response", "--format", "parquet",
                          "--output", str(target))
    assert code == 0 and "wrote 2" in out and target.is_file()
    query = "SELECT kind, count(*) AS n FROM records GROUP BY kind ORDER BY kind"
    code, out, _ = invoke("sql", location, query)
    assert code == 0 and "critique" in out and "training_example" in out


@pytest.mark.parametrize("statement", [
    "DELETE FROM records", "UPDATE runs SET status = 'x'", "DROP TABLE edges",
    "SELECT 1; DELETE FROM records", "INSERT INTO runs (id) VALUES ('x')",
])
def test_sql_refuses_writes(location: str, store: LineageStore, statement: str) -> None:
    before = fingerprint(store)
    code, out, err = invoke("sql", location, statement)
    assert_one_line_error(code, out, err, "")
    assert fingerprint(store) == before


def test_bad_inputs_are_one_line(location: str, store: LineageStore, tmp_path: Path) -> None:
    before = fingerprint(store)
    assert_one_line_error(*invoke("show", "resp-doesnotexist", "--store", location), "resp-doesnotexist")
    assert_one_line_error(*invoke("tree", "resp-doesnotexist", "--store", location), "resp-doesnotexist")
    assert_one_line_error(*invoke("funnel", location, "--run-id", "r9"), "r9")
    assert_one_line_error(*invoke("export", location, "-i", "0", "-k", "response", "-f", "csv"), "csv")
    assert_one_line_error(*invoke("sql", location, "SELEC nonsense"), "SQL error")
    assert fingerprint(store) == before


def test_missing_corrupt_and_unreachable_stores(tmp_path: Path) -> None:
    empty = tmp_path / "empty-run"
    empty.mkdir()
    assert_one_line_error(*invoke("funnel", str(empty)), "no lineage store")
    assert_one_line_error(*invoke("sql", str(empty), "SELECT 1"), "no lineage store")
    assert_one_line_error(*invoke("show", "x", "--store", str(tmp_path / "missing")), "no lineage store")
    assert not (empty / "lineage.sqlite").exists()
    bad = tmp_path / "bad-run"
    bad.mkdir()
    (bad / "lineage.sqlite").write_bytes(b"garbage" * 1000)
    digest = hashlib.sha256((bad / "lineage.sqlite").read_bytes()).hexdigest()
    for args in (("funnel", str(bad)), ("sql", str(bad), "SELECT 1"), ("show", "x", "--store", str(bad))):
        assert_one_line_error(*invoke(*args), "lineage.sqlite")
    assert hashlib.sha256((bad / "lineage.sqlite").read_bytes()).hexdigest() == digest
    url = "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2"
    assert_one_line_error(*invoke("funnel", url), "cannot connect to PostgreSQL")
    assert_one_line_error(*invoke("sql", url, "SELECT 1"), "cannot connect to PostgreSQL")
