"""Migrations, SQLite settings and the bad inputs that must fail in one line without changing
the store: missing store, corrupt file, newer schema, unreachable PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from engine.lineage import LineageStore, SchemaTooNew, StoreError, StoreNotFound
from engine.lineage.migrate import head_revision
from engine.lineage.schema import metadata
from engine.records import Seed


def test_migrations_match_the_models(store: LineageStore) -> None:
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head_revision()
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_sqlite_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    with LineageStore.open(f"sqlite:///{tmp_path / 'l.sqlite'}") as store:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        store.create_run("r", config={}, config_hash="h", code_version="v", loop="l")
        with pytest.raises(StoreError, match="(?i)foreign key"):
            store.write_records("r", 0, "exec-unknown", [Seed(text="s")])


def test_foreign_keys_hold_on_both_backends(store: LineageStore) -> None:
    with pytest.raises(StoreError):
        store.start_stage("no-run", 0, "x", kind="generator", stage="s", plugin="p", plugin_version="1",
                          options={}, model_version=None)
    assert store.runs() == []


def test_newer_schema_is_refused_and_left_alone(store_url: str) -> None:
    with LineageStore.open(store_url) as store:
        store.create_run("r", config={}, config_hash="h", code_version="v", loop="l")
        with store.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(SchemaTooNew, match="9999_future.*newer") as info:
        LineageStore.open(store_url)
    assert "\n" not in str(info.value)
    engine = sa.create_engine(store_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "9999_future"
        assert conn.exec_driver_sql("SELECT count(*) FROM runs").scalar() == 1
    engine.dispose()


def test_missing_store_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nope.sqlite"
    with pytest.raises(StoreNotFound, match="nope.sqlite"):
        LineageStore.open(f"sqlite:///{path}", create=False)
    assert not path.exists()
    with pytest.raises(StoreNotFound, match="lineage.sqlite is missing"):
        LineageStore.for_run_dir(tmp_path)
    assert not (tmp_path / "lineage.sqlite").exists()
    with LineageStore.for_run_dir(tmp_path, create=True) as store:
        assert store.runs() == []
    LineageStore.for_run_dir(tmp_path).close()


def test_plain_sqlite_database_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x int)")
    engine.dispose()
    before = path.read_bytes()
    with pytest.raises(StoreNotFound, match="not a lineage store"):
        LineageStore.open(f"sqlite:///{path}", create=False)
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", [b"this is not a database" * 100,
                                     b"SQLite format 3\x00" + b"\xff" * 4000])
def test_corrupt_sqlite_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "lineage.sqlite"
    path.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    for create in (False, True):
        with pytest.raises(StoreError, match="lineage.sqlite") as info:
            LineageStore.open(f"sqlite:///{path}", create=create)
        assert "\n" not in str(info.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lineage.sqlite"]


def test_unreachable_postgres_is_one_line() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2"
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL at .*127.0.0.1:1") as info:
        LineageStore.open(url)
    assert "\n" not in str(info.value)


def test_unsupported_and_malformed_urls() -> None:
    with pytest.raises(StoreError, match="unsupported"):
        LineageStore.open("mysql://x@localhost/db")
    with pytest.raises(StoreError, match="not a database URL"):
        LineageStore.open("::not a url::")


@pytest.mark.postgres
def test_concurrent_openers_migrate_once(pg_url: str) -> None:
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            LineageStore.open(pg_url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
