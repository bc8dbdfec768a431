"""Run reports: a per-iteration table of funnel and metrics, and PNG plots of them and of training.

What it is: ``iteration_table`` (one row per iteration: records out of each role, then each
metric), ``paired_lines`` (each iteration against the base model item by item where an evaluator
kept per-item results: McNemar on outcomes and on per-item correctness, a paired permutation
test on length ratios, a seeded paired bootstrap on per-item scores; each with the change and its
95% interval; a ``+refine`` metric is compared with its own base), ``iteration_intervals`` (the
95% confidence interval each evaluator kept beside a value, ``details["ci95"]``) and
``plot_report`` (``metrics.png``: each metric across iterations, iteration 0 being the base model;
``funnel.png``: records out of each role per iteration, as grouped bars; ``loss.png``: the
training loss per optimizer step, one line per iteration and adapter role; ``length.png``: written
against requested words per prompt and iteration, where an evaluator kept them), all read from
the lineage store. What it is not: a dashboard; matplotlib is imported only here, with the
non-interactive Agg backend.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.lineage import queries

REFINED = "+refine"
"""The suffix of a metric scored after refinement at inference (engine.toolkit.refining.SUFFIX)."""
Curves = dict[tuple[int, str], list[tuple[int, float]]]
"""(iteration, adapter role) -> [(step, value)]."""


def iteration_table(store: Any, run_id: str) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows: iteration, then each role's records out, then each metric."""
    funnel = queries.funnel(store, run_id)
    metrics = queries.metrics(store, run_id)
    roles = list(dict.fromkeys(r["role"] for r in funnel))
    names = list(dict.fromkeys(f"{m['evaluator']}/{m['metric']}" for m in metrics))
    iterations = sorted({r["iteration"] for r in funnel} | {m["iteration"] for m in metrics})
    rows = []
    for it in iterations:
        outs = {r["role"]: r["n_out"] for r in funnel if r["iteration"] == it}
        vals = {f"{m['evaluator']}/{m['metric']}": m["value"] for m in metrics if m["iteration"] == it}
        rows.append([it, *(outs.get(role) for role in roles), *(vals.get(n) for n in names)])
    return ["iteration", *roles, *names], rows


def iteration_intervals(store: Any, run_id: str) -> dict[str, dict[int, tuple[float, float]]]:
    """``{evaluator/metric: {iteration: (lo, hi)}}``: the 95% confidence interval an evaluator kept
    beside each value (``details["ci95"]``)."""
    return {name: {it: (float(ci[0]), float(ci[1])) for it, ci in by_it.items()}
            for name, by_it in _details_by_iteration(store, run_id, "ci95", by_metric=True).items()}


def _details_by_iteration(store: Any, run_id: str, key: str,
                          by_metric: bool = False) -> dict[str, dict[int, Any]]:
    """``details[key]`` of each evaluator's metrics, per iteration: {name: {it: value}}, the name being
    evaluator/metric with ``by_metric``, else evaluator/metric prefix (plus ``+refine`` for metrics
    scored after refinement at inference, engine.toolkit.refining, so they keep their own items)."""
    kept: dict[str, dict[int, Any]] = {}
    for m in queries.metric_details(store, run_id):
        details = m["details"] if isinstance(m["details"], dict) else json.loads(m["details"] or "{}")
        if isinstance(details.get(key), list) and details[key]:  # another evaluator's scalar of that name
            metric = m["metric"]
            prefix = metric if by_metric else metric.rsplit("/", 1)[0] if "/" in metric else ""
            name = f"{m['evaluator']}/{prefix}".rstrip("/")
            if not by_metric and metric.endswith(REFINED):
                name += REFINED
            kept.setdefault(name, {})[m["iteration"]] = details[key]
    return kept


def paired_lines(store: Any, run_id: str) -> list[str]:
    """Each later iteration against iteration 0 (the base model), item by item: for evaluators that
    kept per-item outcomes (``details["outcomes"]``, [r1, r2] per item) the exact McNemar test on
    attempt 1 and on attempt 2; for metrics that kept each item's 0/1 (``details["item_correct"]``)
    the exact McNemar test on them; for those that kept written and requested lengths
    (``details["items"]``, [requested, written, ...] per prompt) the paired permutation test on
    each prompt's log(written / requested); for metrics that kept each item's score
    (``details["item_scores"]``, weighted by ``details["item_weights"]`` when kept) a seeded paired
    bootstrap (engine.toolkit.stats). Each line ends with the change and its 95% interval (a paired
    bootstrap of the same items)."""
    from engine.toolkit.stats import mcnemar, paired_bootstrap, paired_permutation

    lines = []
    for name, by_it in _details_by_iteration(store, run_id, "outcomes").items():
        for it in sorted(i for i in by_it if i > 0 and 0 in by_it):
            for attempt in (0, 1):
                a = [o[attempt] for o in by_it[0]]
                b = [o[attempt] for o in by_it[it]]
                if len(a) != len(b):
                    continue
                test = mcnemar(a, b)
                lines.append(f"{name} attempt {attempt + 1}, iteration {it} vs base: {sum(b)}/{len(b)} "
                             f"against {sum(a)}/{len(a)}; {test.b_only} gained, {test.a_only} lost: "
                             f"{test.verdict}; {_change(paired_bootstrap(a, b))}")
    for name, by_it in _details_by_iteration(store, run_id, "item_correct", by_metric=True).items():
        for it in sorted(i for i in by_it if i > 0 and 0 in by_it):
            a, b = by_it[0], by_it[it]
            if len(a) != len(b):
                continue
            test = mcnemar(a, b)
            lines.append(f"{name}, iteration {it} vs base: {sum(b)}/{len(b)} against {sum(a)}/{len(a)}; "
                         f"{test.b_only} gained, {test.a_only} lost: {test.verdict}; "
                         f"{_change(paired_bootstrap(a, b))}")
    weights = _details_by_iteration(store, run_id, "item_weights", by_metric=True)
    for name, by_it in _details_by_iteration(store, run_id, "item_scores", by_metric=True).items():
        for it in sorted(i for i in by_it if i > 0 and 0 in by_it):
            a, b = by_it[0], by_it[it]
            w = weights.get(name, {}).get(0)
            if len(a) != len(b) or (w is not None and len(w) != len(a)):
                continue
            diff = paired_bootstrap(a, b, weights=w)
            lines.append(f"{name}, iteration {it} vs base on {len(a)} items: {_mean(b, w):.4g} against "
                         f"{_mean(a, w):.4g}: {diff.verdict}; {_change(diff)}")
    for name, by_it in _details_by_iteration(store, run_id, "items").items():
        for it in sorted(i for i in by_it if i > 0 and 0 in by_it):
            a, b = (log_ratios(by_it[k]) for k in (0, it))
            if len(a) != len(b):
                continue
            shift = paired_permutation(a, b)
            lo, hi = paired_bootstrap(a, b).ci95
            lines.append(f"{name} length, iteration {it} vs base on {len(a)} prompts: written/requested "
                         f"x{math.exp(shift.mean_change):.2f} (geometric mean): {shift.verdict}; "
                         f"change x{math.exp(shift.mean_change):.2f} [95% CI x{math.exp(lo):.2f}, "
                         f"x{math.exp(hi):.2f}]")
    return lines


