"""Tasks with tests for code environments, from a SelfCodeAlign run: what SCoRe-on-code trains on.

    .venv/bin/python scripts/sca_tasks.py runs/selfcodealign-... configs/data/sca-tasks.jsonl

Writes one JSONL line per task the run trained on (its TrainingExamples: answers that passed
their own tests in the sandbox and survived dedup and decontamination), with the task's
``prompt`` (plus the name of the function the tests call: SelfCodeAlign's task texts seldom name
it) and the passing answer's ``tests`` (asserts), one line per distinct prompt. Those
tests run the policy's code in the ``python-exec`` environment (``data.source`` of a config).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from engine.lineage import queries
from engine.lineage.store import LineageStore


def entry_point(code: str, tests: str) -> str | None:
    """The first function the tests call that the passing answer defines."""
    defined = set(re.findall(r"^\s*def (\w+)\(", code, re.M))
    return next((name for name in re.findall(r"(\w+)\(", tests) if name in defined), None)


def tasks_of(run_dir: Path) -> list[dict[str, str]]:
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    out: dict[str, dict[str, str]] = {}
    with LineageStore.for_run_dir(run_dir) as store:
        iterations = {r["iteration"] for r in queries.funnel(store, run_id)}
        for it in sorted(iterations):
            examples = queries.records_of_kind(store, run_id, it, "training_example")
            links = queries.parents_of(store, [e["id"] for e in examples])
            for example in examples:
                source = next((p["id"] for p in links[example["id"]] if p["role"] == "input"), None)
                response = queries.record_info(store, source)["payload"] if source else None
                if response and response.get("tests") and "assert" in response["tests"]:
                    prompt = response["prompt"]
                    if name := entry_point(response["text"], response["tests"]):  # what the tests call
                        prompt += f"\n\nName the function `{name}`."
                    row = {"prompt": prompt, "tests": response["tests"], "entry_point": name or "",
                           "response": source, "run": run_id}
                    out.setdefault(response["prompt"], row)
    return list(out.values())


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: sca_tasks.py RUN_DIR OUT.jsonl")
    rows = tasks_of(Path(sys.argv[1]))
    target = Path(sys.argv[2])
    target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"wrote {len(rows)} tasks with tests to {target}")


if __name__ == "__main__":
    main()
