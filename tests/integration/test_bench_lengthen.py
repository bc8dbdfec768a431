"""bench/lengthen --quick on the real SmolLM2: it completes and prints its table.

No absolute times are asserted: batched extension must add words faster than one draft at a time
(ratio > 1; the full run's target, 3x at 16 drafts, is the benchmark's to report).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

pytestmark = pytest.mark.model


def test_bench_lengthen_quick_prints_its_table(bench_quick: Callable[[str], str]) -> None:
    out = bench_quick("lengthen")
    row = re.search(r"^\| extension throughput: 4 drafts .*? \| ([\d.]+)x \|", out, re.M)
    assert row, out
    assert float(row[1]) > 1.0, out
