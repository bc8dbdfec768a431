"""Schema migration on open: bring a store to the newest revision, refuse a newer one.

What it is: ``ensure_schema(engine, create=...)`` which reads the store's Alembic revision,
upgrades it to head (under a PostgreSQL advisory lock, so concurrent openers do not race),
raises :class:`SchemaTooNew` for a revision this code does not know, and
:class:`StoreNotFound` for an empty database when ``create`` is false. What it is not: the
migrations themselves (engine/lineage/migrations/versions).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from engine.lineage.errors import SchemaTooNew, StoreNotFound

MIGRATIONS = Path(__file__).parent / "migrations"
ADVISORY_LOCK = 0x6C696E65  # "line": serializes migrations of concurrent openers on PostgreSQL


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    head = _script().get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    return {rev.revision for rev in _script().walk_revisions()}


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def check_revision(rev: str | None, where: str, create: bool) -> bool:
    """True when ``rev`` needs an upgrade; raises for a store that must not be touched."""
    if rev is None:
        if not create:
            raise StoreNotFound(f"{where}: not a lineage store (no schema)")
        return True
    if rev not in known_revisions():
        raise SchemaTooNew(f"{where}: lineage schema revision {rev!r} is newer than this autodidact "
                           f"knows (newest known: {head_revision()!r}); upgrade autodidact to read it")
    return rev != head_revision()


def needs_upgrade(engine: Engine, *, where: str, create: bool) -> bool:
    """Whether the store needs migrating; raises for one that must not be touched. Read-only."""
    with engine.connect() as conn:
        return check_revision(current_revision(conn), where, create)


def ensure_schema(engine: Engine, *, where: str, create: bool) -> None:
    """Migrate the store behind ``engine`` to head, or raise a StoreError saying why not."""
    if not needs_upgrade(engine, where=where, create=create):
        return
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK})
        if not check_revision(current_revision(conn), where, create):
            return
        cfg = _config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
