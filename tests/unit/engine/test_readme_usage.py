"""README's "Using it" commands work as written: every `run`/`validate`/`submit` line validates
(exit 0, nothing written), every `plugins`/`loops` line exits 0. The cluster's job commands
(`submit`, `runs --address`, `logs`, `stop`) run for real in tests/integration/test_jobs.py."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app

ROOT = Path(__file__).resolve().parents[3]


def usage_commands() -> list[list[str]]:
    """The indented `autodidact ...` lines of README's "Using it" section, as argv lists."""
    section = (ROOT / "README.md").read_text().split("## Using it", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.startswith("    autodidact ")]
    return [shlex.split(line, comments=True)[1:] for line in lines]


def config_commands() -> list[list[str]]:
    """`run`, `validate` and `submit` lines as `validate` commands (a submit's --address dropped)."""
    return [["validate", *_without_address(argv[1:])] for argv in usage_commands()
            if argv[0] in ("run", "validate", "submit")]


def _without_address(args: list[str]) -> list[str]:
    return [a for i, a in enumerate(args) if a != "--address" and (i == 0 or args[i - 1] != "--address")]


def inspect_commands() -> list[list[str]]:
    return [[a for a in argv if a != "[--json]"] for argv in usage_commands()
            if argv[0] in ("plugins", "loops")]


def test_section_has_the_examples() -> None:
    assert len(config_commands()) >= 5 and len(inspect_commands()) >= 4


@pytest.mark.parametrize("argv", config_commands(), ids=" ".join)
def test_config_example_validates(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok ")


@pytest.mark.parametrize("argv", inspect_commands(), ids=" ".join)
def test_inspect_example_runs(argv: list[str]) -> None:
    for args in (argv, [*argv, "--json"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output


def test_the_readme_environment_runs_episodes(scripted_sampler: object, tmp_path: Path) -> None:
    """The countdown environment of "Write a plugin", exactly as written, driven by the engine."""
    import importlib.util
    import re

    from engine.contracts import StageContext, build_stage, check_stage_class
    from engine.records import Task
    from engine.sampling.protocol import SampleRequest

    text = (ROOT / "README.md").read_text()
    (code,) = re.findall(r"```python\n# countdown_env.py[^\n]*\n(.*?)```", text, re.S)
    (tmp_path / "countdown_env.py").write_text(code)
    assert len(code.strip().splitlines()) <= 26, "a short environment"
    spec = importlib.util.spec_from_file_location("countdown_env", tmp_path / "countdown_env.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (cls,) = module.register_environments()
    assert check_stage_class(cls, "environment") == []

    def count(request: SampleRequest, i: int) -> str:  # counts down right from 2, wrong from 4
        start = int(re.findall(r"from (\d+)", (request.messages or ())[0][1])[0])
        said = sum(1 for r, _ in request.messages or () if r == "assistant")
        return str(start - said - 1) if start == 2 else "7"

    env = build_stage(cls, {"max_turns": 5}, StageContext(sampler=scripted_sampler(script=count)))  # type: ignore[operator]
    (done, stopped) = env.rollout([Task(prompt="2"), Task(prompt="4")])  # type: ignore[attr-defined]
    assert done.rewards["reward"] == [1.0, 1.0] and done.meta["turns"] == 2, "2 -> 1 -> 0: done"
    assert stopped.rewards["reward"] == [0.0] and stopped.meta["turns"] == 1, "4 -> '2' is wrong: over"
