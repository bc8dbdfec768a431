"""The lineage store: every record, its parents and its makers, in SQL (SQLite or PostgreSQL).

What it is: the public names of engine/lineage (the store, its errors, the queries and export
live in submodules). What it is not: imported by ``import engine``; SQLAlchemy loads only when
the store is used.
"""

from __future__ import annotations

from engine.lineage.errors import SchemaTooNew, StoreError, StoreNotFound, UnknownRecord, UnknownRun
from engine.lineage.store import LineageStore, execution_id_of

__all__ = ["LineageStore", "SchemaTooNew", "StoreError", "StoreNotFound", "UnknownRecord", "UnknownRun",
           "execution_id_of"]
