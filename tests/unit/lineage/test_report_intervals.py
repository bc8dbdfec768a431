"""The report's intervals and paired tests: each metric's 95% interval beside its value in the
table, McNemar lines with the change and its interval, a paired bootstrap (weighted when the
evaluator kept weights) on per-item scores, each iteration against the base on the same items."""

from __future__ import annotations

from rich.console import Console

from engine.cli.app import report_table
from engine.lineage import LineageStore
from engine.records import EvalResult
from engine.report import iteration_intervals, paired_lines


def add(store: LineageStore, it: int, metric: str, value: float, **details: object) -> None:
    store.add_metrics("r", it, None, [EvalResult(evaluator="ev", metric=metric, value=value, n=20,
                                                 details=dict(details))])


def test_intervals_in_the_table_and_paired_lines(store: LineageStore) -> None:
    store.create_run("r", config={}, config_hash="h", code_version="v", loop="l")
    for it in (0, 1, 2):
        store.start_iteration("r", it)
    add(store, 0, "acc", 0.25, item_correct=[1] * 5 + [0] * 15, ci95=[0.11, 0.47])
    add(store, 1, "acc", 0.75, item_correct=[1] * 15 + [0] * 5, ci95=[0.53, 0.89])
    add(store, 2, "acc", 0.25, item_correct=[0] * 15 + [1] * 5)  # no interval kept: none shown
    add(store, 0, "score", 0.5, item_scores=[0.5] * 20, item_weights=[2] * 20, ci95=[0.5, 0.5])
    add(store, 1, "score", 0.5, item_scores=[0.0] * 10 + [1.0] * 10, item_weights=[2] * 20)
    add(store, 2, "score", 0.9, item_scores=[0.9] * 20, item_weights=[2] * 20)

    assert iteration_intervals(store, "r") == {"ev/acc": {0: (0.11, 0.47), 1: (0.53, 0.89)},
                                               "ev/score": {0: (0.5, 0.5)}}
    console = Console(width=200, record=True)
    console.print(report_table(store, "r"))
    text = console.export_text()
    assert "0.25 [0.11, 0.47]" in text and "0.75 [0.53, 0.89]" in text and "0.5 [0.5, 0.5]" in text

    lines = paired_lines(store, "r")
    acc1, acc2, score1, score2 = lines
    assert acc1.startswith("ev/acc, iteration 1 vs base: 15/20 against 5/20; 10 gained, 0 lost: better (p = ")
    assert "; change +0.5 [95% CI +0.3, +0.7]" in acc1
    assert acc2 == ("ev/acc, iteration 2 vs base: 5/20 against 5/20; 5 gained, 5 lost: no significant change "
                    "(p = 1); change +0 [95% CI -0.3, +0.3]")
    assert score1 == ("ev/score, iteration 1 vs base on 20 items: 0.5 against 0.5: no significant change "
                      "(p = 1); change +0 [95% CI -0.2, +0.2]")
    assert score2.startswith("ev/score, iteration 2 vs base on 20 items: 0.9 against 0.5: higher (p = ")
    assert score2.endswith("change +0.4 [95% CI +0.4, +0.4]")


def test_items_of_different_lengths_are_not_paired(store: LineageStore) -> None:
    store.create_run("r", config={}, config_hash="h", code_version="v", loop="l")
    for it in (0, 1):
        store.start_iteration("r", it)
    add(store, 0, "score", 0.5, item_scores=[0.5] * 20)
    add(store, 1, "score", 0.5, item_scores=[0.5] * 10)
    assert paired_lines(store, "r") == []


def test_a_scalar_detail_named_like_a_per_item_list_is_ignored(store: LineageStore) -> None:
    """An evaluator may keep a count under a name another evaluator uses for per-item lists
    (``items``: LongBench-Write's rows): the report pairs only lists, and does not crash."""
    store.create_run("r", config={}, config_hash="h", code_version="v", loop="l")
    for it in (0, 1):
        store.start_iteration("r", it)
    add(store, 0, "acc", 0.25, items=20, item_correct=[1] * 5 + [0] * 15)
    add(store, 1, "acc", 0.25, items=20, item_correct=[1] * 5 + [0] * 15)
    (line,) = paired_lines(store, "r")
    assert line.startswith("ev/acc, iteration 1 vs base: 5/20 against 5/20; 0 gained, 0 lost")
