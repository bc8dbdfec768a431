"""Named samplers: a config declares samplers besides the policy's (``samplers: {teacher: ...}``),
an LLM stage picks one with its ``sampler`` option, and the request cache records which sampler
made each answer; the single-``sampler`` form keeps working. A name no sampler has is a config
error naming the option, and the policy's LoRA adapters never go to another sampler."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from engine.config import parse_config, resolve_config
from engine.contracts import StageContext
from engine.errors import ConfigError
from engine.manager import create_plugin_manager
from engine.testing import LoopResult
from engine.toolkit.prompting import SamplingOptions, chat, chat_requests

BASE: dict[str, Any] = {
    "loop": "self", "iterations": 1, "data": {"source": "data/self-prompts.jsonl", "limit": 3},
    "sampler": {"name": "scripted", "options": {"responses": ["Policy answer. Final judgement: Yes"]}},
    "samplers": {"teacher": {"name": "scripted", "options": {"responses": ["Teacher answer."]}}},
}


def test_a_stage_uses_the_sampler_it_names(run_loop: Callable[..., LoopResult]) -> None:
    config = {**BASE, "stages": {"respond": {"name": "respond", "options": {"sampler": "teacher"}}}}
    run = run_loop(config)
    responses = run.records("response", 1)
    assert responses and {r.text for r in responses} == {"Teacher answer."}  # type: ignore[attr-defined]
    critiques = run.records("critique", 1)
    assert critiques and all("Policy answer" in c.text for c in critiques)  # type: ignore[attr-defined]
    with sqlite3.connect(run.run_dir / "sample-cache.sqlite") as db:
        made = dict(db.execute("SELECT sampler, count(*) FROM samples GROUP BY sampler").fetchall())
    assert made.keys() == {"teacher", "policy"} and made["teacher"] == 3


def test_the_single_sampler_form_keeps_working(run_loop: Callable[..., LoopResult]) -> None:
    run = run_loop({k: v for k, v in BASE.items() if k != "samplers"})
    assert {r.text for r in run.records("response", 1)} == {"Policy answer. Final judgement: Yes"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("change, path, words", [
    ({"stages": {"respond": {"name": "respond", "options": {"sampler": "teachr"}}}},
     "stages.respond.options.sampler", "unknown sampler 'teachr'; did you mean 'teacher'?"),
    ({"samplers": {"policy": {"name": "scripted"}}}, "samplers.policy", "other than 'policy'"),
    ({"samplers": {"teacher": {"name": "scriptd"}}}, "samplers.teacher.name", "unknown sampler"),
])
def test_bad_sampler_names_are_config_errors(change: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config(parse_config({**BASE, **change}), create_plugin_manager())
    assert f"{path}: " in str(info.value) and words in str(info.value), str(info.value)


def test_adapters_go_to_the_policy_sampler_only() -> None:
    ctx = StageContext(adapters={"policy": "/adapters/iter1-policy"})
    (own,) = chat_requests(ctx, [chat("q")], SamplingOptions())
    (taught,) = chat_requests(ctx, [chat("q")], SamplingOptions(sampler="teacher"))
    assert own.adapter == "/adapters/iter1-policy" and taught.adapter is None
