"""Paired tests for comparing two model versions on the same items.

What it is: :func:`mcnemar`, the exact McNemar test on paired binary outcomes (each item right or
wrong under version A and under version B): only the discordant items count, and under the null
hypothesis each goes either way with probability 1/2, so the two-sided p-value is a binomial tail.
:func:`paired_permutation` is the paired sign-flip permutation test for continuous per-item values
(e.g. each prompt's log length ratio under two model versions). :func:`paired_bootstrap` is the
seeded paired bootstrap for per-item scores: the mean change of B over A with its 95% percentile
interval and a two-sided p-value. One version's 95% confidence intervals: :func:`wilson` for a
proportion (k right of n), :func:`bootstrap_mean` (optionally weighted: a ratio of sums such as
IFEval's instruction-level accuracy) and :func:`bootstrap_median` for per-item scores; numpy is
imported only inside them. :func:`mcnemar_items` is the planning side: how many paired items a
McNemar test needs to detect a given change (Connor's normal approximation).
What it is not: a correction for testing several iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import ceil, comb, sqrt
from typing import Any

Z95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95% interval."""
ROUNDS = 10_000
"""Bootstrap resamples by default."""


@dataclass(frozen=True)
class Paired:
    """The outcome of a paired comparison of B against A on the same ``n`` items."""

    n: int
    a_only: int  # right under A, wrong under B
    b_only: int  # wrong under A, right under B
    p_value: float

    @property
    def verdict(self) -> str:
        if self.p_value >= 0.05:
            return f"no significant change (p = {self.p_value:.3g})"
        return f"{'better' if self.b_only > self.a_only else 'worse'} (p = {self.p_value:.3g})"


def mcnemar(a: Sequence[bool | int], b: Sequence[bool | int]) -> Paired:
    """Exact two-sided McNemar test of B against A (item i is ``a[i]`` under A, ``b[i]`` under B)."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need equal lengths, got {len(a)} and {len(b)}")
    a_only = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    b_only = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    m = a_only + b_only
    tail = sum(comb(m, k) for k in range(min(a_only, b_only) + 1)) / 2 ** m if m else 1.0
    return Paired(n=len(a), a_only=a_only, b_only=b_only, p_value=min(1.0, 2 * tail))


@dataclass(frozen=True)
class PairedShift:
    """A paired comparison of continuous per-item values: B's mean change over A and its p-value."""

    n: int
    mean_change: float  # mean of b[i] - a[i]
    p_value: float

    @property
    def verdict(self) -> str:
        if self.p_value >= 0.05:
            return f"no significant change (p = {self.p_value:.3g})"
        return f"{'higher' if self.mean_change > 0 else 'lower'} (p = {self.p_value:.3g})"


def paired_permutation(a: Sequence[float], b: Sequence[float], rounds: int = 20_000,
                       seed: int = 0) -> PairedShift:
    """Two-sided paired sign-flip permutation test of B against A on the same items: under the null
    hypothesis each difference b[i] - a[i] is as likely negated, so the p-value is the share of
    ``rounds`` seeded random sign flips whose mean is at least as far from 0 as the observed one
    (with the observed arrangement counted, so p > 0)."""
    import random

    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    diffs = [float(y) - float(x) for x, y in zip(a, b, strict=True)]
    if not diffs:
        return PairedShift(n=0, mean_change=0.0, p_value=1.0)
    observed = abs(sum(diffs))
    rng = random.Random(seed)
    hits = sum(1 for _ in range(rounds)
               if abs(sum(d if rng.random() < 0.5 else -d for d in diffs)) >= observed - 1e-12)
    return PairedShift(n=len(diffs), mean_change=sum(diffs) / len(diffs), p_value=(hits + 1) / (rounds + 1))


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n`` (95% by default); (0, 1) for n = 0."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, center - half)
    return (lo, 1.0 if successes == n else min(1.0, center + half))


