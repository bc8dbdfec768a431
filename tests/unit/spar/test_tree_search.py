"""The tree-search refiner on a scripted sampler: BFS/DFS paths, gate, budget, fallback, batching.

The script names each rewrite after its parent (``a`` -> ``a.0``, ``a.1``, ``a.2``) and gives a node
as many Yes votes as the test's table says, so a test decides which nodes pass the gate.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from engine.contracts import StageContext
from engine.records import Critique, Link, Refinement, Response, Task
from engine.sampling.protocol import SampleRequest
from engine.toolkit.judging import make_critique
from plugins.refiner_tree import TreeOptions, TreeSearchRefiner

JUDGE, REFINE = "strict judge", "improved response"


def script(yes: dict[str, int], seen: list[SampleRequest] | None = None) -> Any:
    """Rewrite i of text T is 'T.i'; judgement i of T says Yes when i < yes.get(T, 0)."""
    def answer(req: SampleRequest, i: int) -> str:
        if seen is not None and i == 0:
            seen.append(req)
        content = req.messages[-1][1] if req.messages else ""
        text = content.split("Response:\n", 1)[1].split("\n\nCritique:", 1)[0].strip()
        if JUDGE in content:
            return f"Looks {'fine' if i < yes.get(text, 0) else 'wrong'}. Final judgement: " + (
                "Yes" if i < yes.get(text, 0) else "No")
        assert REFINE in content
        return f"Let me fix it. [START]{text}.{i}[END]"
    return answer


def roots(*texts: str) -> tuple[list[Response], list[Critique]]:
    resp = [Response(text=t, prompt=f"Say {t}.", parents=[Link(id=Task(prompt=f"Say {t}.").id)])
            for t in texts]
    return resp, [Critique(verdict=False, text="bad", parents=[Link(id=r.id, role="judges")]) for r in resp]


def refiner(scripted_sampler: Any, yes: dict[str, int], seen: list[SampleRequest] | None = None,
            adapters: dict[str, str] | None = None, **options: Any) -> TreeSearchRefiner:
    sampler = scripted_sampler(script=script(yes, seen))
    ctx = StageContext(seed=7, sampler=sampler, adapters=adapters or {})
    return TreeSearchRefiner(TreeOptions.model_validate(options), ctx)


class Tree(list[Refinement]):
    """Every node a search made (its side outputs), with its final nodes and node critiques."""

    def __init__(self, nodes: list[Refinement], finals: list[Refinement], crits: list[Critique]) -> None:
        super().__init__(nodes)
        self.finals, self.crits = finals, crits


def search(stage: TreeSearchRefiner, responses: list[Response], critiques: list[Critique]) -> Tree:
    stage.context.emitted.clear()
    finals = stage.refine(responses, critiques)
    side = stage.context.emitted
    return Tree([r for r in side if isinstance(r, Refinement)], finals,
                [c for c in side if isinstance(c, Critique)])


def final_nodes(out: Tree) -> list[Refinement]:
    return out.finals


def node_critiques(out: Tree) -> list[Critique]:
    return out.crits


def chain(nodes: list[Refinement], node: Refinement) -> list[Refinement]:
    by_id = {n.id: n for n in nodes}
    path = [node]
    while (up := path[-1].parent_ids("refines")) and up[0] in by_id:
        path.append(by_id[up[0]])
    return path[::-1]


def texts(nodes: list[Refinement]) -> list[str]:
    return [n.text for n in nodes]


def test_bfs_finds_the_passing_node_at_depth_two(scripted_sampler: Any) -> None:
    stage = refiner(scripted_sampler, {"a.1": 1, "a.1.2": 3})  # a.1 ranks first; a.1.2 has 3/5 > 0.5
    resp, crits = roots("a")
    out = search(stage, resp, crits)
    assert texts(out) == ["a.0", "a.1", "a.2", "a.1.0", "a.1.1", "a.1.2", "a.0.0", "a.0.1", "a.0.2"]
    [final] = final_nodes(out)
    assert (final.text, final.depth, final.value) == ("a.1.2", 2, 0.6)
    assert texts(chain(out, final)) == ["a.1", "a.1.2"]
    assert [n.value for n in out[:3]] == [0.0, 0.2, 0.0]


def test_dfs_goes_down_the_best_child_then_backtracks(scripted_sampler: Any) -> None:
    stage = refiner(scripted_sampler, {"a.1": 1, "a.0.1": 4}, strategy="dfs", depth=2)
    resp, crits = roots("a")
    out = search(stage, resp, crits)
    assert texts(out) == ["a.0", "a.1", "a.2", "a.1.0", "a.1.1", "a.1.2", "a.0.0", "a.0.1", "a.0.2"]
    [final] = final_nodes(out)
    assert (final.text, final.depth, final.value) == ("a.0.1", 2, 0.8)
    assert stage.context.sampler.calls == 6  # type: ignore[union-attr]  # 3 steps: root, a.1, a.0


def test_dfs_stops_on_the_best_childs_subtree(scripted_sampler: Any) -> None:
    stage = refiner(scripted_sampler, {"a.1": 1, "a.1.0.2": 3}, strategy="dfs", depth=3)
    out = search(stage, *roots("a"))
    assert texts(out)[-1] == "a.1.0.2" and len(out) == 9  # a, a.1, a.1.0 expanded; never a.0
    assert texts(chain(out, final_nodes(out)[0])) == ["a.1", "a.1.0", "a.1.0.2"]


@pytest.mark.parametrize("strategy", ["bfs", "dfs"])
def test_gate_stops_expansion(scripted_sampler: Any, strategy: str) -> None:
    out = search(refiner(scripted_sampler, {"a.2": 3}, strategy=strategy), *roots("a"))
    assert texts(out) == ["a.0", "a.1", "a.2"]
    assert final_nodes(out)[0].text == "a.2"
    at_gate = search(refiner(scripted_sampler, {"a.2": 3}, strategy=strategy, gate=0.6), *roots("a"))
    assert len(at_gate) > 3, "a value equal to the gate does not stop the search"


@pytest.mark.parametrize("strategy", ["bfs", "dfs"])
def test_budget_caps_the_nodes_of_each_root(scripted_sampler: Any, strategy: str) -> None:
    stage = refiner(scripted_sampler, {}, strategy=strategy, budget=4, depth=3)
    out = search(stage, *roots("a", "b"))
    assert [chain(out, n)[0].parent_ids("refines")[0] for n in out] == (
        [roots("a")[0][0].id] * 4 + [roots("b")[0][0].id] * 4)
    assert texts(out)[:4] == ["a.0", "a.1", "a.2", "a.0.0"]
    unlimited = search(refiner(scripted_sampler, {}, strategy=strategy, depth=3), *roots("a"))
    # BFS keeps the 2 best of each level; DFS expands root, 2 children, 2 grandchildren under each
    assert len(unlimited) == (3 + 6 + 6 if strategy == "bfs" else 3 * (1 + 2 + 4))


def test_fallback_is_the_best_node_found(scripted_sampler: Any) -> None:
    out = search(refiner(scripted_sampler, {"a.1": 1, "a.1.1": 2, "a.0.2": 1}, depth=2), *roots("a"))
    [final] = final_nodes(out)
    assert (final.text, final.value) == ("a.1.1", 0.4)
    assert len(out.finals) == 1
    ties = search(refiner(scripted_sampler, {}, depth=2), *roots("a"))
    assert final_nodes(ties)[0] is ties[-1], "among equal values the later node is chosen"


@pytest.mark.parametrize("strategy", ["bfs", "dfs"])
def test_two_sampler_calls_per_step_whatever_the_roots(scripted_sampler: Any, strategy: str) -> None:
    calls = []
    for n_roots in (1, 5):
        seen: list[SampleRequest] = []
        stage = refiner(scripted_sampler, {}, seen, strategy=strategy, depth=2)
        out = search(stage, *roots(*"abcde"[:n_roots]))
        calls.append(stage.context.sampler.calls)  # type: ignore[union-attr]
        assert len(out) == n_roots * 9
        assert len(seen) == n_roots * (3 + 9), "every node rewritten and judged, just batched"
    assert calls == ([4, 4] if strategy == "bfs" else [6, 6])  # BFS: 2 levels; DFS: root, a.0, a.1


def test_roots_that_finish_early_leave_the_batch(scripted_sampler: Any) -> None:
    stage = refiner(scripted_sampler, {"a.0": 5}, depth=3)
    out = search(stage, *roots("a", "b"))
    assert texts(out)[:3] == ["a.0", "a.1", "a.2"] and len(out) == 3 + (3 + 6 + 6)
    sampler = stage.context.sampler
    assert sampler.calls == 6  # type: ignore[union-attr]
    # depth 1: 2 rewrite requests (a, b) and 6 judged; depths 2 and 3: b alone, 2 parents and 6 judged
    assert sampler.requests_seen == 8 + 8 + 8  # type: ignore[union-attr]
    assert texts(final_nodes(out)) == ["a.0", "b.0.1.2"]


def test_same_input_same_ids(scripted_sampler: Any) -> None:
    first = search(refiner(scripted_sampler, {"b.1": 2}), *roots("a", "b"))
    again = search(refiner(scripted_sampler, {"b.1": 2}), *roots("a", "b"))
    assert [n.id for n in first] == [n.id for n in again]
    assert [c.id for c in node_critiques(first)] == [c.id for c in node_critiques(again)]
    assert len({n.id for n in first}) == len(first)


def test_every_link_points_at_a_known_record(scripted_sampler: Any) -> None:
    resp, crits = roots("a", "b")
    out = search(refiner(scripted_sampler, {"a.1": 1}, depth=3), resp, crits)
    node_crits = node_critiques(out)
    known = {r.id for r in resp}
    critique_of = {c.parent_ids("judges")[0]: c for c in crits + node_crits}
    for node, crit in zip(out, node_crits, strict=True):
        parent, used = node.parent_ids("refines"), node.parent_ids("input")
        assert len(parent) == 1 and parent[0] in known, "the parent node comes first"
        assert used == [critique_of[parent[0]].id], "the critique the rewrite was conditioned on"
        assert crit.parent_ids("judges") == [node.id] and crit.vote_share == node.value
        assert crit.id == make_critique(node.id, crit.samples, crit.model_version, TreeOptions().judge).id
        known.add(node.id)


def test_outputs_reloaded_from_the_store_read_the_same(scripted_sampler: Any, lineage_store: Any) -> None:
    out = search(refiner(scripted_sampler, {"a.1.2": 3}), *roots("a"))
    lineage_store.create_run("r", config={}, config_hash="h", code_version="c", loop="spar")
    exec_id = lineage_store.start_stage("r", 0, "refine", kind="refiner", stage="tree-search", plugin="p",
                                        plugin_version="0", options={}, model_version=None)
    lineage_store.write_records("r", 0, exec_id, [*out.finals, *out, *out.crits])
    stored = lineage_store.records_of(exec_id)
    back = Tree([r for r in stored if isinstance(r, Refinement)], stored[:1],  # type: ignore[list-item]
                [c for c in stored if isinstance(c, Critique)])
    assert {n.id for n in back} == {n.id for n in out} and len(back) == len(out)
    assert [n.id for n in final_nodes(back)] == [n.id for n in final_nodes(out)]
    got, want = chain(back, final_nodes(back)[0]), chain(out, final_nodes(out)[0])
    assert [n.id for n in got] == [n.id for n in want]
    assert [c.id for c in node_critiques(back)] == [c.id for c in node_critiques(out)]


def test_adapter_roles_and_seeds(scripted_sampler: Any) -> None:
    seen: list[SampleRequest] = []
    adapters = {"refiner": "/adapters/refiner", "policy": "/adapters/policy"}
    search(refiner(scripted_sampler, {}, seen, adapters=adapters, depth=2), *roots("a"))
    rewrites = [r for r in seen if REFINE in r.messages[-1][1]]  # type: ignore[index]
    judged = [r for r in seen if JUDGE in r.messages[-1][1]]  # type: ignore[index]
    assert {r.adapter for r in rewrites} == {"/adapters/refiner"}
    assert {r.adapter for r in judged} == {"/adapters/policy"}
    assert {(r.params.n, r.params.temperature, r.params.top_p) for r in judged} == {(5, 0.7, 1.0)}
    assert {(r.params.n, r.params.temperature, r.params.top_p) for r in rewrites} == {(3, 0.7, 1.0)}
    assert len({r.params.seed for r in rewrites}) == 2, "each depth samples with its own seed"


def test_bad_inputs_and_options_are_clear_errors(scripted_sampler: Any) -> None:
    resp, crits = roots("a", "b")
    stage = refiner(scripted_sampler, {})
    with pytest.raises(ValueError, match="2 responses but 1 critiques"):
        search(stage, resp, crits[:1])
    with pytest.raises(ValueError, match="not its paired response"):
        search(stage, resp, crits[::-1])
    assert stage.refine([], []) == []
    with pytest.raises(ValidationError, match="branch"):
        TreeOptions.model_validate({"refine": {"n": 2}})
    with pytest.raises(ValidationError):
        TreeOptions.model_validate({"strategy": "astar"})
    with pytest.raises(ValidationError):
        TreeOptions.model_validate({"votes": 3})  # judge options live under 'judge'
    opts = TreeOptions.model_validate({"judge": {"votes": 3}, "refine": {"temperature": 0.9}})
    assert (opts.judge.votes, opts.refine.adapter_role, opts.judge.adapter_role) == (3, "refiner", "policy")
