"""SPaR: judge the actor, refine its failures by tree search, DPO on (refined, original) pairs.

One iteration: seed instructions (``data.source``, default ``data/spar-seeds.jsonl``) are evolved
with 1 to 3 verifiable constraints (``evolve``); the actor (adapter role ``policy``) answers each
``n`` times (``respond``); the judge (adapter role ``refiner``: in SPaR the refiner model is also
the judge) critiques every answer with ``votes`` samples and a majority vote (``judge``); the
failing answers (``failing``) are the roots of the tree search (``refine``: BFS/DFS, every depth one
batch across all roots, each node judged). The whole tree lands in lineage: each node links to its
parent node and to the critique that conditioned it, and the judge critique of every node is
ingested as a record (``node-critiques``). Then:

* preference pairs: chosen = the final node of a root whose value passed the gate, rejected = the
  original failing answer (SPaR's minimal-variation pairs); trained with the ``policy`` trainer
  (DPO with an SFT term, ``trainers.policy``);
* RFT data for the refiner (``target_role`` ``refiner``, trained by ``trainers.refiner``, SFT):
  every step of each successful refinement chain (refine prompt of the parent and its critique ->
  the child between the markers) and every judge sample that agrees with its critique's majority
  (judge prompt -> that critique text).

The next iteration samples the actor and the refiner from their new adapters (one sampler, two
adapters). What it is not: SPaR's data construction for the first judge/refiner (they distil a
stronger model; here the base model starts both roles), nor its inference-time refinement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Stage, StageKind
from engine.data import load_tasks
from engine.records import Critique, Link, PreferencePair, Refinement, Response, TrainingExample
from plugins.critic_judge import JudgeOptions, judge_prompts, parse_verdict
from plugins.refiner_critique import RefineOptions, refine_prompts
from plugins.refiner_tree import chain, final_nodes, node_critiques

DEFAULT_SOURCE = "data/spar-seeds.jsonl"


class SparOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    judge_samples: bool = Field(True, description="train the refiner on judge samples agreeing with "
                                                  "their majority")
    refine_chains: bool = Field(True, description="train the refiner on successful refinement chains")
    max_pairs: int | None = Field(None, ge=1, description="cap on preference pairs per iteration")
    max_rft: int | None = Field(None, ge=1, description="cap on refiner examples per iteration")


class Spar(Stage):
    kind = "loop"
    name = "spar"
    Options = SparOptions
    roles: dict[str, StageKind] = {"evolve": "generator", "respond": "generator", "judge": "critic",
                                   "failing": "filter", "refine": "refiner"}
    defaults: dict[str, Any] = {
        "evolve": "evolve-constraints",
        "respond": {"name": "respond", "options": {"n": 5, "temperature": 0.9, "top_p": 0.9}},
        "judge": {"name": "llm-judge", "options": {"votes": 5, "adapter_role": "refiner"}},
        "failing": {"name": "verdict", "options": {"keep": "no"}},
        "refine": {"name": "tree-search", "options": {"judge": {"adapter_role": "refiner"}}},
    }

    def run_iteration(self, runner: Any, iteration: int) -> dict[str, Any]:
        opts = self.options
        assert isinstance(opts, SparOptions)
        data = runner.config.data
        seeds = runner.ingest("seeds", load_tasks(data.source or DEFAULT_SOURCE, data.limit))
        tasks = runner.call("evolve", seeds)
        responses: list[Response] = runner.call("respond", tasks)
        critiques: list[Critique] = runner.call("judge", responses)
        by_id: dict[str, Response] = {r.id: r for r in responses}
        failing: list[Critique] = runner.call("failing", critiques)
        roots = [by_id[c.parent_ids("judges")[0]] for c in failing]
        nodes: list[Refinement] = runner.call("refine", roots, failing)
        node_crits = runner.ingest("node-critiques", node_critiques(nodes))
        gate = _gate(runner)
        finals = [n for n in final_nodes(nodes) if (n.value or 0.0) > gate]
        pairs = [_pair(n, by_id[n.meta["tree"]["root"]]) for n in finals][:opts.max_pairs]
        runner.ingest("pairs", pairs)

        crit_of = {c.parent_ids("judges")[0]: c for c in [*critiques, *node_crits]}
        judged = {**by_id, **{n.id: n for n in nodes}}
        rft: list[TrainingExample] = []
        if opts.refine_chains:
            refine_opts = _refine_options(runner, "refine")
            for final in finals:
                rft += _chain_examples(chain(nodes, final), judged, crit_of, refine_opts)
        if opts.judge_samples:  # each critique in the prompt format of the judge that wrote it
            rft += _judge_examples(critiques, judged, runner.resolved.stages["judge"].options)
            rft += _judge_examples(node_crits, judged, _refine_options(runner, "judge"))
        rft = rft[:opts.max_rft]
        runner.ingest("rft", rft)
        policy_version = runner.train(pairs, role="policy")
        refiner_version = runner.train(rft, role="refiner")
        funnel = {"tasks": len(tasks), "responses": len(responses), "failing": len(failing),
                  "nodes": len(nodes), "pairs": len(pairs), "rft": len(rft)}
        runner.summary.setdefault("spar", {}).update(funnel)
        return {"funnel": funnel, "model_version": policy_version, "refiner_version": refiner_version}


def _gate(runner: Any) -> float:
    return float(getattr(runner.resolved.stages["refine"].options, "gate", 0.5))


def _refine_options(runner: Any, part: str) -> Any:
    """The tree search's own ``refine`` or ``judge`` options (the prompts its nodes were made with)."""
    inner = getattr(runner.resolved.stages["refine"].options, part)
    assert isinstance(inner, RefineOptions | JudgeOptions)
    return inner