def _resampled(values: Sequence[float], weights: Sequence[float] | None, rounds: int, seed: int,
               statistic: str) -> Any:
    """``rounds`` values of the mean (weighted: sum(w * v) / sum(w)) or median of ``values``
    resampled with replacement, seeded; numpy array."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    w = None if weights is None else np.asarray(weights, dtype=float)
    if w is not None and w.shape != v.shape:
        raise ValueError(f"weights need one per value, got {len(w)} for {len(v)}")
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, rounds, 1000):  # blocks bound the memory: 1000 x n indices at a time
        idx = rng.integers(0, len(v), size=(min(1000, rounds - start), len(v)))
        if statistic == "median":
            out.append(np.median(v[idx], axis=1))
        elif w is None:
            out.append(v[idx].mean(axis=1))
        else:
            total = w[idx].sum(axis=1)
            out.append(np.divide((w[idx] * v[idx]).sum(axis=1), total, out=np.zeros(len(idx)),
                                 where=total > 0))
    return np.concatenate(out)


def _percentiles(stats: Any) -> tuple[float, float]:
    import numpy as np

    lo, hi = np.percentile(stats, [2.5, 97.5])
    return (float(lo), float(hi))


def bootstrap_mean(values: Sequence[float], rounds: int = ROUNDS, seed: int = 0,
                   weights: Sequence[float] | None = None) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of the mean of per-item ``values`` (with ``weights``:
    of sum(w * v) / sum(w), items resampled whole), seeded; (0, 0) for no items."""
    if not values:
        return (0.0, 0.0)
    return _percentiles(_resampled(values, weights, rounds, seed, "mean"))


def bootstrap_median(values: Sequence[float], rounds: int = ROUNDS, seed: int = 0) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of the median of ``values``, seeded; (0, 0) for none."""
    if not values:
        return (0.0, 0.0)
    return _percentiles(_resampled(values, None, rounds, seed, "median"))


@dataclass(frozen=True)
class PairedDifference:
    """B's mean change over A on the same ``n`` items, its 95% bootstrap interval and p-value."""

    n: int
    difference: float
    ci95: tuple[float, float]
    p_value: float

    @property
    def verdict(self) -> str:
        if self.p_value >= 0.05:
            return f"no significant change (p = {self.p_value:.3g})"
        return f"{'higher' if self.difference > 0 else 'lower'} (p = {self.p_value:.3g})"


def paired_bootstrap(a: Sequence[float], b: Sequence[float], rounds: int = ROUNDS, seed: int = 0,
                     weights: Sequence[float] | None = None) -> PairedDifference:
    """Paired bootstrap of B against A on the same items: the items are resampled together (seeded,
    ``rounds`` times) and the mean of b[i] - a[i] (weighted like :func:`bootstrap_mean`) taken each
    time. The interval is the 2.5th and 97.5th percentile; the two-sided p-value is the share of
    resampled changes, centred on the observed one, at least as far from it as the observed change
    is from 0 (the observed arrangement counted, so p > 0)."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    diffs = [float(y) - float(x) for x, y in zip(a, b, strict=True)]
    if not diffs:
        return PairedDifference(n=0, difference=0.0, ci95=(0.0, 0.0), p_value=1.0)
    w = None if weights is None else [float(x) for x in weights]
    observed = (sum(d * x for d, x in zip(diffs, w, strict=True)) / (sum(w) or 1.0) if w is not None
                else sum(diffs) / len(diffs))
    stats = _resampled(diffs, w, rounds, seed, "mean")
    if all(d == 0 for d in diffs):
        return PairedDifference(n=len(diffs), difference=0.0, ci95=(0.0, 0.0), p_value=1.0)
    hits = int(np.sum(np.abs(stats - observed) >= abs(observed) - 1e-12))
    return PairedDifference(n=len(diffs), difference=observed, ci95=_percentiles(stats),
                            p_value=min(1.0, (hits + 1) / (rounds + 1)))


def mcnemar_items(change: float, discordant: float, z_alpha: float = Z95, z_power: float = 0.8416) -> int:
    """Paired items a two-sided McNemar test needs to detect a net ``change`` (e.g. 0.05: 5 points)
    when a share ``discordant`` of items flip between the two versions, at alpha 0.05 and power 0.8
    by default (Connor 1987: n = (z_a sqrt(p_d) + z_b sqrt(p_d - d^2))^2 / d^2)."""
    if not 0 < abs(change) <= discordant <= 1:
        raise ValueError(f"need 0 < |change| <= discordant <= 1, got {change}, {discordant}")
    root = z_alpha * sqrt(discordant) + z_power * sqrt(discordant - change * change)
    return ceil(root * root / (change * change))
