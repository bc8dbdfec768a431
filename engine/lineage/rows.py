"""Conversion between :class:`engine.records.Record` objects and lineage store rows.

What it is: ``RecordRows.build`` (records -> tuples for ``records``, ``edges`` and ``outputs``;
the payload JSON comes from pydantic's serializer, the content hash from the record's
identity) and ``load_records`` (ids -> typed records, parents in their original order).
What it is not: the SQL that writes rows (bulk.py) or any lineage query (queries.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from engine.lineage import schema as t
from engine.records import Link, Record, content_hash, load_record

PAYLOAD_EXCLUDES = frozenset({"id", "kind", "parents", "model_version"})
CHUNK = 500  # ids per IN (...) when loading
_PAYLOAD_EXCLUDE = set(PAYLOAD_EXCLUDES)
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
# The C encoder json.dumps builds on every call, built once (same settings as canonical_json).
_C_CANONICAL: Any = (
    _c_make_encoder(None, str, json.encoder.encode_basestring, None, ":", ",", True, False, True)
    if _c_make_encoder is not None else None)


def canonical(data: Any) -> str:
    """``engine.records.canonical_json(data)``, faster (a test checks they agree)."""
    if _C_CANONICAL is None:
        return _CANONICAL.encode(data)
    return "".join(_C_CANONICAL(data, 0))


def _dumper(cls: type[Record]) -> Callable[[Record], tuple[str, str]]:
    """``dump`` for records of class ``cls``. Where ``payload`` and ``identity`` are Record's own,
    it calls the pydantic serializer as ``model_dump_json`` / ``model_dump`` do (same arguments,
    same text) without their Python wrappers, the class checks made once per class."""
    ser, encode = cls.__pydantic_serializer__, _C_CANONICAL
    if cls.payload is not Record.payload or cls.identity is not Record.identity or encode is None:
        def general(record: Record) -> tuple[str, str]:
            if cls.payload is Record.payload:
                payload = record.model_dump_json(exclude=_PAYLOAD_EXCLUDE)
            else:
                payload = json.dumps(record.payload(), ensure_ascii=False, default=str)
            return payload, content_hash(record.identity())
        return general
    excludes = cls._identity_excludes
    to_json, to_python, sha256 = ser.to_json, ser.to_python, hashlib.sha256

    def fast(record: Record) -> tuple[str, str]:
        identity = to_python(record, mode="json", exclude=excludes)  # = record.identity()
        text = "".join(encode(identity, 0))  # = canonical(identity)
        return to_json(record, exclude=_PAYLOAD_EXCLUDE).decode(), sha256(text.encode()).hexdigest()
    return fast


_DUMPERS: dict[type[Record], Callable[[Record], tuple[str, str]]] = {}


def dump(record: Record) -> tuple[str, str]:
    """(payload JSON, content hash) of a record; the hash equals ``content_hash(record.identity())``."""
    cls = type(record)
    fn = _DUMPERS.get(cls)
    if fn is None:
        fn = _DUMPERS[cls] = _dumper(cls)
    return fn(record)


RECORD_COLUMNS = ("id", "kind", "run_id", "iteration", "execution_id", "model_version", "content_hash",
                  "payload")
EDGE_COLUMNS = ("child_id", "parent_id", "role", "pos")
OUTPUT_COLUMNS = ("execution_id", "record_id", "seq", "kind")


@dataclass
class RecordRows:
    """Rows as tuples in the column orders above; ``outputs`` are numbered from ``seq0``."""

    records: list[tuple[Any, ...]] = field(default_factory=list)
    edges: list[tuple[Any, ...]] = field(default_factory=list)
    kinds: list[tuple[str, str]] = field(default_factory=list)  # (record id, kind) in write order

    @classmethod
    def build(cls, run_id: str, iteration: int, execution_id: str, records: Sequence[Record]) -> RecordRows:
        out = cls()
        seen: set[str] = set()
        rows, edges, kinds = out.records, out.edges, out.kinds
        dumpers, last_cls = _DUMPERS, None
        fn: Callable[[Record], tuple[str, str]] = dump
        for rec in records:
            rid = rec.id
            if rid in seen:
                continue
            seen.add(rid)
            if type(rec) is not last_cls:
                last_cls = type(rec)
                dump(rec)  # fills the per-class cache
                fn = dumpers[last_cls]
            payload, chash = fn(rec)
            kind = rec.kind
            rows.append((rid, kind, run_id, iteration, execution_id, rec.model_version, chash, payload))
            kinds.append((rid, kind))
            parents = rec.parents
            if len(parents) == 1:
                link = parents[0]
                edges.append((rid, link.id, link.role, 0))
            elif parents:
                pairs: set[tuple[str, str]] = set()
                for pos, link in enumerate(parents):
                    if (link.id, link.role) not in pairs:
                        pairs.add((link.id, link.role))
                        edges.append((rid, link.id, link.role, pos))
        return out

    def outputs(self, execution_id: str, seq0: int) -> list[tuple[Any, ...]]:
        return [(execution_id, rid, seq0 + i, kind)
                for i, (rid, kind) in enumerate(self.kinds)]


def load_records(conn: Connection, ids: Sequence[str],
                 kinds: dict[str, type[Record]] | None = None) -> list[Record]:
    """Typed records for ``ids`` in the order given (missing ids are skipped)."""
    r, e = t.records.c, t.edges.c
    rows: dict[str, Any] = {}
    parents: dict[str, list[tuple[int, Link]]] = {}
    unique = list(dict.fromkeys(ids))
    for i in range(0, len(unique), CHUNK):
        chunk = unique[i:i + CHUNK]
        for row in conn.execute(select(r.id, r.kind, r.payload, r.model_version).where(r.id.in_(chunk))):
            rows[row.id] = row
        for edge in conn.execute(select(e.child_id, e.parent_id, e.role, e.pos).where(e.child_id.in_(chunk))):
            parents.setdefault(edge.child_id, []).append((edge.pos, Link(id=edge.parent_id, role=edge.role)))
    result = []
    for rid in ids:
        found = rows.get(rid)
        if found is None:
            continue
        links = [link for _, link in sorted(parents.get(rid, []), key=lambda p: p[0])]
        result.append(load_record(found.kind, found.id, dict(found.payload), links, found.model_version,
                                  kinds))
    return result
