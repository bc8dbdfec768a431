"""Driver memory of a streamed stage: peak RSS of 1,000,000 records against 100,000 (issue 13, part 5).

What it is: each size runs in a fresh process (``--one N MODE``), so ``ru_maxrss`` is that run's
own peak. A run is a real run of a one-stage loop (``stream-bench``, defined here): the
``respond`` generator answers N tasks, made lazily, with the scripted sampler (in process, Ray
off), into a SQLite lineage store in the run directory. ``stream`` runs the stage with
``runner.stream`` (chunks of ``runtime.chunk_size``, each written to lineage when it finishes);
``call`` runs it with ``runner.call`` on a list, the way a whole-batch stage does, as the contrast.
Target: stream's peak RSS at 1M within 1.5x of its peak at 100k.
What it is not: a throughput benchmark of the store (bench/lineage) or of a sampler.

    python -m bench.stream            # 100k and 1M streamed, 100k and 300k whole (~12 min here)
    python -m bench.stream --quick    # 100k and 200k streamed (the test's sizes)

The driver's resident set holds the interpreter and libraries, a few chunks, and SQLite's page
cache of the store's one writer connection (64 MB, engine/lineage/connect.py), which fills by
about 100k records and then stays full: that is why the sizes start at 100k.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

ROOT = Path(__file__).resolve().parents[2]


class BenchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: int = 1000
    mode: str = "stream"


def _loop_class() -> type:
    from engine.contracts import Role, Stage
    from engine.records import Task

    class StreamBench(Stage[BenchOptions]):
        """One stage over N lazily made tasks: streamed, or called on the whole list."""

        kind = "loop"
        name = "stream-bench"
        roles = {"respond": Role(kind="generator", takes=("task",), gives=("response",), default="respond")}
        trains: ClassVar[dict[str, tuple[str, ...]]] = {}

        def run_iteration(self, runner: Any, iteration: int) -> None:
            tasks = (Task(prompt=f"Write a haiku about the number {i}.") for i in range(self.options.records))
            if self.options.mode == "stream":
                count = sum(len(chunk) for chunk in runner.stream("respond", tasks))
            else:
                count = len(runner.call("respond", list(tasks)))
            runner.summary["answered"] = count

    return StreamBench


def one(records: int, mode: str, out: Path) -> dict[str, Any]:
    """Run the bench loop once in this process; its peak RSS and wall time."""
    from engine import hookimpl
    from engine.config import parse_config, resolve_config
    from engine.manager import create_plugin_manager
    from engine.runtime.run import start_run

    mod = types.ModuleType("stream_bench")
    mod.register_loops = hookimpl(lambda: [_loop_class()])  # type: ignore[attr-defined]
    pm = create_plugin_manager(entry_points=False, plugins=[mod])
    cfg = parse_config({
        "loop": {"name": "stream-bench", "options": {"records": records, "mode": mode}},
        "sampler": {"name": "scripted",
                    "options": {"responses": ["An answer of a few words, as a model would."]}},
        "runtime": {"ray": False, "chunk_size": 1000}, "output_dir": str(out)}, source="bench")
    t0 = time.perf_counter()
    run_dir = start_run(resolve_config(cfg, pm, source="bench"), pm)
    seconds = time.perf_counter() - t0
    from engine.lineage.store import LineageStore

    with LineageStore.for_run_dir(run_dir) as store, store.engine.connect() as conn:
        n = conn.exec_driver_sql("SELECT count(*) FROM records WHERE kind = 'response'").scalar_one()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"records": records, "mode": mode, "rss_mb": peak_mb, "seconds": seconds, "responses": n}


def measure(records: int, mode: str) -> dict[str, Any]:
    """``one`` in a fresh interpreter (its own peak RSS)."""
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        done = subprocess.run([sys.executable, "-m", "bench.stream", "--one", str(records), mode, tmp],
                              cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench.stream --one {records} {mode} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def table(small: int, large: int, whole: tuple[int, int] | None) -> list[dict[str, Any]]:
    rows = []
    for mode, (a, b) in (("stream", (small, large)), *((("call", whole),) if whole else ())):
        lo, hi = measure(a, mode), measure(b, mode)
        rows.append({"mode": mode, "small": lo, "large": hi, "ratio": hi["rss_mb"] / lo["rss_mb"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k/200k streamed only (the test's sizes)")
    parser.add_argument("--one", nargs=3, metavar=("N", "MODE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1], Path(args.one[2]))))
        return 0
    sizes: tuple[int, int, tuple[int, int] | None] = (
        (100_000, 200_000, None) if args.quick else (100_000, 1_000_000, (100_000, 300_000)))
    rows = table(*sizes)
    print("| stage run as | records | peak RSS (MB) | wall (s) | records | peak RSS (MB) | wall (s) "
          "| RSS ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        lo, hi = row["small"], row["large"]
        print(f"| runner.{row['mode']} | {lo['records']:,} | {lo['rss_mb']:.0f} | {lo['seconds']:.1f} "
              f"| {hi['records']:,} | {hi['rss_mb']:.0f} | {hi['seconds']:.1f} | {row['ratio']:.2f}x |")
    stream = rows[0]["ratio"]
    print(f"streamed: peak RSS at {sizes[1]:,} records is {stream:.2f}x that at {sizes[0]:,} "
          f"(target <= 1.5x: {'met' if stream <= 1.5 else 'missed'})")
    return 0
