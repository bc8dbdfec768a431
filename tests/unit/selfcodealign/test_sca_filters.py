"""dedup (exact and MinHash near-duplicates) and decontaminate (n-grams against evaluation sets)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.records import Critique, Link, Response, Task, TrainingExample
from plugins.filter_decontaminate import Decontaminate, DecontaminateOptions, benchmark_texts
from plugins.filter_dedup import Dedup, DedupOptions

CODE = "\n".join(["def total(items):", "    acc = 0", "    for item in items:", "        if item > 0:",
                  "            acc += item * 2", "        elif item == 0:", "            acc += 1",
                  "        else:", "            acc -= item", "    if acc > 100:", "        acc = 100",
                  "    return acc"])


def resp(prompt: str, text: str, i: int = 0) -> Response:
    return Response(prompt=prompt, text=text, sample_index=i, parents=[Link(id=f"task-{prompt}")])


def test_exact_duplicates_of_instruction_or_response() -> None:
    a = resp("Sum the list.", "def f(x):\n    return sum(x)")
    same_prompt = resp("  sum THE list. ", "def g(y):\n    return len(y) * 2", 1)
    same_text = resp("Other task.", "def f(x):\n    return sum(x)")
    fresh = resp("Reverse it.", "def r(s):\n    return s[::-1]")
    crit = Critique(verdict=True, parents=[Link(id=a.id, role="judges")])
    assert Dedup().filter([a, same_prompt, crit, same_text, fresh]) == [a, crit, fresh]
    only_response = Dedup(DedupOptions(exact=["response"], near=False))
    assert only_response.filter([a, same_prompt, same_text]) == [a, same_prompt]


def test_near_duplicate_code() -> None:
    a = resp("Task one.", CODE)
    renamed = resp("Task two.", CODE.replace("item * 2", "item * 3"))
    other = resp("Task three.", "class Stack:\n    def __init__(self):\n        self.items = []\n"
                                "    def push(self, x):\n        self.items.append(x)")
    assert Dedup().filter([a, renamed, other]) == [a, other]
    assert Dedup(DedupOptions(threshold=0.95)).filter([a, renamed, other]) == [a, renamed, other]


def test_tasks_and_examples_are_compared_too() -> None:
    t1, t2 = Task(prompt="Write a parser."), Task(prompt="write a   parser.")
    ex = TrainingExample(messages=[{"role": "user", "content": "Write a parser."},
                                   {"role": "assistant", "content": "x"}])
    assert Dedup().filter([t1, t2, ex]) == [t1]


def test_planted_humaneval_prompt_is_removed() -> None:
    from engine.toolkit.humaneval import load_problems

    problem = load_problems()[0]
    clean = resp("Write a function that returns the largest even number of a list.",
                 "def largest_even(xs):\n    return max(x for x in xs if x % 2 == 0)")
    planted_prompt = resp("Solve this:\n" + problem["prompt"], "def f():\n    return 1")
    planted_code = resp("Check closeness.", problem["prompt"] + problem["canonical_solution"])
    planted_example = TrainingExample(messages=[
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": problem["canonical_solution"]}])
    task = Task(prompt=problem["prompt"].replace("\n", " "))
    texts = benchmark_texts("humaneval")
    assert texts is not None and len(texts) == 2 * 164
    kept = Decontaminate(DecontaminateOptions(benchmarks=["humaneval"])).filter(
        [clean, planted_prompt, planted_code, planted_example, task])
    assert kept == [clean]
    assert Decontaminate().filter([clean, planted_prompt]) == [clean], "'all' includes humaneval"


def test_benchmarks_are_pluggable(tmp_path: Path) -> None:
    path = tmp_path / "bench.jsonl.gz"
    secret = "the quick brown fox jumps over the lazy dog near the old river bank"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"question": secret, "id": 3}) + "\n")
    hit = resp("Q: " + secret.upper(), "def f():\n    return 1")
    short = resp("the quick brown fox jumps over", "def f():\n    return 2")
    stage = Decontaminate(DecontaminateOptions(benchmarks=[str(path)], n=10))
    assert stage.filter([hit, short]) == [short]
    with pytest.raises(UserError):
        Decontaminate(DecontaminateOptions(benchmarks=["no-such-benchmark"])).filter([hit])
