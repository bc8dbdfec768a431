"""Errors of the lineage store, all user-facing (one-line message, exit code 2 in the CLI).

What it is: the exception types the store and its queries raise for bad input (unknown ids, a
missing or corrupt store, an unreachable database, a schema newer than this code, a write
through the read-only SQL path). What it is not: internal bugs, which keep their tracebacks.
"""

from __future__ import annotations

from engine.errors import UserError


class StoreError(UserError):
    """The lineage store cannot do what was asked; the message names the problem."""


class StoreNotFound(StoreError):
    """No lineage store where one was expected (a run directory without lineage.sqlite)."""


class SchemaTooNew(StoreError):
    """The store was written by a newer autodidact: its schema revision is unknown here."""


class UnknownRecord(StoreError, KeyError):
    """No record with this id in the store."""

    def __init__(self, record_id: str) -> None:
        self.record_id = record_id
        super().__init__(f"unknown record id {record_id!r}")

    def __str__(self) -> str:  # KeyError would quote the message again
        return str(self.args[0])


class UnknownRun(StoreError):
    """No run with this id in the store."""


class ReadOnlyViolation(StoreError):
    """A statement given to the read-only SQL path tried to change the store."""
