"""Export of an iteration's records to JSONL and Parquet, loaded back with HF datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.lineage import LineageStore, StoreError
from engine.lineage.export import export
from engine.records import Record


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_loads_with_datasets(store: LineageStore, graph: dict[str, Record], tmp_path: Path,
                                    fmt: str) -> None:
    import datasets

    datasets.disable_progress_bars()
    path = tmp_path / f"train.{fmt}"
    assert export(store, "r1", 0, "response", path, fmt) == 2
    ds = datasets.load_dataset("json" if fmt == "jsonl" else "parquet", data_files=str(path), split="train",
                               cache_dir=str(tmp_path / "cache"))
    assert ds["record_id"] == [graph["good"].id, graph["bad"].id]
    assert ds["text"] == ["good", "bad"] and ds["model_version"] == ["m0", "m0"]
    assert ds["parents"][0] == [{"id": graph["task"].id, "role": "input"}]
    assert export(store, "r1", 0, "training_example", path, fmt) == 1
    ex = datasets.load_dataset("json" if fmt == "jsonl" else "parquet", data_files=str(path), split="train",
                               cache_dir=str(tmp_path / "cache2"))
    assert ex["record_id"] == [graph["ex"].id] and ex["completion"] == ["fixed"]


def test_export_of_nothing_and_bad_format(store: LineageStore, graph: dict[str, Record],
                                          tmp_path: Path) -> None:
    assert export(store, "r1", 1, "response", tmp_path / "none.jsonl", "jsonl") == 0
    assert (tmp_path / "none.jsonl").read_text() == ""
    assert export(store, "r1", 1, "response", tmp_path / "none.parquet", "parquet") == 0
    with pytest.raises(StoreError, match="csv"):
        export(store, "r1", 0, "response", tmp_path / "x.csv", "csv")
    assert not (tmp_path / "x.csv").exists()
