"""The spar loop end to end on a scripted sampler, in process: which answers fail, what the tree
search makes of them, the pairs and refiner data it derives, and that the whole tree is in lineage.

The script: the actor's sample 0 is judged good (3 Yes of 3), the others bad (1 Yes of 3); a rewrite of
T is 'T+fix'; a node one rewrite deep is judged bad (0 of 3), two deep good (3 of 3). So every
failing answer becomes a tree of depth 2 whose final node passes the gate.
"""

from __future__ import annotations

import json
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from engine import hookimpl
from engine.config import parse_config, resolve_config
from engine.contracts import Stage
from engine.lineage import queries
from engine.lineage.store import LineageStore
from engine.manager import create_plugin_manager
from engine.records import Critique, Response
from engine.runtime.run import start_run
from engine.sampling.protocol import SampleRequest
from engine.toolkit.judging import JudgeOptions, make_critique
from engine.toolkit.prompting import sample_chats
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


class BrevityOptions(BaseModel):  # no extra="forbid": the engine refuses unknown keys anyway
    votes: int = 3


class SparScript(ScriptedSampler):
    name = "spar-script"

    def __init__(self, options: Any = None, context: Any = None) -> None:
        super().__init__(options, context, script=answer)


def script_plugin() -> types.ModuleType:
    mod = types.ModuleType("spar_script")
    mod.register_samplers = hookimpl(lambda: [SparScript])  # type: ignore[attr-defined]
    return mod


LLM_JUDGE = {"name": "llm-judge", "options": {"votes": 3, "adapter_role": "refiner"}}
"""The LLM judge alone (no constraint rule): the script's answers are not written to their tasks'
constraints, so these tests follow the script's votes (test_constraint_check.py runs the rule)."""


def run(tmp_path: Path, **extra: Any) -> tuple[LineageStore, str]:
    pm = create_plugin_manager(entry_points=False, plugins=[script_plugin()])
    cfg = {"loop": "spar", "iterations": 1, "output_dir": str(tmp_path), "runtime": {"ray": False},
           "sampler": "spar-script", "data": {"limit": 4},
           "stages": {"respond": {"options": {"n": 3}}, "judge": LLM_JUDGE,
                      "refine": {"options": {"branch": 2, "select": 1, "depth": 2,
                                             "judge": {"votes": 3}, "rule": None}}}, **extra}
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
        assert funnel["refine"] == 8, "one final node per root"
        assert funnel["pairs"] == 8
        nodes = queries.records_of_kind(store, run_id, 1, "refinement")
        assert len(nodes) == 8 * 4, "the whole tree is in lineage: 2 children at depth 1, 2 at depth 2"
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


def test_spar_judges_the_finals_of_a_refiner_that_gives_no_value(tmp_path: Path) -> None:
    store, run_id = run(tmp_path, stages={"refine": {"name": "critique-refine"}, "judge": LLM_JUDGE,
                                          "respond": {"options": {"n": 2}}})
    try:
        funnel = {r["role"]: r["n_out"] for r in queries.funnel(store, run_id) if r["iteration"] == 1}
        assert funnel["refine"] == funnel["failing"] == 4 and funnel["judge:finals"] == 4
        assert funnel["pairs"] == 0, "a one-step fix is judged bad by the script (0 of 3 Yes)"
    finally:
        store.close()


class BrevityJudge(Stage[BrevityOptions]):
    """A third-party judge, built here: its own prompt format, the run's sampler, the toolkit's parser."""

    kind = "critic"
    name = "brevity-judge"
    accepts = ("response",)
    produces = ("critique",)

    def messages(self, responses: Sequence[Response]) -> list[list[dict[str, str]]]:
        return [[{"role": "user", "content": f"You are a strict judge of brevity.\nResponse:\n{r.text}"}]
                for r in responses]

    def completion(self, output: Critique) -> str:
        return output.text

    def critique(self, responses: Sequence[Response]) -> list[Critique]:
        opts = JudgeOptions(votes=self.options.votes)
        sampled = sample_chats(self.context, self.name, self.messages(responses), opts, n=opts.votes)
        return [make_critique(r.id, texts, version, opts)
                for r, (texts, version) in zip(responses, sampled, strict=True)]


def test_a_third_party_judge_bound_to_spar_runs_an_iteration(tmp_path: Path) -> None:
    mod = types.ModuleType("brevity_plugin")
    mod.register_critics = hookimpl(lambda: [BrevityJudge])  # type: ignore[attr-defined]
    pm = create_plugin_manager(entry_points=False, plugins=[script_plugin(), mod])
    cfg = {"loop": "spar", "iterations": 1, "output_dir": str(tmp_path), "runtime": {"ray": False},
           "sampler": "spar-script", "data": {"limit": 2},
           "stages": {"respond": {"options": {"n": 3}}, "judge": {"name": "brevity-judge"},
                      "refine": {"options": {"branch": 2, "select": 1, "depth": 2, "judge": {"votes": 3},
                                             "rule": None}}}}
    run_dir = start_run(resolve_config(parse_config(cfg), pm), pm)
    store = LineageStore.for_run_dir(run_dir)
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    try:
        funnel = {r["role"]: r["n_out"] for r in queries.funnel(store, run_id) if r["iteration"] == 1}
        assert funnel["judge"] == 6 and funnel["failing"] == 4 and funnel["pairs"] == 4
        rft = [payload(r) for r in queries.records_of_kind(store, run_id, 1, "training_example")]
        brevity = [r for r in rft if r["messages"][0]["content"].startswith("You are a strict judge of")]
        assert len(brevity) == 2 * 3 + 4 * 2, "the third-party judge's own format: agreeing votes only"
    finally:
        store.close()
