"""SPaR: judge the actor, refine its failures by tree search, DPO on (refined, original) pairs.

One iteration: seed instructions (``data.source``, default ``data/spar-seeds.jsonl``) are evolved
with 1 to 3 verifiable constraints (``evolve``); the actor (adapter role ``policy``) answers each
``n`` times (``respond``); the judge (adapter role ``refiner``: in SPaR the refiner model is also
the judge) critiques every answer (``judge``: ``rule-and-judge`` by default, so an answer that
fails a verifiable constraint of its task is No without asking the LLM, and the others get
``votes`` samples and a majority vote); the failing answers (``failing``) are the roots of the
refinement (``refine``: one refined final node per root; the tree search makes it by BFS/DFS,
every depth one batch across all roots, its nodes screened for non-answers and judged by the same
rule-then-LLM verdict, and hands back its whole tree, each node judged, as side outputs that land
in lineage under its execution). Then:

* preference pairs: chosen = a root's final node when it is an answer (``screen``, the
  ``non-answer`` filter: not a verdict, not empty, not a copy of its critique; each drop recorded
  with its reason) and its Yes share (``value``; a refiner that
  gives none is judged by the ``judge`` role) is above ``gate``, rejected = the original failing
  answer (SPaR's minimal-variation pairs); trained with the ``policy`` trainer (DPO with an SFT
  term, ``trainers.policy``);
* RFT data for the refiner (``target_role`` ``refiner``, trained by ``trainers.refiner``, SFT):
  every step of each successful refinement chain (the refine stage's own chat for the parent and
  its critique -> the child as that stage writes it) and every judge sample that agrees with its
  critique's majority (the judge's own chat -> that sample). The loop reaches the stages' prompt
  formats through ``runner.stage(role)`` (engine.contracts.Prompted), so any judge or refiner
  that shows its chats can be bound; one that does not simply adds no RFT examples.

The next iteration samples the actor and the refiner from their new adapters (one sampler, two
adapters). What it is not: SPaR's data construction for the first judge/refiner (they distil a
stronger model; here the base model starts both roles), nor its inference-time refinement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Messages, Prompted, Role, Stage
from engine.data import load_tasks
from engine.records import Critique, Link, PreferencePair, Refinement, Response, TrainingExample

DEFAULT_SOURCE = "data/spar-seeds.jsonl"


class SparOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gate: float = Field(0.5, ge=0.0, le=1.0, description="a pair needs its refined answer's Yes share "
                                                          "above this")
    judge_samples: bool = Field(True, description="train the refiner on judge samples agreeing with "
                                                  "their majority")
    refine_chains: bool = Field(True, description="train the refiner on successful refinement chains")
    max_pairs: int | None = Field(None, ge=1, description="cap on preference pairs per iteration")
    max_rft: int | None = Field(None, ge=1, description="cap on refiner examples per iteration")


class Spar(Stage[SparOptions]):
    kind = "loop"
    name = "spar"
    roles = {
        "evolve": Role(kind="generator", takes=("task",), gives=("task",), default="evolve-constraints",
                       doc="seed instructions -> instructions with verifiable constraints added"),
        "respond": Role(kind="generator", takes=("task",), gives=("response",),
                        default={"name": "respond", "options": {"n": 5, "temperature": 0.9, "top_p": 0.9}},
                        doc="the actor (policy adapter) answers each instruction n times"),
        "judge": Role(kind="critic", takes=("response",), gives=("critique",),
                      default={"name": "rule-and-judge", "options": {"judge": {
                          "name": "llm-judge", "options": {"votes": 5, "adapter_role": "refiner"}}}},
                      doc="one critique per answer: No where a verifiable constraint fails, else the "
                          "LLM judge's majority Yes/No (the refiner adapter judges)"),
        "failing": Role(kind="filter", takes=("critique",), gives=("critique",),
                        default={"name": "verdict", "options": {"keep": "no"}},
                        doc="keeps the critiques of failing answers: the roots to refine"),
        "refine": Role(kind="refiner", takes=("response", "critique"), gives=("refinement",),
                       default={"name": "tree-search", "options": {"judge": {"adapter_role": "refiner"}}},
                       doc="one refined answer per root, in root order (side outputs: the search tree)"),
        "screen": Role(kind="filter", takes=("refinement",), gives=("refinement",), optional=True,
                       default="non-answer",
                       doc="drops final refinements that are not answers (a verdict, empty, the critique) "
                           "before they are judged or paired; each drop recorded with its reason"),
    }
    trains = {"policy": ("preference_pair",), "refiner": ("training_example",)}

    def run_iteration(self, runner: Any, iteration: int) -> None:
        opts = self.options
        data = runner.config.data
        seeds = runner.ingest("seeds", load_tasks(data.source or DEFAULT_SOURCE, data.limit))
        tasks = runner.call("evolve", seeds)
        responses: list[Response] = runner.call("respond", tasks)
        critiques: list[Critique] = runner.call("judge", responses)
        by_id: dict[str, Response] = {r.id: r for r in responses}
        failing: list[Critique] = runner.call("failing", critiques)
        roots = [by_id[c.parent_ids("judges")[0]] for c in failing]
        finals = runner.call("refine", roots, failing)
        if len(finals) != len(roots):
            raise ValueError(f"SPaR's refine role gives one refinement per failing answer; stage "
                             f"{runner.resolved.stages['refine'].info.name!r} gave {len(finals)} "
                             f"for {len(roots)}")
        nodes = [r for r in finals.side if isinstance(r, Refinement)]
        node_crits = [c for c in finals.side if isinstance(c, Critique)]
        answers = {r.id for r in runner.call("screen", finals)}
        values = _values(runner, [f for f in finals if f.id in answers])
        kept = [(f, root) for f, root in zip(finals, roots, strict=True)
                if f.id in answers and values[f.id] > opts.gate]
        pairs = [_pair(f, root) for f, root in kept][:opts.max_pairs]
        runner.ingest("pairs", pairs)

        crit_of = {c.parent_ids("judges")[0]: c for c in [*critiques, *node_crits]}
        judged: dict[str, Response] = {**by_id, **{n.id: n for n in [*nodes, *finals]}}
        rft: list[TrainingExample] = []
        refine_stage = runner.stage("refine")
        if opts.refine_chains and isinstance(refine_stage, Prompted):
            for final, _ in kept:
                rft += _chain_examples(refine_stage, _chain(final, judged), judged, crit_of)
        if opts.judge_samples:  # each critique in the chat format of the judge that wrote it
            rft += _judge_examples(runner.stage("judge"), critiques, judged)
            rft += _judge_examples(getattr(refine_stage, "critic", None), node_crits, judged)
        rft = rft[:opts.max_rft]
        runner.ingest("rft", rft)
        runner.train(pairs, role="policy")
        runner.train(rft, role="refiner")


def _values(runner: Any, finals: Sequence[Refinement]) -> dict[str, float]:
    """Each final's Yes share: its own ``value``, else the judge role's vote share on it."""
    unscored = [f for f in finals if f.value is None]
    verdicts = runner.call("judge", unscored, key="finals") if unscored else []
    share = {c.parent_ids("judges")[0]: c.vote_share for c in verdicts}
    return {f.id: f.value if f.value is not None else share.get(f.id, 0.0) for f in finals}


def _chain(node: Refinement, judged: dict[str, Response]) -> list[Refinement]:
    """The refinements from the root's first child down to ``node`` (following ``refines`` links)."""
    path = [node]
    while (up := path[-1].parent_ids("refines")) and isinstance(judged.get(up[0]), Refinement):
        path.append(judged[up[0]])  # type: ignore[arg-type]
    return path[::-1]


