"""The spar loop end to end on a scripted sampler, in process: which answers fail, what the tree
search makes of them, the pairs and refiner data it derives, and that the whole tree is in lineage.

The script: the actor's sample 0 is judged good (3 Yes of 3), the others bad (1 Yes of 3); a rewrite of
T is 'T+fix'; a node one rewrite deep is judged bad (0 of 3), two deep good (3 of 3). So every
failing answer becomes a tree of depth 2 whose final node passes the gate.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest

from engine import hookimpl
from engine.config import parse_config, resolve_config
from engine.lineage import queries
from engine.lineage.store import LineageStore
from engine.manager import create_plugin_manager
from engine.runtime.run import start_run
from engine.sampling.protocol import SampleRequest
from plugins.sampler_scripted import ScriptedSampler


def answer(req: SampleRequest, i: int) -> str:
    content = req.messages[-1][1] if req.messages else ""
    if "strict judge" in content:
        text = content.split("Response:\n", 1)[1].strip()
        yes = {0: 0, 1: 0, 2: 3}[text.count("+fix")] if "+fix" in text else (3 if text.endswith("#0") else 1)
        return f"Reason {i}. Final judgement: {'Yes' if i < yes else 'No'}"
    if "improved response" in content:
        text = content.split("Response:\n", 1)[1].split("\n\nCritique:", 1)[0].strip()
        return f"Reflection. [START]{text}+fix[END]"
    return f"answer to {content[:24]!r} #{i}"


class SparScript(ScriptedSampler):
    name = "spar-script"

    def __init__(self, options: Any = None, context: Any = None) -> None:
        super().__init__(options, context, script=answer)


def script_plugin() -> types.ModuleType:
    mod = types.ModuleType("spar_script")
    mod.register_samplers = hookimpl(lambda: [SparScript])  # type: ignore[attr-defined]
    return mod


def run(tmp_path: Path, **extra: Any) -> tuple[LineageStore, str]:
    pm = create_plugin_manager(entry_points=False, plugins=[script_plugin()])
    cfg = {"loop": "spar", "iterations": 1, "output_dir": str(tmp_path), "runtime": {"ray": False},
           "sampler": "spar-script", "data": {"limit": 4},
           "stages": {"respond": {"options": {"n": 3}}, "judge": {"options": {"votes": 3}},
                      "refine": {"options": {"branch": 2, "select": 1, "depth": 2,
                                             "judge": {"votes": 3}}}}, **extra}
    run_dir = start_run(resolve_config(parse_config(cfg), pm), pm)
    return LineageStore.for_run_dir(run_dir), json.loads((run_dir / "run.json").read_text())["run_id"]


def payload(row: dict) -> dict:
    return json.loads(row["payload"]) if isinstance(row["payload"], str) else row["payload"]


def test_spar_pairs_come_from_failing_answers_and_their_refined_final_node(tmp_path: Path) -> None:
    store, run_id = run(tmp_path)
    try:
        funnel = {r["role"]: r["n_out"] for r in queries.funnel(store, run_id) if r["iteration"] == 1}
        assert funnel["evolve"] == 4 and funnel["respond"] == 12 and funnel["judge"] == 12
        assert funnel["failing"] == 8, "samples 1 and 2 of each task fail"
        assert funnel["refine"] == 8 * 4, "each root: 2 children at depth 1, 2 at depth 2"
        assert funnel["node-critiques"] == 32 and funnel["pairs"] == 8
        responses = {r["id"]: payload(r) for r in queries.records_of_kind(store, run_id, 1, "response")}
        for pair in queries.records_of_kind(store, run_id, 1, "preference_pair"):
            body = payload(pair)
            assert body["chosen"].endswith("+fix+fix") and body["chosen"].startswith(body["rejected"])
            edges = {row["role"]: row["kind"] for row in queries.ancestors(store, pair["id"], max_depth=1)}
            assert edges == {"chosen": "refinement", "rejected": "response"}
            rejected = [row for row in queries.ancestors(store, pair["id"], max_depth=1)
                        if row["role"] == "rejected"][0]
            assert not responses[rejected["id"]]["text"].endswith("#0"), "a passing answer is never rejected"
            kinds = {row["kind"] for row in queries.ancestors(store, pair["id"])}
            assert {"refinement", "response", "critique", "task"} <= kinds
    finally:
        store.close()


def test_spar_tree_and_refiner_data_are_in_lineage(tmp_path: Path) -> None:
    store, run_id = run(tmp_path)
    try:
        nodes = queries.records_of_kind(store, run_id, 1, "refinement")
        by_id = {n["id"]: payload(n) for n in nodes}
        for node in nodes:  # every node: its parent (node or root) and the critique that conditioned it
            up = {row["role"]: row["kind"] for row in queries.ancestors(store, node["id"], max_depth=1)}
            assert up["refines"] in {"refinement", "response"} and up["input"] == "critique"
        critiques = queries.records_of_kind(store, run_id, 1, "critique")
        judged = {row["id"] for c in critiques for row in queries.ancestors(store, c["id"], max_depth=1)}
        assert set(by_id) <= judged, "every node has its own judge critique in the store"
        rft = [payload(r) for r in queries.records_of_kind(store, run_id, 1, "training_example")]
        assert rft and all(r["target_role"] == "refiner" for r in rft)
        chains = [r for r in rft if "[START]" in r["messages"][1]["content"]]
        assert len(chains) == 8 * 2, "two steps per successful chain"
        verdicts = [r for r in rft if "Final judgement" in r["messages"][1]["content"]]
        # agreeing votes: 4 good answers x 3 Yes + 8 bad x 2 No + 16 depth-1 nodes x 3 No + 16 depth-2 x 3 Yes
        assert len(verdicts) == 12 + 16 + 48 + 48
    finally:
        store.close()


def test_spar_options_cap_and_switch_off_refiner_data(tmp_path: Path) -> None:
    store, run_id = run(tmp_path, loop={"name": "spar", "options": {
        "judge_samples": False, "max_pairs": 3}})
    try:
        rft = [payload(r) for r in queries.records_of_kind(store, run_id, 1, "training_example")]
        assert rft and all("[START]" in r["messages"][1]["content"] for r in rft)
        assert len(queries.records_of_kind(store, run_id, 1, "preference_pair")) == 3
    finally:
        store.close()


def test_spar_refuses_a_refiner_that_is_not_a_tree_search(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not made by the tree-search refiner"):
        run(tmp_path, stages={"refine": {"name": "critique-refine"}, "respond": {"options": {"n": 2}}})
