"""bench/scale (b): SmolLM2 on 2 sampler replicas of 1 torch thread against 1 replica of 2 threads.

What it is: ``real(repeats)``, the table of part (b) of bench/scale/run.py (``--real``). Both
sampler services are built as a run builds them (``Services.start`` from a resolved config:
``sampler: transformers``, the model resolved by the engine's ``resolve_model`` hooks, a
``ReplicaPool`` behind the request cache) in one local Ray with 6 logical CPUs (each replica
declares 2), the model loaded on every replica before timing. The timed runs are interleaved, best
of ``repeats``, each with a fresh seed so the cache never hits. A third row sends 16 requests
straight to each of the 2 replicas (``ServiceActor.run``, no pool), which separates what the
machine gives two processes from what the pool's chunking gives them.
What it is not: a GPU figure, or the sampler's own speed (bench/sampling).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TOPICS = ["the sea", "a lighthouse", "a robot learning to paint", "autumn", "a lost key", "the moon",
          "a city at night", "a library", "a mountain village", "an old clock", "a thunderstorm", "bread",
          "a chess game", "a desert", "a river", "a train journey", "a garden", "a violin", "snow",
          "a market", "a bridge", "a cat", "the first day of school", "a volcano", "a letter", "the wind",
          "a forest", "a shipwreck", "a festival", "a kite", "an island", "a map"]  # as bench/sampling
NEW_TOKENS = 64
ONE, TWO, HALVES = ("1 replica x 2 torch threads (baseline)", "2 replicas x 1 torch thread, through the pool",
                    "2 replicas x 1 torch thread, 16 requests sent to each (no pool)")


def start_real(replicas: int, threads: int, run_dir: Path) -> Any:
    from engine.config import parse_config, resolve_config
    from engine.manager import create_plugin_manager
    from engine.runtime.services import Services

    data = {"loop": "self", "output_dir": str(run_dir),
            "sampler": {"name": "transformers", "replicas": replicas, "options": {"num_threads": threads}}}
    pm = create_plugin_manager()
    return Services.start(resolve_config(parse_config(data), pm), run_dir, pm)


def real(repeats: int) -> str:
    import ray

    from engine.runtime.ray_services import start_ray
    from engine.sampling.protocol import SampleRequest

    start_ray(None, 6, 6)
    best = dict.fromkeys((ONE, TWO, HALVES), 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        one, two = start_real(1, 2, Path(tmp) / "one"), start_real(2, 1, Path(tmp) / "two")
        actors = two.sampler.backend.actors

        def halves(reqs: list[Any]) -> list[Any]:
            refs = [a.run.remote("sample", reqs[i::2], {}) for i, a in enumerate(actors)]
            return [r for part in ray.get(refs) for r in part]

        runs = {ONE: one.sampler.sample, TWO: two.sampler.sample, HALVES: halves}
        try:
            warm = [SampleRequest.chat("Hi", max_tokens=4)]  # load the model on every replica
            ray.get([a.run.remote("sample", warm, {}) for a in one.sampler.backend.actors + actors])
            for rep in range(repeats):
                for name, run in runs.items():
                    reqs = [SampleRequest.chat(f"Write a detailed story of at least 300 words about {t}.",
                                               max_tokens=NEW_TOKENS, seed=rep)
                            for t in TOPICS]
                    t0 = time.perf_counter()
                    tokens = sum(c.tokens for r in run(reqs) for c in r.completions)
                    best[name] = max(best[name], tokens / (time.perf_counter() - t0))
                    print(f"  {name}: {tokens} tokens, best {best[name]:.0f} tok/s", file=sys.stderr)
            work = {ONE: one.sampler.backend.work_done, TWO: two.sampler.backend.work_done,
                    HALVES: [len(TOPICS[i::2]) * repeats for i in range(2)]}
        finally:
            one.stop()
            two.stop()
            ray.shutdown()
    lines = [f"(b) SmolLM2-135M-Instruct, transformers sampler, {len(TOPICS)} prompts x {NEW_TOKENS} new "
             f"tokens, greedy, {os.cpu_count()} cores, best of {repeats} interleaved runs, load average "
             f"{os.getloadavg()[0]:.1f} at the end", "",
             "| sampler service | tokens/s | vs 1 x 2 threads | requests per replica, all runs |",
             "| --- | ---: | ---: | --- |"]
    lines += [f"| {name} | {best[name]:.0f} | {best[name] / best[ONE]:.2f}x | {work[name]} |"
              for name in best]
    return "\n".join(lines)
