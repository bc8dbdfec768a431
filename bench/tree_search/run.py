"""Tree-search benchmark: batched frontier expansion against node-by-node expansion, real model.

What it is: one command, ``python -m bench.tree_search [--quick] [--no-write]``, that runs the
``tree-search`` refiner on SmolLM2-135M-Instruct (the ``transformers`` sampler, the CPU default)
over failing (instruction, response, critique) roots twice, with the same options and seeds:
  - batched: the refiner as shipped, one sampler call per depth for all rewrites and one for all
    judgements across every root (the frontier of the whole batch at once);
  - node-by-node (the baseline): the same algorithm and seeds behind a sampler wrapper that sends
    what SPaR's reference code sends, one call per node for its rewrite and one per node for its
    judgement (its ``votes`` completions).
It prints a markdown table (nodes, sampler calls, completion tokens, wall seconds, ratio) and
writes it to bench/tree_search/RESULTS.md. The gate defaults to 1.0 (no node can pass it) so both
sides build the same full trees and do the same work; ``--gate 0.5`` measures SPaR's setting.
What it is not: a quality benchmark (a 135M model judges and refines poorly), nor a vLLM one.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.contracts import StageContext
from engine.records import Critique, Link, Refinement, Response, Task
from engine.sampling.protocol import SampleRequest, SampleResult
from plugins.refiner_tree import (
    TreeJudgeOptions,
    TreeOptions,
    TreeRefineOptions,
    TreeSearchRefiner,
)

PAIRS = [  # (instruction, a response that fails it, why it fails)
    ("Write a haiku about the sea. Use only lowercase letters.", "The Sea Is Blue And Wide.",
     "It is not a haiku (not 5-7-5) and it uses capital letters."),
    ("List three fruits as a bulleted markdown list.", "Apples, bananas and cherries are fruits.",
     "The fruits are in a sentence, not a bulleted list."),
    ("Answer in exactly two sentences: why is the sky blue?", "Because of light.",
     "It has one sentence, not two, and explains nothing."),
    ("Write the word 'hello' in French, all in capital letters.", "bonjour",
     "The word is not in capital letters."),
    ("Describe a cat in under 20 words and end with the word 'purr'.",
     "Cats are small furry animals that many people keep as pets in their homes around the world today.",
     "It has more than 20 words and does not end with 'purr'."),
    ("Give a title for a story about a robot, wrapped in double angular brackets like <<title>>.",
     "The Robot Who Dreamed", "The title is not wrapped in << and >>."),
    ("Name two planets. Do not use any commas in your answer.", "Mars, Venus",
     "The answer uses a comma."),
    ("Write one sentence about rain that contains the word 'umbrella' twice.",
     "Rain falls from the clouds.", "The word 'umbrella' does not appear at all."),
]


class CountingSampler:
    """Forwards to the real sampler and counts the calls that reach it and the tokens it makes.

    ``per_node=False``: each batch in one call (the refiner as shipped). ``per_node=True``: SPaR's
    request pattern; the refiner sends each step's rewrites, then its judgements, so batches
    alternate: a rewrite batch becomes one call per child (n=1, seed+j: the seed the batched row
    of that child gets), a judgement batch one call per child (its ``votes`` completions).
    """

    name = "counting"

    def __init__(self, inner: Any, per_node: bool, verbose: bool = False) -> None:
        self.inner, self.per_node, self.verbose = inner, per_node, verbose
        self.calls = self.requests = self.tokens = self.batches = 0

    def model_version_for(self, adapter: str | None) -> str:
        return str(self.inner.model_version_for(adapter))

    def _call(self, batch: list[SampleRequest]) -> list[SampleResult]:
        self.calls += 1
        self.requests += len(batch)
        t = time.perf_counter()
        out: list[SampleResult] = self.inner.sample(batch)
        self.tokens += sum(c.tokens for r in out for c in r.completions)
        if self.verbose:
            print(f"    call {self.calls}: {len(batch)} requests x n={batch[0].params.n}, "
                  f"{time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
        return out

    def sample(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        rewrites = self.batches % 2 == 0
        self.batches += 1
        if not self.per_node:
            return self._call(list(requests))
        if not rewrites:
            return [self._call([r])[0] for r in requests]
        out = []
        for req in requests:
            seed = req.params.seed
            parts = [self._call([req.model_copy(update={"params": req.params.model_copy(
                update={"n": 1, "seed": None if seed is None else seed + j})})])[0]
                for j in range(req.params.n)]
            out.append(parts[0].model_copy(update={"completions": [p.completions[0] for p in parts]}))
        return out


def roots(n: int) -> tuple[list[Response], list[Critique]]:
    resp = [Response(text=bad, prompt=instr, parents=[Link(id=Task(prompt=instr).id)])
            for instr, bad, _ in PAIRS[:n]]
    crits = [Critique(verdict=False, votes_no=1, text=f"{why}\nFinal judgement: No",
                      parents=[Link(id=r.id, role="judges")])
             for r, (_, _, why) in zip(resp, PAIRS[:n], strict=True)]
    return resp, crits


def run_mode(sampler: Any, per_node: bool, opts: TreeOptions, n: int, verbose: bool) -> dict[str, Any]:
    counting = CountingSampler(sampler, per_node, verbose)
    stage = TreeSearchRefiner(opts, StageContext(seed=1234, sampler=counting))  # type: ignore[arg-type]
    t = time.perf_counter()
    finals: list[Refinement] = stage.refine(*roots(n))  # one final node per root
    wall = time.perf_counter() - t
    nodes = [r for r in stage.context.emitted if isinstance(r, Refinement)]  # every node, as side outputs
    print(f"  {'node-by-node' if per_node else 'batched'}: {len(nodes)} nodes, {counting.calls} calls, "
          f"{wall:.1f} s", file=sys.stderr, flush=True)
    return {"nodes": len(nodes), "calls": counting.calls, "requests": counting.requests,
            "tokens": counting.tokens, "wall": wall, "passed": sum((f.value or 0) > 0.5 for f in finals)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.tree_search", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 roots, depth 1, shorter completions")
    ap.add_argument("--pairs", type=int, default=None, help=f"failing roots (at most {len(PAIRS)})")
    ap.add_argument("--gate", type=float, default=1.0, help="1.0: full trees (equal work on both sides)")
    ap.add_argument("--batch-size", type=int, default=256,
                    help="transformers rows decoded together (256: a whole frontier in one batch)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--verbose", action="store_true", help="print every sampler call's time (stderr)")
    ap.add_argument("--no-write", action="store_true", help="print only, do not write RESULTS.md")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads starve on a shared CPU
    n = min(args.pairs or (4 if args.quick else len(PAIRS)), len(PAIRS))
    depth, refine_tokens, judge_tokens = (1, 32, 24) if args.quick else (2, 64, 48)
    opts = TreeOptions(branch=3, select=2, depth=depth, gate=args.gate,
                       refine=TreeRefineOptions(max_tokens=refine_tokens),
                       judge=TreeJudgeOptions(votes=3, max_tokens=judge_tokens))
    from plugins.sampler_transformers import TransformersOptions, TransformersSampler

    sampler = TransformersSampler(TransformersOptions(num_threads=args.threads,
                                                      batch_size=args.batch_size)).load()
    sampler.sample([SampleRequest.chat("Say hi.", max_tokens=4)])  # warm-up
    load0 = os.getloadavg()[0]
    batched = run_mode(sampler, False, opts, n, args.verbose)
    single = run_mode(sampler, True, opts, n, args.verbose)
    ratio = single["wall"] / batched["wall"]
    head = (f"{n} failing roots, BFS, branch 3, select 2, depth {depth}, votes 3, gate {args.gate}, "
            f"max_tokens refine {refine_tokens} / judge {judge_tokens}, temperature 0.7, top_p 1.0, "
            "seed 1234; SmolLM2-135M-Instruct, "
            f"transformers sampler ({sampler.model.dtype}, batch_size {sampler.opts.batch_size}); "
            f"{len(os.sched_getaffinity(0))} CPUs; {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; "
            f"load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end (other jobs on the "
            "machine slow both rows)")
    table = ["| expansion | nodes | sampler calls | requests | tokens out | wall s | tokens/s | speed-up |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, r, note in (("node-by-node (one call per node), the baseline", single, "1.00x"),
                          ("batched frontier (one call per depth)", batched,
                           f"{ratio:.2f}x (target >= 3x: {'met' if ratio >= 3 else 'MISSED'})")):
        table.append(f"| {name} | {r['nodes']} | {r['calls']} | {r['requests']} | {r['tokens']} | "
                     f"{r['wall']:.1f} | {r['tokens'] / r['wall']:.0f} | {note} |")
    text = "\n".join([head, "", *table, "", f"Roots whose final node passed 0.5: batched {batched['passed']}"
                      f"/{n}, node-by-node {single['passed']}/{n}."])
    print(text)
    if not args.no_write:
        Path(__file__).with_name("RESULTS.md").write_text(
            "# Tree-search benchmark (measured)\n\nCommand: `"
            + " ".join(["python -m bench.tree_search", *(argv if argv is not None else sys.argv[1:])])
            + f"`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
