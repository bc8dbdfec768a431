"""The selfcodealign loop end to end with the scripted sampler, in process, in real bubblewrap:
funnel, lineage from every training example back to its seed, and the humaneval evaluator wired in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import parse_config, resolve_config
from engine.lineage import queries
from engine.lineage.store import LineageStore
from engine.manager import create_plugin_manager
from engine.runtime.run import start_run

ANSWER = ("string reversal, slicing\n```python\ndef rev(s):\n    return s[::-1]\n```\n"
          "```python\nassert rev('ab') == 'ba'\nassert rev('') == ''\n```")


def config(tmp_path: Path) -> dict:
    return {
        # every sample is the same answer: no test by another author, so dual agreement keeps none
        # (test_sca_agreement.py); this test trains on own-tests passes to follow lineage to seeds
        "loop": {"name": "selfcodealign", "options": {"mode": "own-tests"}},
        "name": "sca-test", "iterations": 2, "output_dir": str(tmp_path),
        "runtime": {"ray": False},
        "sampler": {"name": "scripted", "options": {"responses": [ANSWER]}},
        "sandbox": {"name": "bubblewrap", "options": {"concurrency": 1, "disk_mb": 16}},
        "stages": {"seeds": {"options": {"count": 3}}, "responses": {"options": {"n": 2}}},
        "evaluators": [{"name": "humaneval", "options": {"subset": 2}}],
    }


def test_loop_records_lineage_to_seeds(tmp_path: Path) -> None:
    from sandbox.bubblewrap import probe

    if (why := probe()) is not None:
        pytest.skip(f"bubblewrap unavailable here: {why}")
    pm = create_plugin_manager(entry_points=False)
    resolved = resolve_config(parse_config(config(tmp_path)), pm)
    run_dir = start_run(resolved, pm)
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    store = LineageStore.for_run_dir(run_dir)
    try:
        funnel = {(r["iteration"], r["role"]): r["n_out"] for r in queries.funnel(store, run_id)}
        assert funnel[(1, "seeds")] == 3 and funnel[(1, "concepts")] == 3 and funnel[(1, "tasks")] == 3
        assert funnel[(1, "responses")] == 6 and funnel[(1, "execute")] == 6 and funnel[(1, "passed")] == 6
        assert funnel[(1, "agreed")] == 0, "identical samples: nothing agrees with another author"
        assert funnel[(1, "dedup")] == 1, "every task has the same text: one survives"
        seeds = {it: {_payload(r)["source"] for r in queries.records_of_kind(store, run_id, it, "seed")}
                 for it in (1, 2)}
        assert len(seeds[1]) == 3 and not seeds[1] & seeds[2]
        for it in (1, 2):
            (example,) = queries.records_of_kind(store, run_id, it, "training_example")
            kinds = {row["kind"] for row in queries.ancestors(store, example["id"])}
            assert {"seed", "concepts", "task", "response", "execution", "seed_request"} <= kinds
        rows = [(m["iteration"], m["evaluator"], m["metric"], m["value"])
                for m in queries.metrics(store, run_id)]
        assert sorted(rows) == [(it, "humaneval", "pass@1", 0.0) for it in (0, 1, 2)]
    finally:
        store.close()


def _payload(row: dict) -> dict:
    return json.loads(row["payload"]) if isinstance(row["payload"], str) else row["payload"]
