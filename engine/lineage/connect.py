"""Opening a lineage database: URL resolution, SQLAlchemy engines, SQLite pragmas, and turning
driver errors into one-line :class:`StoreError` messages.

What it is: ``make_engine`` (SQLite file with WAL + foreign keys, in-memory SQLite, PostgreSQL
via psycopg; optionally read-only at the database level), ``resolve_location`` (a run directory
or a URL) and ``describe_error``. What it is not: schema migration (migrate.py) or any query.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from engine.lineage.errors import StoreError, StoreNotFound

STORE_FILE = "lineage.sqlite"
CONNECT_TIMEOUT_S = 10
CACHE_KIB = 64 * 1024  # SQLite page cache of a query connection, and of a store's one writer
# connection (LineageStore._write): random-key index inserts stay in memory. The other pooled
# connections of a store it writes only look records up: a small cache each keeps the driver's
# memory flat however large a streamed stage gets.
READ_CACHE_KIB = 8 * 1024
MMAP_BYTES = 256 * 1024 * 1024
WAL_CHECKPOINT_PAGES = 10_000  # ~40 MB of WAL between checkpoints: fewer rewrites of hot index pages


def resolve_location(location: str | Path) -> str:
    """A SQLAlchemy URL for ``location``: a URL as is, a directory -> its lineage.sqlite, a file."""
    text = str(location)
    if "://" in text:
        return text
    path = Path(text)
    if path.is_dir():
        path = path / STORE_FILE
        if not path.exists():
            raise StoreNotFound(f"no lineage store in {location} ({STORE_FILE} is missing)")
    elif not path.exists():
        raise StoreNotFound(f"no lineage store at {location} (no such file or directory)")
    return f"sqlite:///{path.resolve()}"


def parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r}") from exc


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL, or None for an in-memory database."""
    db = url.database
    if not db or db == ":memory:" or db.startswith("file::memory:"):
        return None
    return Path(db[5:] if db.startswith("file:") else db)


def safe_url(url: URL | str) -> str:
    u = url if isinstance(url, URL) else parse_url(url)
    return u.render_as_string(hide_password=True)


def _json(value: Any) -> str:
    """JSON for config, options and details columns; values JSON lacks (paths...) become strings."""
    return json.dumps(value, ensure_ascii=False, default=str)


def make_engine(url: str, *, read_only: bool = False, must_exist: bool = False) -> Engine:
    """An engine for ``url``. SQLite files get WAL, foreign keys, a busy timeout and, when
    ``read_only``, ``mode=ro`` plus ``PRAGMA query_only``. PostgreSQL read-only is per transaction
    (see readonly.run_readonly_sql)."""
    u = parse_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(u, read_only=read_only, must_exist=must_exist)
    if backend == "postgresql":
        if u.get_driver_name() in ("", "psycopg2"):
            u = u.set(drivername="postgresql+psycopg")
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in u.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        return create_engine(u, connect_args=connect_args, json_serializer=_json, pool_pre_ping=True)
    raise StoreError(f"unsupported lineage database {backend!r} (use sqlite or postgresql): {safe_url(u)}")


def _sqlite_engine(u: URL, *, read_only: bool, must_exist: bool) -> Engine:
    path = sqlite_path(u)
    if path is None:
        engine = create_engine("sqlite://", poolclass=StaticPool, json_serializer=_json,
                               connect_args={"check_same_thread": False})
        wal = False
    else:
        if (must_exist or read_only) and not path.is_file():
            raise StoreNotFound(f"no lineage store at {path} (no such file)")
        if read_only:
            target = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true"
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            target = f"sqlite:///{path}"
        engine = create_engine(target, connect_args={"timeout": 60}, json_serializer=_json)
        wal = not read_only

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute(f"PRAGMA cache_size=-{CACHE_KIB if read_only else READ_CACHE_KIB}")
            if read_only:  # a writer reads little; mapped pages would only add to its resident set
                cur.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            if wal:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")  # batched writes make a flush per commit cheap
                cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            if read_only:
                cur.execute("PRAGMA query_only=ON")
        finally:
            cur.close()

    return engine


def first_line(exc: BaseException) -> str:
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(inner).strip() or type(inner).__name__
    return text.splitlines()[0].strip()


def describe_error(exc: SQLAlchemyError, url: str) -> StoreError:
    """A one-line StoreError for a driver error met while opening or using the store at ``url``."""
    u = parse_url(url)
    msg = first_line(exc)
    if u.get_backend_name() == "sqlite":
        where = sqlite_path(u) or "in-memory store"
        if "not a database" in msg or "malformed" in msg:
            return StoreError(f"{where}: not a valid SQLite lineage store (corrupt file?): {msg}")
        return StoreError(f"{where}: {msg}")
    if "connect" in msg.lower() or "timeout" in msg.lower() or "refused" in msg.lower():
        return StoreError(f"cannot connect to PostgreSQL at {safe_url(u)}: {msg}")
    return StoreError(f"{safe_url(u)}: {msg}")
