"""Data sources: the prompts a loop starts from, read from a JSONL file.

What it is: ``load_tasks`` turns each line of a JSONL file (fields ``prompt``, ``instruction`` or
``question``) into a Task record, honouring ``data.limit``. Relative paths are looked up from the
working directory, then from configs/. What it is not: evaluation data (evaluators read their
own packaged sets) nor seed mining (a loop's own stage).
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import UserError
from engine.records import Task

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
TEXT_FIELDS = ("prompt", "instruction", "question")


def find_source(source: str) -> Path:
    path = Path(source)
    for candidate in (path, CONFIGS / path):
        if candidate.is_file():
            return candidate
    raise UserError(f"data.source: file not found: {source}")


def load_tasks(source: str, limit: int | None = None) -> list[Task]:
    """Task records from a JSONL file; a line without a text field is an error naming the line."""
    path = find_source(source)
    tasks: list[Task] = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{lineno}: invalid JSON: {exc.msg}") from None
            text = next((row[k] for k in TEXT_FIELDS if isinstance(row, dict) and k in row), None)
            if not isinstance(text, str):
                raise UserError(f"{path}:{lineno}: needs a string field, one of {', '.join(TEXT_FIELDS)}")
            tasks.append(Task(prompt=text, meta={"source": str(source), "line": lineno}))
            if limit is not None and len(tasks) >= limit:
                break
    return tasks
