"""The lineage store's record of streamed stages: which chunks of a stage execution finished.

What it is: :class:`StageChunks`, the part of ``LineageStore`` that writes a chunk's outputs,
side outputs and its ``stage_chunks`` row in one transaction (so a chunk is whole or absent),
and reads a finished chunk back for a resumed run. What it is not: the chunking itself, which
is the runner's (engine/runtime/streaming.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from engine.lineage import schema as t
from engine.lineage.rows import RecordRows, load_records
from engine.records import Record

if TYPE_CHECKING:
    from sqlalchemy import Engine


def inputs_hash(inputs: Sequence[Sequence[Any]]) -> str:
    """A chunk's identity: the ids of its inputs (every argument list), in order."""
    h = hashlib.sha256()
    for arg in inputs:
        for item in arg:
            h.update(str(getattr(item, "id", item)).encode())
            h.update(b"\x00")
        h.update(b"\x01")
    return h.hexdigest()


class StageChunks:
    """Chunk rows of streamed stage executions (a mixin of ``LineageStore``)."""

    engine: Engine
    kinds: dict[str, type[Record]] | None
    _write: Any
    _append: Any
    _insert: Any

    def write_chunk(self, run_id: str, iteration: int, execution_id: str, chunk: int, *,
                    inputs_hash: str, outputs: Sequence[Record], side: Sequence[Record], n_in: int,
                    seconds: float) -> None:
        """Write chunk ``chunk`` of an execution: its outputs, its side outputs and its row (their ids
        in order, repeats kept), in one transaction. Writing a chunk again (its inputs changed)
        replaces its row."""
        out_rows = RecordRows.build(run_id, iteration, execution_id, outputs)
        side_rows = RecordRows.build(run_id, iteration, execution_id, side)
        ids = {"outputs": [r.id for r in outputs], "side": [r.id for r in side]}
        row = dict(execution_id=execution_id, chunk=chunk, inputs_hash=inputs_hash, n_in=n_in,
                   n_out=len(outputs), n_side=len(side), seconds=seconds, ids=ids)
        stmt = self._insert(t.stage_chunks)
        stmt = stmt.on_conflict_do_update(
            index_elements=["execution_id", "chunk"],
            set_={k: getattr(stmt.excluded, k) for k in row if k not in ("execution_id", "chunk")})

        def go(conn: Connection) -> None:
            self._append(conn, execution_id, out_rows)
            self._append(conn, execution_id, side_rows)
            conn.execute(stmt, row)

        self._write(go)

    def chunk_of(self, execution_id: str, chunk: int) -> dict[str, Any] | None:
        """The row of a finished chunk, or None (never finished: in flight when a run stopped)."""
        c = t.stage_chunks.c
        with self.engine.connect() as conn:
            row = conn.execute(select(t.stage_chunks).where(c.execution_id == execution_id,
                                                            c.chunk == chunk)).first()
        return dict(row._mapping) if row is not None else None

    def chunks_of(self, execution_id: str) -> list[dict[str, Any]]:
        """The rows of an execution's finished chunks, in chunk order."""
        c = t.stage_chunks.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.stage_chunks).where(c.execution_id == execution_id)
                                .order_by(c.chunk)).all()
        return [dict(r._mapping) for r in rows]

    def chunk_records(self, row: dict[str, Any]) -> tuple[list[Record], list[Record]]:
        """(outputs, side outputs) of a finished chunk, as the stage gave them."""
        ids = row["ids"]
        with self.engine.connect() as conn:
            return (load_records(conn, ids["outputs"], self.kinds),
                    load_records(conn, ids["side"], self.kinds))
