"""The self-instruct generator and the seed set of Self-Lengthen."""

from __future__ import annotations

import re
from typing import Any

from engine.contracts import StageContext
from engine.data import load_tasks, package_file, read_jsonl
from engine.records import Response, Task
from engine.sampling.protocol import SampleRequest
from plugins.generator_instruct import SelfInstruct, SelfInstructOptions, first_line


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _grams(text: str, n: int = 10) -> set[tuple[str, ...]]:
    w = _words(text)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def test_seed_set_shares_no_10_gram_with_longbench_write() -> None:
    path = package_file("evalscope", "third_party/longbench_write/resources/longbench_write.jsonl")
    assert path is not None, "evalscope is installed by scripts/setup.sh"
    bench = set().union(*(_grams(r["prompt"]) for r in read_jsonl(path)))
    seeds = load_tasks("data/lengthen-seeds.jsonl")
    assert len(seeds) >= 12
    assert [s.prompt for s in seeds if _grams(s.prompt) & bench] == []


def test_first_line_strips_numbering_and_quotes() -> None:
    assert first_line('\n4. "Write a long essay on rivers."\nMore text') == "Write a long essay on rivers."
    assert first_line("Instruction: Describe a city.") == "Describe a city."
    assert first_line("   \n") == ""


def test_new_instructions_from_seed_examples(scripted_sampler: Any) -> None:
    seen: list[SampleRequest] = []

    def script(req: SampleRequest, i: int) -> str:
        seen.append(req)
        return "1. Write a long story about a river.\nExtra line." if len(seen) % 2 else ""

    seeds = [Task(prompt=f"Seed instruction number {k}.") for k in range(5)]
    ctx = StageContext(seed=3, iteration=1, sampler=scripted_sampler(script=script))
    stage = SelfInstruct(SelfInstructOptions(count=4, shots=2, lengths=[300, 900]), ctx)
    out = stage.generate(seeds)
    assert len(out) == 4 and all(isinstance(r, Response) for r in out)
    assert ctx.sampler is not None and ctx.sampler.calls == 1, "one batched sampler call"
    texts = [r.text for r in out]
    assert texts[0] == "Write a long story about a river." and texts[1] == ""
    assert out[1].meta["empty"] and out[2].meta["duplicate"] and not out[0].meta["duplicate"]
    assert {r.meta["words"] for r in out} <= {300, 900}
    for r in out:
        shown = r.parent_ids("example")
        assert len(shown) == 2 and all(s in {t.id for t in seeds} for s in shown)
        assert all(next(t.prompt for t in seeds if t.id == s) in r.prompt for s in shown)
    again = SelfInstruct(SelfInstructOptions(count=4, shots=2, lengths=[300, 900]),
                         StageContext(seed=3, iteration=2, sampler=scripted_sampler(script=script)))
    assert [r.prompt for r in again.generate(seeds)] != [r.prompt for r in out], "each iteration draws anew"
