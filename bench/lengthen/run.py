"""Extension throughput on the real model: Self-Lengthen's rounds batched across texts, or not.

What it is: one command, ``python -m bench.lengthen [--quick]``, on SmolLM2-135M-Instruct with the
``transformers`` sampler (built as a run builds it). N drafts (the model's own answers to N
Self-Lengthen seed instructions, greedy) are extended by the ``extend`` stage (plugins/
generator_extend.py: R rounds of rewrite-then-continue, greedy): batched is ONE ``generate`` call on
all N drafts (each step one sampler call across every text); the baseline is ``generate([draft])``
once per draft, with the same stage and sampler, after a warm-up. The figure is the words added per
second (final words minus draft words, summed, over the wall time) and its ratio; target >= 3x.
Greedy decoding depends on the batch's composition, so the two sides' texts can differ: the table
gives both sides' words added. Full mode writes bench/lengthen/RESULTS.md.
What it is not: a quality measure, a GPU or vLLM measurement, or the Ray path (all in process).
Torch runs on ``--threads`` threads (default 1, as bench/episodes explains).

    python -m bench.lengthen            # 16 drafts, 2 rounds, 128 tokens a step
    python -m bench.lengthen --quick    # 4 drafts, 1 round, 32 tokens a step
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path
from typing import Any

MODEL = "smollm2-135m-instruct"
SIZES = {"full": (16, 2, 128), "quick": (4, 1, 32)}  # drafts, rounds, tokens per step


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure(drafts: int, rounds: int, tokens: int, threads: int) -> dict[str, Any]:
    from engine.contracts import StageContext, build_stage
    from engine.data import load_tasks
    from engine.records import Link, Response
    from engine.toolkit.lengthen import count_words
    from plugins.generator_extend import Extend
    from plugins.sampler_transformers import TransformersSampler

    opts = {"batch_size": max(32, drafts), "num_threads": threads or None}
    sampler: Any = build_stage(TransformersSampler, opts, StageContext(model_name=MODEL)).load()
    seeds = load_tasks("data/lengthen-seeds.jsonl")
    tasks = (seeds * (drafts // len(seeds) + 2))[:drafts + 1]
    from engine.sampling.protocol import SampleRequest

    results = sampler.sample([SampleRequest.chat(t.prompt, n=1, temperature=0.0, max_tokens=tokens)
                              for t in tasks])
    texts = [Response(text=r.completions[0].text, prompt=t.prompt, parents=[Link(id=t.id)])
             for t, r in zip(tasks, results, strict=True)]
    warm, texts = texts[drafts:], texts[:drafts]
    stage: Any = build_stage(Extend, {"rounds": rounds, "max_tokens": tokens, "temperature": 0.0,
                                      "adapter_role": None}, StageContext(model_name=MODEL, sampler=sampler))
    stage.generate(warm)
    log(f"batched: {drafts} drafts x {rounds} rounds")
    t0 = time.perf_counter()
    batched = stage.generate(texts)
    t_batched = time.perf_counter() - t0
    log("one at a time")
    t0 = time.perf_counter()
    single = [stage.generate([d])[0] for d in texts]
    t_single = time.perf_counter() - t0

    def added(finals: list[Any]) -> int:
        return sum(max(0, count_words(f.text) - count_words(d.text))
                   for f, d in zip(finals, texts, strict=True))

    return {"t_batched": t_batched, "t_single": t_single, "added_batched": added(batched),
            "added_single": added(single), "draft_words": sum(count_words(d.text) for d in texts),
            "accepted": sum(f.meta["rounds_accepted"] for f in batched), "dtype": str(sampler.model.dtype)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lengthen", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the test's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--drafts", type=int, help="override the mode's drafts (then nothing is written)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    drafts, rounds, tokens = SIZES[mode]
    if args.drafts:
        drafts, mode = args.drafts, "custom"
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started, load0 = datetime.datetime.now(datetime.UTC), os.getloadavg()[0]
    m = measure(drafts, rounds, tokens, args.threads)
    wps_b, wps_s = m["added_batched"] / m["t_batched"], m["added_single"] / m["t_single"]
    ratio = wps_b / wps_s if wps_s else float("inf")
    header = (f"SmolLM2-135M-Instruct, transformers sampler ({m['dtype']}), torch threads "
              f"{torch.get_num_threads()}, {os.cpu_count()} CPUs; {started:%Y-%m-%d %H:%M} UTC; "
              f"load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    body = ["| measure | value | baseline (same run) | ratio | target | met |",
            "| --- | ---: | ---: | ---: | --- | --- |",
            f"| extension throughput: {drafts} drafts x {rounds} rounds of rewrite + continue, {tokens} "
            f"tokens a step, greedy: one `generate` of all (one sampler call a step) against one draft at "
            f"a time | "
            f"{wps_b:.1f} words/s ({m['added_batched']} words added in {m['t_batched']:.1f} s) | "
            f"{wps_s:.1f} words/s ({m['added_single']} words added in {m['t_single']:.1f} s) | "
            f"{ratio:.2f}x | "
            f">= 3x | {'yes' if ratio >= 3 else '**missed**'} |"]
    extra = [f"- drafts: {m['draft_words']} words in all; rounds accepted in the batched run: "
             f"{m['accepted']} of {drafts * rounds}."]
    print(header + "\n\n" + "\n".join(body) + "\n\n" + "\n".join(extra))
    if mode == "full":
        Path(__file__).with_name("RESULTS.md").write_text(
            "# Extension benchmark (measured)\n\nCommand: `python -m bench.lengthen`\n\n" + header + "\n\n"
            + "\n".join(body) + "\n\n" + "\n".join(extra) + "\n")
    return 0
