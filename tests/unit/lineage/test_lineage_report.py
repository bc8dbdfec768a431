"""Training steps in lineage and the report's loss curves: steps stored per iteration and adapter
role (kept apart from evaluation metrics), read back in order, and plotted into loss.png."""

from __future__ import annotations

import math
from pathlib import Path

from engine.lineage import LineageStore, queries
from engine.records import EvalResult
from engine.report import iteration_table, loss_curves, plot_report


def fake_steps(start: float, n: int = 3) -> list[dict[str, float]]:
    return [{"step": float(i + 1), "loss": start / (i + 1), "grad_norm": 1.0} for i in range(n)]


def test_steps_are_stored_read_back_and_plotted(store: LineageStore, tmp_path: Path) -> None:
    store.create_run("r1", config={}, config_hash="h", code_version="v", loop="l")
    store.start_iteration("r1", 1)
    store.start_iteration("r1", 2)
    store.add_training_steps("r1", 1, "m+lora-a", "policy", fake_steps(4.0))
    store.add_training_steps("r1", 1, "m+lora-b", "refiner", [{"loss": 2.0, "reward": math.nan}])
    store.add_training_steps("r1", 2, "m+lora-c", "policy", fake_steps(3.0, 2))
    store.add_training_steps("r1", 2, "m+lora-c", "policy", [])  # nothing to store
    store.add_metrics("r1", 1, "m+lora-a", [EvalResult(evaluator="ev", metric="acc", value=0.5, n=4)])

    rows = store.training_steps("r1")
    assert {(r["iteration"], r["role"], r["metric"]) for r in rows} == {
        (1, "policy", "loss"), (1, "policy", "grad_norm"), (1, "refiner", "loss"), (2, "policy", "loss"),
        (2, "policy", "grad_norm")}  # the NaN reward is left out
    losses = [(r["step"], r["value"], r["model_version"]) for r in rows
              if (r["iteration"], r["role"], r["metric"]) == (1, "policy", "loss")]
    assert losses == [(1, 4.0, "m+lora-a"), (2, 2.0, "m+lora-a"), (3, 4.0 / 3, "m+lora-a")]
    assert loss_curves(store, "r1") == {(1, "policy"): [(1, 4.0), (2, 2.0), (3, 4.0 / 3)],
                                        (1, "refiner"): [(1, 2.0)], (2, "policy"): [(1, 3.0), (2, 1.5)]}
    # evaluation metrics stay apart: the table and metrics.png see only the evaluator's metric
    assert [m["metric"] for m in queries.metrics(store, "r1")] == ["acc"]
    assert iteration_table(store, "r1")[0][-1] == "ev/acc"

    # a redone training (after a crash) updates its steps instead of failing
    store.add_training_steps("r1", 2, "m+lora-d", "policy", [{"step": 1.0, "loss": 9.0}])
    assert loss_curves(store, "r1")[(2, "policy")] == [(1, 9.0), (2, 1.5)]

    written = plot_report(store, "r1", tmp_path / "report")
    loss_png = tmp_path / "report" / "loss.png"
    assert loss_png in written and loss_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "report" / "metrics.png").is_file()


def test_no_training_no_loss_plot(store: LineageStore, tmp_path: Path) -> None:
    store.create_run("r2", config={}, config_hash="h", code_version="v", loop="l")
    assert store.training_steps("r2") == [] and loss_curves(store, "r2") == {}
    assert not any(p.name == "loss.png" for p in plot_report(store, "r2", tmp_path))
