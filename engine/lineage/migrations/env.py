"""Alembic environment of the lineage store.

What it is: the glue Alembic runs to migrate a store; the store passes an open connection in
``config.attributes["connection"]`` (engine/lineage/migrate.py). What it is not: a standalone
``alembic.ini`` setup; the store migrates itself on open, so nobody runs ``alembic`` by hand.
"""

from __future__ import annotations

from alembic import context

from engine.lineage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the store drives migrations
    raise RuntimeError("the lineage migrations run through LineageStore.open, not the alembic CLI")
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
