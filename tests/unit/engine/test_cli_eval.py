"""``autodidact eval``: a finished run's model versions (and a base model without a run) measured
again with any evaluator and options; the results land in the run's lineage beside the loop's own,
``autodidact report`` shows them with intervals and pairs them; bad input is one line, exit 2.
Everything runs in this process with the scripted sampler (configs/demo-scripted.yaml): seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.config import load_config
from engine.lineage import queries
from engine.lineage.store import LineageStore
from engine.manager import create_plugin_manager
from engine.runtime.evaluation import parse_options
from engine.runtime.run import start_run
from engine.toolkit.math_problems import held_out

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "demo-scripted.yaml"
ACC = "gsm8k@eval/held-out/accuracy"


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    overrides = [f"output_dir={tmp_path / 'runs'}", "runtime.ray=false"]
    return start_run(load_config(CONFIG, overrides), create_plugin_manager())


def metric_rows(run_dir: Path) -> list[dict[str, Any]]:
    store = LineageStore.for_run_dir(run_dir)
    try:
        run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
        metrics = {(m["iteration"], m["evaluator"], m["metric"]): m for m in queries.metrics(store, run_id)}
        for d in queries.metric_details(store, run_id):
            metrics[(d["iteration"], d["evaluator"], d["metric"])]["details"] = d["details"]
        return list(metrics.values())
    finally:
        store.close()


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables printed without cutting their cells (the test console is 80 columns)."""
    import sys

    monkeypatch.setattr(sys.modules["engine.cli.app"].out, "width", 250)


def test_eval_stores_beside_the_run_and_report_pairs_it(run_dir: Path, wide: None) -> None:
    funnel_before = (run_dir / "run.json").read_text()
    code, output = cli("eval", str(run_dir), "--evaluator", "gsm8k", "--option", "dataset=held-out",
                       "-o", "n=12", "--iteration", "0")
    assert code == 0, output
    assert "95% CI" in output and "held-out/accuracy" in output and "iteration 0" in output
    code, output = cli("eval", str(run_dir), "--evaluator", "gsm8k", "-o", "dataset=held-out", "-o", "n=12")
    assert code == 0, output
    assert "iteration 2" in output, "default: the run's last finished iteration"
    rows = [r for r in metric_rows(run_dir) if r["evaluator"] == "gsm8k@eval"]
    assert sorted(r["iteration"] for r in rows) == [0, 2]
    for r in rows:
        assert r["metric"] == "held-out/accuracy" and r["n"] == 12
        details = r["details"]
        assert details["source"] == "autodidact eval" and details["label"] == "eval"
        assert details["options"]["n"] == 12 and details["options"]["dataset"] == "held-out"
        assert len(details["item_correct"]) == 12 and len(details["ci95"]) == 2
        lo, hi = details["ci95"]
        assert lo <= r["value"] <= hi
    assert (run_dir / "run.json").read_text() == funnel_before, "the run's own state is not touched"

    code, output = cli("report", str(run_dir))
    assert code == 0, output
    assert ACC in output and "[0, 0.242]" in output  # 0 of 12: the Wilson interval beside the value
    assert "respond" in output, "the loop's own funnel is still there"
    assert f"paired: {ACC}, iteration 2 vs base: 0/12 against 0/12; 0 gained, 0 lost: no significant " \
           "change (p = 1); change +0 [95% CI +0, +0]" in output