def _change(diff: Any) -> str:
    """A paired difference (engine.toolkit.stats.PairedDifference) and its 95% interval."""
    lo, hi = diff.ci95
    return f"change {diff.difference:+.3g} [95% CI {lo:+.3g}, {hi:+.3g}]"


def _mean(values: Sequence[float], weights: Sequence[float] | None) -> float:
    if weights is None:
        return sum(values) / len(values) if values else 0.0
    total = sum(weights)
    return sum(v * w for v, w in zip(values, weights, strict=True)) / total if total else 0.0


def log_ratios(items: Sequence[Sequence[float]]) -> list[float]:
    """Each prompt's log(written / requested) from its [requested, written, ...] (an empty answer
    counts as one word)."""
    return [math.log(max(float(row[1]), 1.0) / float(row[0])) for row in items]


def plot_report(store: Any, run_id: str, out_dir: Path) -> list[Path]:
    """Write metrics.png (if the run has metrics), funnel.png and loss.png (if it trained) into
    ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    metrics = queries.metrics(store, run_id)
    if metrics:
        series: dict[str, list[tuple[float, float]]] = {}
        for m in metrics:
            series.setdefault(f"{m['evaluator']}/{m['metric']}", []).append((m["iteration"], m["value"]))
        written.append(_lines(plt, series, "iteration (0 = base model)", "value", f"metrics of {run_id}",
                              out_dir / "metrics.png"))
    funnel = [r for r in queries.funnel(store, run_id) if r["iteration"] > 0]
    if funnel:
        roles = list(dict.fromkeys(r["role"] for r in funnel))
        iterations = sorted({r["iteration"] for r in funnel})
        fig, ax = plt.subplots(figsize=(max(7, len(roles) * 0.9), 4))
        width = 0.8 / len(iterations)
        for k, it in enumerate(iterations):
            outs = {r["role"]: r["n_out"] for r in funnel if r["iteration"] == it}
            ax.bar([i + k * width for i in range(len(roles))], [outs.get(r, 0) for r in roles], width,
                   label=f"iteration {it}")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(roles))], roles, rotation=30, ha="right",
                      fontsize=8)
        ax.set_ylabel("records out")
        ax.set_title(f"funnel of {run_id}")
        ax.legend(fontsize=8)
        written.append(_save(fig, out_dir / "funnel.png"))
    lengths = _details_by_iteration(store, run_id, "items")
    for name, by_it in lengths.items():
        fig, ax = plt.subplots(figsize=(6, 5))
        for it, items in sorted(by_it.items()):
            ax.scatter([r[0] for r in items], [max(r[1], 1) for r in items], s=14, alpha=0.7,
                       label=f"iteration {it}" + (" (base)" if it == 0 else ""))
        top = max(max(r[0], r[1]) for items in by_it.values() for r in items)
        ax.plot([1, top], [1, top], color="grey", linewidth=0.8, label="written = requested")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("requested words")
        ax.set_ylabel("written words")
        ax.set_title(f"{name}: length following of {run_id}", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="both")
        suffix = "" if len(lengths) == 1 else "-" + name.replace("/", "-").replace("+", "-")
        written.append(_save(fig, out_dir / f"length{suffix}.png"))
    curves = loss_curves(store, run_id)
    if curves:
        written.append(_lines(plt, {f"iteration {it} {role}": pts for (it, role), pts in curves.items()},
                              "optimizer step", "training loss", f"training loss of {run_id}",
                              out_dir / "loss.png"))
    return written


def _lines(plt: Any, series: Mapping[str, Sequence[tuple[float, float]]], xlabel: str, ylabel: str,
           title: str, path: Path) -> Path:
    """One line per series (points marked when there are few), labelled, gridded, saved as PNG."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, pts in series.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 50 else None, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def loss_curves(store: Any, run_id: str, metric: str = "loss") -> Curves:
    """(iteration, adapter role) -> [(step, value)] of a training-step metric, in step order."""
    curves: Curves = {}
    for row in store.training_steps(run_id):
        if row["metric"] == metric:
            curves.setdefault((row["iteration"], row["role"]), []).append((row["step"], row["value"]))
    return {key: sorted(pts) for key, pts in sorted(curves.items())}


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
