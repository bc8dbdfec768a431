"""configs/self-teacher.yaml against a real teacher: a loopback OpenAI-compatible server the test
starts (engine.sampling.serve) in front of the transformers sampler with the real SmolLM2 model, so
the teacher's feedback and refinements are the model's own text over the wire, not a canned reply.
The run (the CLI, as a user starts it, on the embedded default's local Ray) must use the teacher for
exactly the teacher roles, record its samples under the name ``teacher`` in the request cache, build
the meta-skill funnel and finish with the gsm8k accuracy before and after refinement at inference."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine.manager import create_plugin_manager
from engine.sampling.serve import serve
from engine.testing import LoopResult
from plugins.sampler_transformers import TransformersSampler

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parents[2]


def test_self_teacher_config_runs_against_a_loopback_teacher(tmp_path: Path) -> None:
    teacher = TransformersSampler().load()
    with serve(teacher) as server:
        overrides = [
            f"samplers.teacher.options.base_url={server.url}", "iterations=1", "data.limit=2",
            f"output_dir={tmp_path}", "stages.respond.options.n=1", "stages.respond.options.max_tokens=48",
            "stages.judge.options.votes=1", "stages.judge.options.max_tokens=32",
            "stages.refine.options.max_tokens=48", "stages.teacher_feedback.options.votes=2",
            "stages.teacher_feedback.options.max_tokens=32", "stages.teacher_refine.options.max_tokens=48",
            "trainer.options.max_steps=1", "evaluators.0.options.n=3", "evaluators.0.options.max_tokens=48",
        ]
        proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", "configs/self-teacher.yaml",
                               *overrides], cwd=ROOT, capture_output=True, text=True, timeout=1200)
        served = list(server.batches)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (state_file,) = tmp_path.glob("*/run.json")
    state = json.loads(state_file.read_text())
    run = LoopResult(state_file.parent, str(state["run_id"]), state, create_plugin_manager().record_kinds())
    assert state["status"] == "finished"
    funnel = run.funnel(1)
    assert funnel["respond"] == 2 and funnel["teacher_feedback:meta"] == 2, funnel
    assert "meta-skill" in funnel and funnel["meta-skill"] <= funnel.get("teacher_refine:meta", 0)
    assert served and sum(served) >= 2  # the teacher's requests arrived at the server
    with sqlite3.connect(run.run_dir / "sample-cache.sqlite") as db:
        made = dict(db.execute("SELECT sampler, count(*) FROM samples GROUP BY sampler").fetchall())
    # the teacher's feedback (2 answers) and its verdicts on its refinements, each under its own name
    assert made.get("teacher", 0) >= 2 and made.get("policy", 0) >= 2, made
    metrics = run.metrics(1)
    assert {"gsm8k/held-out/accuracy", "gsm8k/held-out/accuracy+refine"} <= metrics.keys(), metrics
    assert 0.0 <= metrics["gsm8k/held-out/accuracy+refine"] <= 1.0