def _pair(final: Refinement, root: Response) -> PreferencePair:
    return PreferencePair(prompt=root.prompt, chosen=final.text, rejected=root.text,
                          model_version=root.model_version,
                          parents=[Link(id=final.id, role="chosen"), Link(id=root.id, role="rejected")])


def _chain_examples(path: Sequence[Refinement], judged: dict[str, Response], crit_of: dict[str, Critique],
                    opts: RefineOptions) -> list[TrainingExample]:
    """One refiner example per step of a successful chain: (parent, its critique) -> child."""
    out = []
    for node in path:
        parent = judged[node.parent_ids("refines")[0]]
        crit = crit_of[parent.id]
        (ask,) = refine_prompts([parent], [crit], opts)
        out.append(TrainingExample(
            messages=[{"role": "user", "content": ask},
                      {"role": "assistant", "content": f"{opts.start_marker}{node.text}{opts.end_marker}"}],
            target_role="refiner",
            parents=[Link(id=node.id, role="input"), Link(id=parent.id, role="refines"),
                     Link(id=crit.id, role="judges")]))
    return out


def _judge_examples(critiques: Sequence[Critique], judged: dict[str, Response],
                    opts: JudgeOptions) -> list[TrainingExample]:
    """Judge samples that agree with their critique's majority verdict (ties have none)."""
    out = []
    for crit in critiques:
        target = judged.get(next(iter(crit.parent_ids("judges")), ""))
        if crit.verdict is None or target is None:
            continue
        (ask,) = judge_prompts([(target.prompt, target.text)], opts)
        for text in dict.fromkeys(crit.text.split("\n---\n")):
            if parse_verdict(text, opts.yes_pattern, opts.no_pattern) is crit.verdict:
                out.append(TrainingExample(
                    messages=[{"role": "user", "content": ask}, {"role": "assistant", "content": text}],
                    target_role="refiner",
                    parents=[Link(id=crit.id, role="judges"), Link(id=target.id, role="input")]))
    return out


@hookimpl
def register_loops() -> list[type]:
    return [Spar]
