"""code-concepts, code-task and code-response with a scripted sampler: parsing, links, options."""

from __future__ import annotations

from pathlib import Path

from engine.contracts import StageContext
from engine.records import Concepts, Link, Seed, Task, record_namespace
from plugins.generator_codealign import (
    CodeConcepts,
    CodeResponse,
    CodeResponseOptions,
    CodeTask,
    ConceptsOptions,
    TaskOptions,
)
from plugins.sampler_scripted import ScriptedOptions, ScriptedSampler


def ctx(*texts: str, script=None) -> StageContext:
    return StageContext(seed=3, sampler=ScriptedSampler(ScriptedOptions(responses=list(texts) or ["x"]),
                                                        script=script))


def test_concepts_from_seeds() -> None:
    seeds = [Seed(text="def f(a):\n    return a", source="m:f"), Seed(text="def g(b):\n    return b")]
    out = CodeConcepts(ConceptsOptions(), ctx("Concepts: recursion, slicing", "")).generate(seeds)
    assert len(out) == 1, "an empty answer makes no record"
    assert isinstance(out[0], Concepts) and out[0].text == "recursion, slicing"
    assert out[0].parent_ids() == [seeds[0].id]


def test_tasks_get_category_and_difficulty(tmp_path: Path) -> None:
    note = Concepts(text="loops, dicts")
    template = tmp_path / "t.txt"
    template.write_text("MY TEMPLATE {concepts} {category} {difficulty}")
    seen = []

    def script(request, i):
        seen.append(request.messages[-1][1])
        return "Task: Write a function `count(xs)` that counts items in a list."

    opts = TaskOptions(tasks_per_concepts=4, categories=["class"], difficulties=["hard"],
                       template=str(template))
    out = CodeTask(opts, ctx(script=script)).generate([note, Seed(text="ignored")])
    assert len(out) == 4 and all(isinstance(t, Task) for t in out)
    assert {(t.category, t.difficulty) for t in out} == {("class", "hard")}
    assert all(t.prompt.startswith("Write a function `count(xs)`") for t in out)
    assert all(t.parent_ids() == [note.id] for t in out)
    assert seen[0] == "MY TEMPLATE loops, dicts class hard"


def test_responses_carry_their_tests() -> None:
    task = Task(prompt="Write add(a, b).", category="function", difficulty="easy")
    answer = "```python\ndef add(a, b):\n    return a + b\n```\n```python\nassert add(1, 1) == 2\n```"
    out = CodeResponse(CodeResponseOptions(n=3), ctx(answer, "no code at all")).generate([task])
    assert [r.sample_index for r in out] == [0, 1, 2]
    assert out[0].text == "def add(a, b):\n    return a + b" and out[0].tests == "assert add(1, 1) == 2"
    assert out[1].text == "" and out[1].tests == "", "messy answers are kept, with empty tests"
    assert out[1].meta["raw"] == "no code at all"
    assert all(r.prompt == task.prompt and r.parent_ids() == [task.id] for r in out)
    assert len({r.id for r in out}) == 3


def test_one_sampler_call_per_batch() -> None:
    context = ctx("Task: Write a function `f(x)` returning x twice.")
    notes = [Concepts(text=f"c{i}") for i in range(5)]
    CodeTask(TaskOptions(tasks_per_concepts=2), context).generate(notes)
    assert context.sampler.calls == 1 and context.sampler.requests_seen == 10


def test_prose_answer_falls_back_to_its_first_sentence() -> None:
    seed = Seed(text="def f(a):\n    return a")
    prose = "This function returns its argument unchanged. Nothing else."
    (note,) = CodeConcepts(ConceptsOptions(), ctx(prose)).generate([seed])
    assert note.text == "This function returns its argument unchanged." and note.meta["prose"] is True
    assert CodeConcepts(ConceptsOptions(prose_fallback=False), ctx(prose)).generate([seed]) == []


def test_code_without_tests_is_continued_at_tests_in_one_batch() -> None:
    task = Task(prompt="Write add(a, b).", category="function", difficulty="easy")
    seen = []

    def script(request, i):
        seen.append(request)
        if request.continues:
            return "add(2, 2) == 4\nassert add(0, 1) == 1\n"  # the sampler stops at the closing fence
        return ["```python\ndef add(a, b):\n    return a + b\n```\nThis adds.",
                "```python\ndef add(a, b):\n    return a + b\n```\n```python\nassert add(1, 1) == 2\n```",
                "prose and no code"][i % 3]

    context = ctx(script=script)
    out = CodeResponse(CodeResponseOptions(n=3, tests_max_tokens=40), context).generate([task])
    assert context.sampler.calls == 2, "one call for the answers, one batched call for missing tests"
    (cont,) = [r for r in seen if r.continues]
    said = cont.messages[-1][1]
    assert said.startswith("```python\ndef add(a, b):") and said.endswith("Tests:\n```python\nassert ")
    assert cont.messages[0][1] == seen[0].messages[0][1], "the same task prompt is continued"
    assert cont.params.max_tokens == 40 and cont.params.stop == ("```",) and cont.params.n == 1
    by_index = {r.sample_index: r for r in out}
    assert by_index[0].tests == "assert add(2, 2) == 4\nassert add(0, 1) == 1"
    assert by_index[0].meta["tests_completed"] is True
    assert by_index[1].tests == "assert add(1, 1) == 2" and "tests_completed" not in by_index[1].meta
    assert by_index[2].tests == "" and by_index[2].text == "", "no code: nothing to write tests for"
    off = CodeResponse(CodeResponseOptions(n=3, complete_tests=False), ctx(script=script)).generate([task])
    assert [r.tests for r in off][0] == ""
    assert out[0].id != off[0].id, "the id covers the completed tests"


def test_task_draws_do_not_depend_on_the_run_scoped_ids() -> None:
    drawn = []
    for run in ("run-a/1", "run-b/1"):
        with record_namespace(run):
            notes = [Concepts(text=f"loops, dicts {i}", parents=[Link(id=Seed(text=str(i)).id)])
                     for i in range(12)]
            answer = "Task: Write a function `f(x)` returning x twice."
            out = CodeTask(TaskOptions(), ctx(answer)).generate(notes)
            drawn.append([(t.category, t.difficulty) for t in out])
    assert len(set(drawn[0])) > 1 and drawn[0] == drawn[1], "same concepts, same category and difficulty"