def _pair(final: Refinement, root: Response) -> PreferencePair:
    return PreferencePair(prompt=root.prompt, chosen=final.text, rejected=root.text,
                          model_version=root.model_version,
                          parents=[Link(id=final.id, role="chosen"), Link(id=root.id, role="rejected")])


def _example(chat: Messages, answer: str, parents: list[Link]) -> TrainingExample:
    """A refiner example: the stage's chat (without an assistant prefix, which ``answer`` holds)."""
    ask = chat[:-1] if chat and chat[-1]["role"] == "assistant" else chat
    return TrainingExample(messages=[*ask, {"role": "assistant", "content": answer}],
                           target_role="refiner", parents=parents)


def _chain_examples(stage: Prompted, path: Sequence[Refinement], judged: dict[str, Response],
                    crit_of: dict[str, Critique]) -> list[TrainingExample]:
    """One refiner example per step of a successful chain: (parent, its critique) -> child."""
    out = []
    for node in path:
        parent = judged[node.parent_ids("refines")[0]]
        crit = crit_of[parent.id]
        (chat,) = stage.messages([parent], [crit])
        links = [Link(id=node.id, role="input"), Link(id=parent.id, role="refines"),
                 Link(id=crit.id, role="judges")]
        out.append(_example(chat, stage.completion(node), links))
    return out


def _judge_examples(judge: object, critiques: Sequence[Critique],
                    judged: dict[str, Response]) -> list[TrainingExample]:
    """Judge samples that agree with their critique's majority verdict (ties have none)."""
    if not isinstance(judge, Prompted):
        return []
    out = []
    for crit in critiques:
        target = judged.get(next(iter(crit.parent_ids("judges")), ""))
        if crit.verdict is None or target is None:
            continue
        (chat,) = judge.messages([target])
        agreeing = [t for t, v in zip(crit.samples, crit.sample_verdicts, strict=True) if v is crit.verdict]
        for text in dict.fromkeys(agreeing):
            out.append(_example(chat, text, [Link(id=crit.id, role="judges"),
                                              Link(id=target.id, role="input")]))
    return out


@hookimpl
def register_loops() -> list[type]:
    return [Spar]
