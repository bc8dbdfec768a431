"""Confidence intervals and the paired bootstrap of engine.toolkit.stats against known values."""

from __future__ import annotations

import pytest

from engine.toolkit.stats import bootstrap_mean, bootstrap_median, paired_bootstrap, wilson


def test_wilson_matches_published_values() -> None:
    lo, hi = wilson(8, 10)  # the textbook example: 8 of 10, 95% Wilson score interval
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson(11, 10)


def test_bootstrap_mean_is_seeded_and_covers_the_mean() -> None:
    values = [float(k) for k in range(100)]  # mean 49.5, standard error 2.887: normal 95% +-5.66
    lo, hi = bootstrap_mean(values)
    assert lo == pytest.approx(49.5 - 5.66, abs=0.6) and hi == pytest.approx(49.5 + 5.66, abs=0.6)
    assert bootstrap_mean(values) == (lo, hi), "the same seed gives the same interval"
    assert bootstrap_mean(values, seed=1) != (lo, hi)
    assert bootstrap_mean([2.0] * 5) == (2.0, 2.0)
    assert bootstrap_mean([]) == (0.0, 0.0)
    # weighted: a ratio of sums (IFEval's instruction level): 1 of 2 and 4 of 4 followed -> 5/6
    lo, hi = bootstrap_mean([0.5, 1.0], weights=[2, 4])
    assert lo == 0.5 and hi == 1.0
    mid = bootstrap_median(list(range(101)))
    assert mid[0] < 50 < mid[1]


def test_paired_bootstrap_difference_interval_and_p() -> None:
    a = [0.0] * 20
    b = [1.0] * 10 + [0.0] * 10
    diff = paired_bootstrap(a, b)
    assert diff.difference == 0.5 and diff.n == 20
    assert 0.25 <= diff.ci95[0] < 0.5 < diff.ci95[1] <= 0.75
    assert diff.p_value < 0.001 and diff.verdict.startswith("higher")
    same = paired_bootstrap(a, a)
    assert same.p_value == 1.0 and same.ci95 == (0.0, 0.0) and same.verdict.startswith("no significant")
    noise = paired_bootstrap([0, 1] * 50, [1, 0] * 25 + [0, 1] * 25)
    assert noise.difference == 0.0 and noise.ci95[0] < 0 < noise.ci95[1] and noise.p_value > 0.5
    lower = paired_bootstrap(b, a)
    assert lower.verdict.startswith("lower") and lower.ci95 == (-diff.ci95[1], -diff.ci95[0])
    weighted = paired_bootstrap([0.5, 0.0], [1.0, 0.0], weights=[2, 2])
    assert weighted.difference == 0.25
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 2.0])


def test_mcnemar_items_matches_connors_formula() -> None:
    from engine.toolkit.stats import mcnemar_items

    # (1.95996 * sqrt(0.1) + 0.8416 * sqrt(0.1 - 0.0025))^2 / 0.0025 = 311.6
    assert mcnemar_items(0.05, 0.10) == 312
    assert mcnemar_items(0.05, 0.06) == 186  # fewer flips: fewer items
    assert mcnemar_items(0.10, 0.10) < mcnemar_items(0.05, 0.10)
    with pytest.raises(ValueError):
        mcnemar_items(0.2, 0.1)  # a net change larger than the share of flips is impossible
