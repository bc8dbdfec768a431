"""bench/runtime: orchestration overhead of a 2-iteration loop.

Orchestration overhead = wall time of the run minus the time spent inside sampler, sandbox and
trainer calls (the runtime records both in run.json). Measured for the SELF loop with the
scripted sampler (which makes overhead dominate: it shows the fixed cost of Ray start-up, actors
and the store) and with SmolLM2 through the transformers sampler (the figure the target is
about: at most 5% of wall time).

    .venv/bin/python bench/runtime/run.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CASES = {
    "scripted sampler, in-process": ["configs/demo-scripted.yaml", "runtime.ray=false"],
    "scripted sampler, Ray actors": ["configs/demo-scripted.yaml"],
    "SmolLM2 (transformers), Ray actors": ["configs/self.yaml", "data.limit=4", "evaluators=[]",
                                            "stages.respond.options.n=1"],
}


def run_case(args: list[str], out: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "engine.cli", "run", args[0], "iterations=2", f"output_dir={out}", *args[1:]]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    (state_file,) = out.glob("*/run.json")
    timing: dict[str, float] = json.loads(state_file.read_text())["timing"]
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scripted cases only")
    opts = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, args) in enumerate(CASES.items()):
            if opts.quick and "SmolLM2" in name:
                continue
            t = run_case(args, Path(tmp) / str(i))
            share = t["orchestration_s"] / t["wall_s"] if t["wall_s"] else 0.0
            rows.append((name, t["wall_s"], t["services_s"], t["orchestration_s"], share))
    head = f"| {'case':<36} | wall s | in services s | orchestration s | overhead |"
    lines = [head, "|" + "---|" * 5]
    for name, wall, inside, orch, share in rows:
        lines.append(f"| {name:<36} | {wall:6.1f} | {inside:13.1f} | {orch:15.1f} | {share:7.1%} |")
    print("\n".join(lines))
    print("\ntarget: overhead <= 5% of wall time with SmolLM2")


if __name__ == "__main__":
    main()
