"""bench/scale --quick (part (a) at small sizes) runs in CI: it completes and prints its tables.

No absolute times are asserted. The one ratio checked is loose enough for 2 noisy shared cores:
the replicas' cost is a sleep, so 4 replicas finish the stage well ahead of 1 whatever the load.
The generate+execute rows come from two engine runs (runner.call, then runner.stream), which the
bench checks made the same number of executions.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_scale_quick_prints_its_tables() -> None:
    result = subprocess.run([sys.executable, "bench/scale/run.py", "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "| sampler replicas | wall s | requests/s | speed-up vs 1 |" in out, out
    speedups = {int(m[1]): float(m[2]) for m in re.finditer(r"^\| (\d+) \| [\d.]+ \| [\d,]+ \| ([\d.]+)x \|",
                                                            out, re.M)}
    assert sorted(speedups) == [1, 4, 8], out
    assert speedups[4] > 1.5, out  # 4 replicas faster than 1 (the target, 3.6x, is the full run's)
    assert "| back to back:" in out and "| pipelined (" in out, out
    assert "pipelined `runner.stream` x 2; 1,000 executions in each run's lineage" in out, out
