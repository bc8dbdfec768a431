"""Paired tests for comparing two model versions on the same items.

What it is: :func:`mcnemar`, the exact McNemar test on paired binary outcomes (each item right or
wrong under version A and under version B): only the discordant items count, and under the null
hypothesis each goes either way with probability 1/2, so the two-sided p-value is a binomial tail.
:func:`paired_permutation` is the paired sign-flip permutation test for continuous per-item values
(e.g. each prompt's log length ratio under two model versions).
What it is not: a power analysis or a correction for testing several iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb


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
