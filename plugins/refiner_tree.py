"""The ``tree-search`` refiner: SPaR's refinement tree search (BFS or DFS), one batch per depth.

What it is: every (response, critique) pair is the root of a tree. Expanding a node samples
``branch`` rewrites of it conditioned on its critique (the ``critique-refine`` prompt, markers and
extraction) and judges each child with ``judge.votes`` sampled critiques (the ``llm-judge`` prompt,
parser, majority and tie policy); a node's value is its Yes vote share. BFS (the default) expands
a whole level and keeps its ``select`` best children (greedy); DFS expands the best child first
and backtracks to the next selected one. A root stops when an expansion's best child has a value
above ``gate`` (that child is its final node), when it has made ``budget`` nodes, or at ``depth``
levels below the root; then its final node is the best node found (ties: the later one). The
roots advance together in the episode driver's step loop (engine.episodes.drive): each step
sends ONE sampler call with the rewrites of every root's frontier and ONE with all their
judgements (DFS: every root's stack advances one node per step).
Options: ``strategy``, ``branch``, ``select``, ``depth``, ``budget``, ``gate`` (SPaR's defaults
bfs/3/2/3/1000/0.5), ``refine.*`` (the rewrite prompt's options; adapter role ``refiner``) and
``judge.*`` (the node judge, an ``llm-judge`` built through the plugin manager; ``votes`` 5, adapter
role ``policy``); both sample at temperature 0.7 and top_p 1.0, SPaR's search settings. ``rule``
(default ``{name: constraint-check}``; null: the LLM judge alone) makes the node critic
``rule-and-judge``: a node that fails a verifiable constraint of its task is judged No (value 0)
without asking the LLM, so a final node above the gate passes every checkable constraint.
``screen`` (default ``{name: non-answer}``; null: none) is a filter every new node goes through
before it is judged: a node it drops (a verdict, an empty text, a copy of its critique) gets value
0, is never expanded, and its critique is the filter's rejection record (text and ``meta.reason``).

Output of ``refine``: ONE refinement per (response, critique) pair, in input order: the root's
final node (``value``: its Yes share). Side outputs (``emit``; the runner writes them under this
stage's execution and hands them to the loop as ``outputs.side``): every node of every tree
(grouped by root, in creation order, a node's parent before it) and each node's judge Critique
(parent: the node, role ``judges``). A node's parents are ``Link(parent node or root, "refines")``
and ``Link(critique of that parent, "input")``; its ``meta`` carries the parent's ``checks`` and
that critique's text (engine.toolkit.judging.carried); ``depth`` is the parent's plus one (a plain
response counts as 0), ``sample_index`` its place among its siblings. The node judge is exposed as
``critic`` (engine.contracts.Prompted), so a loop can render the chats the nodes were judged with.

What it is not: a sampler pool or a cache; a root is refined whatever its verdict (the loop picks
the failing ones); the sampled-but-unused rewrites of a parent cut short by the budget are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine import hookimpl
from engine.contracts import Critic, Filter, Messages, Stage
from engine.episodes import drive
from engine.records import Critique, Link, Refinement, Response
from engine.sampling.protocol import SampleResult
from engine.toolkit.judging import (
    JudgeOptions,
    RefineOptions,
    carried,
    extract,
    helper_problems,
    refine_messages,
)
from engine.toolkit.prompting import continued
from engine.toolkit.refining import StageChoice


class TreeRefineOptions(RefineOptions):
    """The rewrites: from the ``refiner`` adapter, temperature 0.7 and top_p 1.0 as in SPaR's search."""

    top_p: float = Field(1.0, gt=0.0, le=1.0)
    adapter_role: str | None = Field("refiner", description="adapter role the rewrites come from")


class TreeJudgeOptions(JudgeOptions):
    """The node judge: ``votes`` critiques at temperature 0.7, top_p 1.0 (SPaR's search), policy adapter."""

    top_p: float = Field(1.0, gt=0.0, le=1.0)


class TreeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: Literal["bfs", "dfs"] = "bfs"
    branch: int = Field(3, ge=1, le=64, description="rewrites sampled per expanded node")
    select: int = Field(2, ge=1, le=64, description="best children kept for expansion (greedy)")
    depth: int = Field(3, ge=1, le=32, description="maximum levels below a root")
    budget: int = Field(1000, ge=1, description="maximum nodes made per root")
    gate: float = Field(0.5, ge=0.0, le=1.0, description="stop a root when a child's value is above this")
    refine: TreeRefineOptions = Field(default_factory=TreeRefineOptions)
    judge: TreeJudgeOptions = Field(default_factory=TreeJudgeOptions)
    rule: StageChoice | None = Field(
        default_factory=lambda: StageChoice(name="constraint-check"),
        description="a rule critic whose No is final (node critic: rule-and-judge); null: the judge alone")
    screen: StageChoice | None = Field(
        default_factory=lambda: StageChoice(name="non-answer"),
        description="a filter each new node passes before it is judged (dropped: value 0); null: none")

    @model_validator(mode="after")
    def _one_rewrite_per_child(self) -> TreeOptions:
        if self.refine.n != 1:
            raise ValueError("refine.n must stay 1: the number of children per node is 'branch'")
        return self


@dataclass
class _Tree:
    """The search state of one root."""

    root: Response
    left: int  # budget: nodes it may still make
    base: int  # the root's depth
    nodes: list[Refinement] = field(default_factory=list)
    crits: dict[str, Critique] = field(default_factory=dict)  # node id (or root id) -> its critique
    todo: list[Response] = field(default_factory=list)  # BFS: next level's parents; DFS: stack, top last
    final: Refinement | None = None
    done: bool = False
    dropped: set[str] = field(default_factory=set)  # nodes the screen dropped: never expanded

    def level(self, node: Response) -> int:
        return node.depth - self.base if isinstance(node, Refinement) else 0


def _ranked(children: Sequence[Refinement]) -> list[Refinement]:
    return sorted(children, key=lambda n: -(n.value or 0.0))


