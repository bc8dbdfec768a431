"""Export of an iteration's records (e.g. its training data) to JSONL or Parquet.

What it is: ``export(store, run_id, iteration, kind, path, format)``, which writes one row per
record: ``record_id``, ``kind``, ``model_version``, ``parents`` (list of {id, role}) and the
record's own fields. Files load with ``datasets.load_dataset("json" | "parquet", data_files=...)``.
In Parquet, dict-valued fields (``meta``, ``details``...) are JSON strings, because Arrow cannot
store an empty struct and their keys vary from row to row. What it is not: a query language
(queries.py) or a dataset card generator.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from engine.lineage import queries
from engine.lineage.errors import StoreError

if TYPE_CHECKING:
    from engine.lineage.store import LineageStore

Format = Literal["jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("jsonl", "parquet")
RESERVED = ("record_id", "kind", "model_version", "parents")


def export_rows(store: LineageStore, run_id: str, iteration: int, kind: str) -> list[dict[str, Any]]:
    """The rows an export writes, in write order."""
    found = queries.records_of_kind(store, run_id, iteration, kind)
    links = queries.parents_of(store, [r["id"] for r in found])
    rows = []
    for rec in found:
        row: dict[str, Any] = {"record_id": rec["id"], "kind": rec["kind"],
                               "model_version": rec["model_version"], "parents": links[rec["id"]]}
        for key, value in dict(rec["payload"]).items():
            row[f"payload_{key}" if key in RESERVED else key] = value
        rows.append(row)
    return rows


def export(store: LineageStore, run_id: str, iteration: int, kind: str, path: str | Path,
           format: str = "jsonl") -> int:
    """Write the records of ``kind`` made in ``iteration`` to ``path``; returns the row count.
    The file is written to a temporary name and renamed, so a failed export leaves nothing."""
    if format not in FORMATS:
        raise StoreError(f"unknown export format {format!r} (use one of: {', '.join(FORMATS)})")
    rows = export_rows(store, run_id, iteration, kind)
    target = Path(path)
    if target.is_dir():
        raise StoreError(f"export path {target} is a directory; give a file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        if format == "jsonl":
            with tmp.open("w", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            _write_parquet(rows, tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return len(rows)


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = [{k: json.dumps(v, ensure_ascii=False, sort_keys=True) if isinstance(v, dict) else v
             for k, v in row.items()} for row in rows]
    if not flat:
        table = pa.table({name: pa.array([], pa.string()) for name in RESERVED[:3]})
    else:
        table = pa.Table.from_pylist(flat)
    pq.write_table(table, path)
