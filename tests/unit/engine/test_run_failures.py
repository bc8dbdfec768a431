"""What a user sees when a run goes wrong after it started, or a run directory is damaged.

A stage that raises: one line naming the iteration, role, stage and plugin (and the record when
one record was at fault), exit 1, the failed stage shown as failed (not as finished), the
traceback in the run's run.log and on the screen only with --traceback, the run marked failed;
``resume`` finishes it once the cause is fixed. A damaged run directory (corrupt or missing
run.json, config.yaml or store): ``resume`` and the lineage commands exit 2 with one line.
Everything runs in this process (Ray off, scripted sampler): seconds.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine import hookimpl
from engine.cli import app
from engine.records import Record
from plugins.generator_respond import Respond

STATE = {"fail": True}


class Explode(Respond):
    """``respond``, except that it raises while STATE says so (a bug the user then fixes)."""

    name = "explode"

    def generate(self, inputs: Any) -> list[Record]:
        if STATE["fail"]:
            raise ValueError("boom: pip install 'autodidact[vllm]'\nsecond line of the message")
        return super().generate(inputs)


class ExplodePlugin:
    @hookimpl
    def register_generators(self) -> list[type]:
        return [Explode]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import engine.manager
    import engine.runtime.run

    real = engine.manager.create_plugin_manager

    def with_explode(*args: Any, **kwargs: Any) -> Any:
        pm = real(*args, **kwargs)
        pm.register(ExplodePlugin())
        return pm

    monkeypatch.setattr(engine.manager, "create_plugin_manager", with_explode)
    monkeypatch.setattr(engine.runtime.run, "create_plugin_manager", with_explode)  # resume's
    STATE["fail"] = True

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, list(args))
        return result.exit_code, result.output

    yield invoke


def _config(tmp_path: Path, stage: str = "explode") -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(f"""loop: self
iterations: 1
sampler: {{name: scripted, options: {{responses: ["Fine. Final judgement: Yes"]}}}}
stages: {{respond: {{name: {stage}}}}}
data: {{source: data/self-prompts.jsonl, limit: 2}}
runtime: {{ray: false}}
output_dir: {tmp_path / 'runs'}
""")
    return path


def _run_dir(tmp_path: Path) -> Path:
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


def test_a_failing_stage_is_one_line_then_resumes(cli: Any, tmp_path: Path) -> None:
    code, output = cli("run", str(_config(tmp_path)))
    assert code == 1, output
    run_dir = _run_dir(tmp_path)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert ("iteration 1, role 'respond': stage 'explode' (plugin " in errors[0]
            and "failed: ValueError: boom: pip install 'autodidact[vllm]'" in errors[0]), errors[0]
    assert "second line" not in output and "Traceback" not in output
    assert f"autodidact resume {run_dir}" in errors[0]
    assert "respond                  failed after" in output
    assert not any(line.split()[:1] == ["respond"] and " out " in line for line in output.splitlines())
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    log = (run_dir / "run.log").read_text()
    assert "Traceback" in log and "ValueError: boom" in log

    code, output = cli("resume", str(run_dir), "--traceback")
    assert code == 1 and "Traceback" in output and "ValueError: boom" in output, output

    STATE["fail"] = False  # the user fixes the cause
    code, output = cli("resume", str(run_dir))
    assert code == 0, output
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("finished")
    result = CliRunner().invoke(app, ["run", str(_config(tmp, "respond"))])
    assert result.exit_code == 0, result.output
    return _run_dir(tmp)


def _damage(run: Path, tmp_path: Path, how: str) -> Path:
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    state = json.loads((copy / "run.json").read_text())
    state["store_url"] = f"sqlite:///{copy / 'lineage.sqlite'}"
    (copy / "run.json").write_text(json.dumps(state))
    if how == "run.json corrupt":
        (copy / "run.json").write_text('{"run_id": "x", ')
    elif how == "run.json not an object":
        (copy / "run.json").write_text("[1, 2]")
    elif how == "run.json missing":
        (copy / "run.json").unlink()
    elif how == "config.yaml missing":
        (copy / "config.yaml").unlink()
    elif how == "config.yaml binary":
        (copy / "config.yaml").write_bytes(b"\xff\xfe\x00\x01")
    elif how == "store missing":
        (copy / "lineage.sqlite").unlink()
    elif how == "store corrupt":
        (copy / "lineage.sqlite").write_bytes(b"not a database" * 100)
    return copy


DAMAGE = ["run.json corrupt", "run.json not an object", "run.json missing", "config.yaml missing",
          "config.yaml binary", "store missing", "store corrupt"]


@pytest.mark.parametrize("how", DAMAGE)
def test_resume_on_a_damaged_run_directory(cli: Any, finished_run: Path, tmp_path: Path, how: str) -> None:
    run = _damage(finished_run, tmp_path, how)
    code, output = cli("resume", str(run))
    assert code == 2, output
    assert output.startswith("error: ") and len(output.strip().splitlines()) == 1, output
    assert "Traceback" not in output


@pytest.mark.parametrize("how", ["store missing", "store corrupt"])
@pytest.mark.parametrize("command", [["lineage", "funnel", "RUN"], ["report", "RUN"],
                                     ["lineage", "tree", "abc", "--store", "RUN"],
                                     ["lineage", "sql", "RUN", "select 1"]])
def test_lineage_commands_on_a_damaged_store(cli: Any, finished_run: Path, tmp_path: Path, how: str,
                                             command: list[str]) -> None:
    run = _damage(finished_run, tmp_path, how)
    code, output = cli(*(str(run) if a == "RUN" else a for a in command))
    assert code == 2, output
    assert output.startswith("error: ") and len(output.strip().splitlines()) == 1, output