class TreeSearchRefiner(Stage[TreeOptions]):
    kind = "refiner"
    name = "tree-search"
    accepts = ("response", "critique")
    produces = ("refinement",)
    _planned: list[tuple[_Tree, Response, int]]  # this step's expansions (tree, parent, children)
    _asked: list[Messages]  # and their rewrite chats

    @classmethod
    def preflight(cls, options: TreeOptions) -> list[str]:
        rule, screen = options.rule, options.screen
        return helper_problems({
            "options.rule": ("critic", rule.name, rule.options) if rule else None,
            "options.screen": ("filter", screen.name, screen.options) if screen else None})

    @cached_property
    def critic(self) -> Critic:
        """The node judge: the registered ``llm-judge`` with this search's ``judge`` options, behind
        the ``rule`` critic (``rule-and-judge``) unless ``rule`` is null."""
        quiet = replace(self.context, progress=lambda n: None)  # progress counts finished roots
        if self.options.rule is None:
            return cast(Critic, quiet.make_stage("critic", "llm-judge", self.options.judge))
        judge = StageChoice(name="llm-judge", options=self.options.judge.model_dump())
        return cast(Critic, quiet.make_stage("critic", "rule-and-judge",
                                             {"rule": self.options.rule, "judge": judge}))

    @cached_property
    def screen(self) -> Filter | None:
        """The filter new nodes pass before they are judged (None: no screen)."""
        if self.options.screen is None:
            return None
        quiet = replace(self.context, progress=lambda n: None)
        return cast(Filter, quiet.make_stage("filter", self.options.screen.name, self.options.screen.options))

    def _screened(self, nodes: list[Refinement]) -> dict[str, Critique]:
        """The nodes the screen drops, each with its rejection critique (the filter's side output,
        else a plain No)."""
        if self.screen is None or self.options.screen is None or not nodes:
            return {}
        emitted = cast(Stage[Any], self.screen).context.emitted
        emitted.clear()
        kept = {r.id for r in self.screen.filter(nodes)}
        said = {c.parent_ids("judges")[0]: c for c in emitted
                if isinstance(c, Critique) and c.parent_ids("judges")}
        emitted.clear()
        return {n.id: said.get(n.id) or Critique(verdict=False, text=f"dropped by {self.options.screen.name}",
                                                  parents=[Link(id=n.id, role="judges")],
                                                  meta={"kept": False, "reason": "screened"})
                for n in nodes if n.id not in kept}

    def messages(self, responses: Sequence[Response], critiques: Sequence[Critique]) -> list[Messages]:
        """The rewrite chats of (node, its critique) pairs."""
        return refine_messages(responses, critiques, self.options.refine)

    def completion(self, output: Refinement) -> str:
        """What the model writes for ``output``: its text between the markers."""
        return f"{self.options.refine.start_marker}{output.text}{self.options.refine.end_marker}"

    def refine(self, responses: Sequence[Response], critiques: Sequence[Critique]) -> list[Refinement]:
        if len(responses) != len(critiques):
            raise ValueError(f"{len(responses)} responses but {len(critiques)} critiques")
        for r, c in zip(responses, critiques, strict=True):
            if (judged := c.parent_ids("judges")) and r.id not in judged:
                raise ValueError(f"critique {c.id} judges {judged[0]}, not its paired response {r.id}")
        trees = [_Tree(root=r, left=self.options.budget, base=r.depth if isinstance(r, Refinement) else 0,
                       crits={r.id: c}, todo=[r]) for r, c in zip(responses, critiques, strict=True)]
        drive(self, trees, self.options.refine, done=lambda t: t.done, chats=self._plan, advance=self._grow,
              n=self.options.branch, seed=lambda step: 2 + 100 * step)
        finals: list[Refinement] = []
        for tree in trees:
            finals.append(tree.final or max(reversed(tree.nodes),
                                            key=lambda n: (n.value or 0.0, n.id not in tree.dropped)))
            self.emit([*tree.nodes, *(tree.crits[n.id] for n in tree.nodes)])
        return finals

    # -- one step (engine.episodes.drive): plan every active root's expansion, sample ALL their
    # rewrites in one call, judge all the children in one call, then BFS/DFS bookkeeping ---------
    def _plan(self, trees: list[_Tree], step: int) -> list[Messages]:
        """This step's (tree, parent, children) for every active root; the rewrite chats of the parents."""
        self._planned = []
        for tree in trees:  # BFS: the level's parents, best first; DFS: the top of the stack
            for parent in (tree.todo if self.options.strategy == "bfs" else [tree.todo.pop()]):
                count = min(self.options.branch, tree.left)
                if count or self.options.strategy == "dfs":
                    self._planned.append((tree, parent, count))
                    tree.left -= count
        self._asked = self.messages([p for _, p, _ in self._planned],
                                    [tree.crits[p.id] for tree, p, _ in self._planned])
        return self._asked

    def _grow(self, trees: list[_Tree], results: list[SampleResult], step: int) -> None:
        children = self._expand(trees, results)
        for tree, kids in zip(trees, children, strict=True):
            ranked = _ranked(kids)
            live = [n for n in ranked if n.id not in tree.dropped]  # a dropped node is not expanded
            if self.options.strategy == "bfs":
                if self._stop(tree, ranked) or step + 1 >= self.options.depth or not live:
                    tree.done = True
                tree.todo = list(live[:self.options.select])
            else:
                if not self._stop(tree, ranked):  # push the selected children, the best on top
                    deeper = [n for n in live[:self.options.select] if tree.level(n) < self.options.depth]
                    tree.todo.extend(reversed(deeper))
                tree.done = tree.done or not tree.todo
        self.context.progress(sum(t.done for t in trees))  # progress counts finished roots

    def _stop(self, tree: _Tree, ranked: list[Refinement]) -> bool:
        """Done when the best new child passes the gate (it is final) or the budget is spent."""
        if ranked and (ranked[0].value or 0.0) > self.options.gate:
            tree.final = ranked[0]
            tree.done = True
        elif tree.left <= 0:
            tree.done = True
        return tree.done

    def _expand(self, trees: list[_Tree], results: list[SampleResult]) -> list[list[Refinement]]:
        """Children made for each tree of ``trees`` (in order) from the planned (tree, parent, count)
        and the sampled rewrites of each parent; every child judged in one critic call."""
        opts = self.options
        made: dict[int, list[Refinement]] = {id(t): [] for t in trees}
        kids = []
        for (tree, parent, count), chat, result in zip(self._planned, self._asked, results, strict=True):
            for i, text in enumerate(continued(chat, result)[:count]):
                node = Refinement(
                    text=extract(text, opts.refine.start_marker, opts.refine.end_marker),
                    prompt=parent.prompt, sample_index=i, model_version=result.model_version,
                    depth=parent.depth + 1 if isinstance(parent, Refinement) else 1,
                    meta=carried(parent, tree.crits[parent.id]),
                    parents=[Link(id=parent.id, role="refines"),
                             Link(id=tree.crits[parent.id].id, role="input")])
                kids.append((tree, node))
        dropped = self._screened([node for _, node in kids])
        asked = [node for _, node in kids if node.id not in dropped]
        judged = iter(self.critic.critique(asked) if asked else [])
        for tree, node in kids:
            crit = dropped.get(node.id) or next(judged)
            if node.id in dropped:
                tree.dropped.add(node.id)
            node.value = crit.vote_share
            tree.crits[node.id] = crit
            tree.nodes.append(node)
            made[id(tree)].append(node)
        return [made[id(t)] for t in trees]


@hookimpl
def register_refiners() -> list[type]:
    return [TreeSearchRefiner]
