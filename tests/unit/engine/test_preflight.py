"""``validate`` finds what ``run`` would otherwise meet minutes in, and ``run`` then creates no run
directory: a missing or broken data file, a missing template, a model that does not resolve,
evaluator data that is not installed, a backend that is not importable (with its install hint)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.cli import app

BASE = """loop: self
sampler: {name: scripted}
data: {source: data/self-prompts.jsonl, limit: 2}
runtime: {ray: false}
output_dir: OUT
"""


def _cli(tmp_path: Path, text: str, *overrides: str) -> list[tuple[int, str]]:
    path = tmp_path / "cfg.yaml"
    path.write_text(text.replace("OUT", str(tmp_path / "runs")))
    out = []
    for command in ("validate", "run"):
        result = CliRunner().invoke(app, [command, str(path), *overrides])
        out.append((result.exit_code, result.output))
    assert not (tmp_path / "runs").exists(), "run created nothing for an error validate finds"
    return out


def _assert_both(results: list[tuple[int, str]], *words: str) -> None:
    for code, output in results:
        assert code == 2, output
        assert output.startswith("error: ") and "Traceback" not in output, output
        for w in words:
            assert w in output, output


def test_a_data_file_that_does_not_exist(tmp_path: Path) -> None:
    _assert_both(_cli(tmp_path, BASE, "data.source=nowhere/none.jsonl"),
                 "cfg.yaml: data.source: file not found: nowhere/none.jsonl")


def test_a_data_file_that_does_not_parse(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{not json\n')
    _assert_both(_cli(tmp_path, BASE, f"data.source={bad}", "data.limit=null"), f"{bad}:2: invalid JSON")


def test_a_template_that_does_not_exist(tmp_path: Path) -> None:
    _assert_both(_cli(tmp_path, BASE, "stages.respond.options.template=missing-template.txt"),
                 "stages.respond.options.template: template file not found: missing-template.txt")


def test_a_model_that_does_not_resolve(tmp_path: Path) -> None:
    _assert_both(_cli(tmp_path, BASE, "sampler.name=transformers", "model.name=smollm2-135m-instrct"),
                 "model.name: unknown model alias 'smollm2-135m-instrct'", "did you mean")


def test_a_scripted_sampler_needs_no_model(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(BASE.replace("OUT", str(tmp_path / "runs")))
    result = CliRunner().invoke(app, ["validate", str(path), "model.name=whatever-you-like"])
    assert result.exit_code == 0, result.output


def test_evaluator_data_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.data

    monkeypatch.setattr(engine.data, "package_file", lambda package, relative: None)
    import plugins.evaluator_longbench

    monkeypatch.setattr(plugins.evaluator_longbench, "package_file", lambda package, relative: None)
    _assert_both(_cli(tmp_path, BASE + "evaluators: [{name: longbench-write}]\n"),
                 "evaluators.0: longbench-write: evalscope/", "scripts/setup.sh")


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_a_backend_that_is_not_installed_names_the_extra(tmp_path: Path) -> None:
    _assert_both(_cli(tmp_path, BASE, "sampler.name=vllm"),
                 "sampler: the 'vllm' sampler needs the 'vllm' package", "pip install 'autodidact[vllm]'")


def test_a_backend_that_is_not_importable_names_the_extra(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def hide(name: str, *args: Any) -> Any:
        return None if name == "httpx" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", hide)
    _assert_both(_cli(tmp_path, BASE, "sampler.name=openai", "sampler.options.base_url=http://127.0.0.1:9/v1"),
                 "sampler: the 'openai' sampler needs the 'httpx' package",
                 "pip install 'autodidact[openai]'")


def test_rlimit_sandbox_where_unshare_cannot_contain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sandbox.rlimit

    monkeypatch.setattr(sandbox.rlimit, "probe", lambda disk_mb=8: "unshare: operation not permitted")
    _assert_both(_cli(tmp_path, BASE + "sandbox: {name: rlimit}\n"),
                 "sandbox: sandbox 'rlimit' cannot contain jobs with unshare here", "allow_unsafe: true")
    path = tmp_path / "cfg.yaml"
    result = CliRunner().invoke(app, ["validate", str(path), "sandbox.options.allow_unsafe=true"])
    assert result.exit_code == 0, result.output
