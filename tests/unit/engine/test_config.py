"""Loop configs: every kind of bad config exits 2 with the YAML path named, and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.config import apply_overrides, load_config
from engine.errors import ConfigError

GOOD = """\
loop: self
iterations: 2
sampler: {name: scripted}
stages:
  judge: {name: llm-judge, options: {votes: 3}}
data: {source: data/self-prompts.jsonl, limit: 2}
output_dir: OUT
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text.replace("OUT", str(tmp_path / "runs")))
    return path


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output + (result.stderr if hasattr(result, "stderr") else "")


def test_good_config_validates(tmp_path: Path) -> None:
    resolved = load_config(write(tmp_path, GOOD))
    assert resolved.stages["judge"].options.votes == 3  # type: ignore[attr-defined]
    assert resolved.stages["failing"].options.keep == "no"  # type: ignore[attr-defined]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, path, words", [
    (GOOD + "iterations: [\n", "", "invalid YAML: line"),
    (GOOD.replace("llm-judge", "llm-judg"), "stages.judge.name", "did you mean 'llm-judge'"),
    (GOOD.replace("iterations: 2", "iterations: two"), "iterations", "valid integer"),
    (GOOD.replace("loop: self\n", ""), "loop", "Field required"),
    (GOOD.replace("votes: 3", "votes: 0"), "stages.judge.options.votes", "greater than or equal to 1"),
    (GOOD.replace("votes: 3", "votez: 3"), "stages.judge.options.votez", "unknown field"),
    (GOOD.replace("judge:", "judgee:"), "stages.judgee", "did you mean 'judge'"),
    ("- a\n- b\n", "", "top level must be a mapping"),
])
def test_bad_config_exit_2_names_path(tmp_path: Path, text: str, path: str, words: str) -> None:
    cfg = write(tmp_path, text)
    code, output = run_cli("run", str(cfg))
    assert code == 2, output
    assert words in output
    if path:
        assert f"{path}:" in output
    assert "Traceback" not in output
    assert not (tmp_path / "runs").exists()  # no run directory, so no store rows either


def test_unreadable_file(tmp_path: Path) -> None:
    code, output = run_cli("validate", str(tmp_path / "missing.yaml"))
    assert code == 2 and "cannot read file" in output


def test_out_of_range_via_override_names_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD), ["stages.respond.options.temperature=9"])
    assert "stages.respond.options.temperature" in str(info.value)


def test_overrides_parse_yaml_values() -> None:
    data = {"iterations": 1, "sampler": {"name": "x", "options": {}}, "evaluators": [{"name": "e"}]}
    out = apply_overrides(data, ["iterations=3", "sampler.options.temperature=0.7",
                                 "evaluators.0.options.subset=10", "new.key=true"])
    assert out["iterations"] == 3 and out["sampler"]["options"]["temperature"] == 0.7
    assert out["evaluators"][0]["options"]["subset"] == 10 and out["new"]["key"] is True
    assert data["iterations"] == 1  # the input is not modified
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides(data, ["iterations"])
    with pytest.raises(ConfigError, match="not an index"):
        apply_overrides(data, ["evaluators.5.name=x"])


def test_user_options_merge_with_loop_defaults(tmp_path: Path) -> None:
    text = GOOD.replace("stages:\n", "stages:\n  failing: {name: verdict, options: {min_vote_share: 0.2}}\n")
    resolved = load_config(write(tmp_path, text))
    opts = resolved.stages["failing"].options
    assert opts.keep == "no" and opts.min_vote_share == 0.2  # type: ignore[attr-defined]


def test_validate_command_ok(tmp_path: Path) -> None:
    code, output = run_cli("validate", str(write(tmp_path, GOOD)))
    assert code == 0 and "ok" in output


@pytest.mark.parametrize("preset", sorted((Path(__file__).resolve().parents[3] / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_preset_validates(preset: Path) -> None:
    resolved = load_config(preset)
    assert resolved.config.iterations >= 1


def test_an_override_inside_a_stage_written_by_name_keeps_the_name() -> None:
    out = apply_overrides({"loop": "spar", "stages": {"judge": "llm-judge"}},
                          ["loop.options.gate=0.0", "stages.judge.options.votes=3"])
    assert out["loop"] == {"name": "spar", "options": {"gate": 0.0}}
    assert out["stages"]["judge"] == {"name": "llm-judge", "options": {"votes": 3}}
