"""engine.data.load_tasks: the text field becomes the prompt, the other fields the task's meta."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.data import load_tasks
from engine.errors import UserError


def test_other_fields_go_into_meta(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    rows = [{"prompt": "Write add.", "tests": "assert add(1, 2) == 3", "level": 2, "skip": [1, 2]},
            {"question": "What is 2+2?", "answer": "4"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    first, second = load_tasks(str(path))
    assert first.prompt == "Write add." and first.meta["tests"] == "assert add(1, 2) == 3"
    assert first.meta["level"] == 2 and "skip" not in first.meta  # only strings and numbers
    assert second.prompt == "What is 2+2?" and second.meta["answer"] == "4" and second.meta["line"] == 2
    assert "prompt" not in first.meta and "question" not in second.meta


def test_a_line_without_text_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok"}\n{"tests": "assert 1"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: needs a string field"):
        load_tasks(str(path))


def test_a_template_path_is_looked_up_in_configs_too(tmp_path: Path) -> None:
    from engine.toolkit.prompting import load_template

    default = tmp_path / "default.txt"
    default.write_text("default {prompt}")
    assert load_template(None, default) == "default {prompt}"
    assert "{response}" in load_template("templates/lengthen-suitable.txt", default), "found under configs/"
    with pytest.raises(UserError, match="template file not found: nowhere.txt"):
        load_template("nowhere.txt", default)
