"""Smoke run of bench/lineage on SQLite with tiny sizes (the real run is ``python -m bench.lineage``)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_bench_runs_on_sqlite(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[3]))  # the repository root
    from bench.lineage.run import main

    assert main(["--backends", "sqlite", "--records", "2000", "--ingest", "400", "--batch", "100",
                 "--naive", "10", "--queries", "5", "--rounds", "1", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "bulk ingest" in out and "ancestors to depth 6" in out