def test_eval_picks_a_trained_version_and_its_adapter(run_dir: Path, tmp_path: Path) -> None:
    store = LineageStore.for_run_dir(run_dir)
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    try:  # a policy version trained in iteration 1 (the demo has no trainer)
        exec_id = store.start_stage(run_id, 1, "train:policy", kind="trainer", stage="sft", plugin="p",
                                    plugin_version="1", options={}, model_version=None)
        store.add_model_version("m+lora-abc", run_id=run_id, base_model="m", checkpoint_hash="abc",
                                adapter_path=str(tmp_path / "adapter"), parent_version=None,
                                execution_id=exec_id)
    finally:
        store.close()
    for args, iteration in ((["--model-version", "m+lora-abc"], 1), (["--iteration", "2"], 2),
                            (["--iteration", "0"], 0)):
        code, output = cli("eval", str(run_dir), "-e", "gsm8k", "-o", "dataset=held-out", "-o", "n=3",
                           "--label", "small", *args)
        assert code == 0, output
        assert f"(iteration {iteration})" in output
    rows = {r["iteration"]: r for r in metric_rows(run_dir) if r["evaluator"] == "gsm8k@small"}
    assert rows[1]["model_version"] == rows[2]["model_version"] == "m+lora-abc"
    assert rows[0]["model_version"] is None
    assert rows[1]["details"]["adapter"] == str(tmp_path / "adapter")
    assert rows[0]["details"]["adapter"] is None


def test_eval_of_a_base_model_without_a_run_keeps_nothing(tmp_path: Path, wide: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    problems = held_out(5)
    config = tmp_path / "scripted.yaml"
    config.write_text(f"loop: self\nsampler: {{name: scripted, options: {{responses: "
                      f"['The answer is {problems[0].answer}.']}}}}\noutput_dir: {tmp_path / 'runs'}\n")
    monkeypatch.chdir(tmp_path)
    code, output = cli("eval", "--config", str(config), "--evaluator", "gsm8k", "-o", "dataset=held-out",
                       "-o", "n=5")
    assert code == 0, output
    assert "nothing was stored" in output and "95% CI" in output
    assert "gsm8k/held-out/accuracy" in output
    value = next(line for line in output.splitlines() if "held-out/accuracy" in line).split("│")[2].strip()
    assert float(value) >= 0.2, output  # the scripted answer is right for the first problem at least
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scripted.yaml"], "no run dir, no store"


@pytest.mark.parametrize(("args", "says"), [
    (["RUN", "--evaluator", "nope"], "--evaluator: "),
    (["RUN", "--evaluator", "gsm8k", "-o", "n=abc"], "--option n: "),
    (["RUN", "--evaluator", "gsm8k", "-o", "bogus=1"], "--option bogus: "),
    (["RUN", "--evaluator", "gsm8k", "-o", "novalue"], "expected key=value"),
    (["MISSING", "--evaluator", "gsm8k"], "not a run directory"),
    (["RUN", "--evaluator", "gsm8k", "--model-version", "nope"], "no model version 'nope'"),
    (["RUN", "--evaluator", "gsm8k", "--iteration", "9"], "no finished iteration 9"),
    (["RUN", "--evaluator", "gsm8k", "--iteration", "1", "--model-version", "x"], "not both"),
    (["RUN"], "--evaluator NAME"),
    (["--evaluator", "gsm8k"], "RUN_DIR"),
    (["RUN", "--evaluator", "gsm8k", "--model", "x"], "--model"),
    (["--model", "x", "--evaluator", "gsm8k", "--iteration", "1"], "RUN_DIR"),
    (["RUN", "--evaluator", "gsm8k", "--label", "a b"], "--label"),
])
def test_bad_input_is_one_line_exit_2(run_dir: Path, tmp_path: Path, args: list[str], says: str) -> None:
    named = {"RUN": str(run_dir), "MISSING": str(tmp_path / "nowhere")}
    code, output = cli("eval", *(named.get(a, a) for a in args))
    assert code == 2, output
    assert output.startswith("error: ") and len(output.strip().splitlines()) == 1, output
    assert says in output and "Traceback" not in output


def test_parse_options() -> None:
    assert parse_options(["n=50", "dataset=held-out", "refine.rounds=2", "k=[1, 5]", "template="]) == {
        "n": 50, "dataset": "held-out", "refine": {"rounds": 2}, "k": [1, 5], "template": ""}
