"""SelfCodeAlign's three prompting steps as generators: ``code-concepts``, ``code-task``, ``code-response``.

What it is: seed snippet -> programming concepts (a comma list, a Concepts record); concepts +
category (function, class, program) + difficulty (easy, medium, hard) -> a Task; task -> N sampled
responses, each split into solution code (``Response.text``) and its own assert tests
(``Response.tests``; '' when the model wrote none, so the execution step fails it). Each step is
one batched sampler call with a few-shot template from plugins/templates/selfcodealign-*.txt that
the ``template`` option swaps; records keep the model's raw answer in ``meta['raw']``. Records
that a step does not understand are skipped, and an unparseable concepts or task answer makes no
record. What it is not: the sandbox run or any filter.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from engine import hookimpl
from engine.contracts import Stage
from engine.records import Concepts, Link, Record, Response, Seed, Task
from engine.toolkit.code import clean_tests, code_and_tests, first_sentence, parse_concepts, parse_instruction
from engine.toolkit.prompting import SamplingOptions, load_template, sample_texts

TEMPLATES = Path(__file__).parent / "templates"

Category = Literal["function", "class", "program"]
Difficulty = Literal["easy", "medium", "hard"]
CATEGORY_TEXT = {"function": "a function", "class": "a class", "program": "a complete program"}


class ConceptsOptions(SamplingOptions):
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(64, ge=1, le=32768)
    max_concepts: int = Field(8, ge=1, le=64)
    prose_fallback: bool = Field(True, description="no concept list in the answer: keep its first prose "
                                 "sentence as the concepts text (meta['prose']); small models rarely list")


class TaskOptions(SamplingOptions):
    max_tokens: int = Field(160, ge=1, le=32768)
    tasks_per_concepts: int = Field(1, ge=1, le=64, description="tasks made from each concepts record")
    categories: list[Category] = Field(default_factory=lambda: ["function", "class", "program"])
    difficulties: list[Difficulty] = Field(default_factory=lambda: ["easy", "medium", "hard"])
    min_chars: int = Field(20, ge=1, description="shorter task texts are dropped")


class CodeResponseOptions(SamplingOptions):
    n: int = Field(10, ge=1, le=64, description="responses sampled per task")
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(384, ge=1, le=32768)
    complete_tests: bool = Field(True, description="a response with code but no asserts is continued "
                                 "once at 'Tests:' so that the model writes its own tests (a 135M model "
                                 "leaves them out of about half its answers); meta['tests_completed']")
    tests_max_tokens: int = Field(96, ge=1, le=4096, description="token limit of that continuation")


TESTS_START = "\n\nTests:\n```python\nassert "


class CodeConcepts(Stage[ConceptsOptions]):
    """Seed snippet -> Concepts (one per seed whose answer parses)."""

    kind = "generator"
    name = "code-concepts"
    accepts = ("seed",)
    produces = ("concepts",)

    def generate(self, inputs: Sequence[Record]) -> list[Record]:
        opts = self.options
        seeds = [s for s in inputs if isinstance(s, Seed)]
        if not seeds:
            return []
        template = load_template(opts.template, TEMPLATES / "selfcodealign-concepts.txt")
        prompts = [template.format(snippet=s.text) for s in seeds]
        out: list[Record] = []
        for seed, (texts, version) in zip(seeds, sample_texts(self.context, self.name, prompts, opts),
                                          strict=True):
            for text in texts:
                concepts = ", ".join(parse_concepts(text, opts.max_concepts))
                meta = {"raw": text}
                if not concepts and opts.prose_fallback:
                    concepts, meta["prose"] = first_sentence(text), True
                if concepts:
                    out.append(Concepts(text=concepts, model_version=version, meta=meta,
                                        parents=[Link(id=seed.id, role="input")]))
        return out


class CodeTask(Stage[TaskOptions]):
    """Concepts -> Tasks with a category and a difficulty drawn per task (fixed by seed and input)."""

    kind = "generator"
    name = "code-task"
    accepts = ("concepts",)
    produces = ("task",)

    def generate(self, inputs: Sequence[Record]) -> list[Record]:
        opts = self.options
        notes = [c for c in inputs if isinstance(c, Concepts)]
        if not notes:
            return []
        template = load_template(opts.template, TEMPLATES / "selfcodealign-task.txt")
        slots: list[tuple[Concepts, str, str]] = []
        for note in notes:
            for j in range(opts.tasks_per_concepts):
                rng = random.Random(f"{self.context.seed}:{note.text}:{j}")  # content, not the run-scoped id
                slots.append((note, rng.choice(opts.categories), rng.choice(opts.difficulties)))
        prompts = [template.format(concepts=n.text, category=c, category_text=CATEGORY_TEXT[c], difficulty=d)
                   for n, c, d in slots]
        out: list[Record] = []
        for (note, cat, diff), (texts, version) in zip(
                slots, sample_texts(self.context, self.name, prompts, opts, seed_offset=1), strict=True):
            for text in texts:
                instruction = parse_instruction(text, opts.min_chars)
                if instruction:
                    out.append(Task(prompt=instruction, category=cat, difficulty=diff, model_version=version,
                                    meta={"raw": text}, parents=[Link(id=note.id, role="input")]))
        return out


class CodeResponse(Stage[CodeResponseOptions]):
    """Task -> ``n`` Responses: code in ``text``, its own asserts in ``tests``, raw answer in meta."""

    kind = "generator"
    name = "code-response"
    accepts = ("task",)
    produces = ("response",)

    def generate(self, inputs: Sequence[Record]) -> list[Record]:
        opts = self.options
        tasks = [t for t in inputs if isinstance(t, Task)]
        if not tasks:
            return []
        template = load_template(opts.template, TEMPLATES / "selfcodealign-response.txt")
        prompts = [template.format(instruction=t.prompt) for t in tasks]
        drafts: list[dict[str, Any]] = []  # one per response: its fields, until its tests are known
        for task, prompt, (texts, version) in zip(
                tasks, prompts, sample_texts(self.context, self.name, prompts, opts, seed_offset=2),
                strict=True):
            for i, raw in enumerate(texts):
                code, tests = code_and_tests(raw)
                drafts.append(dict(task=task, user=prompt, text=code, tests=tests, sample_index=i,
                                   model_version=version, meta={"raw": raw}))
        if opts.complete_tests:
            self._complete_tests([d for d in drafts if d["text"] and not d["tests"]])
        return [Response(text=d["text"], tests=d["tests"], prompt=d["task"].prompt,
                         sample_index=d["sample_index"], model_version=d["model_version"], meta=d["meta"],
                         parents=[Link(id=d["task"].id, role="input")]) for d in drafts]

    def _complete_tests(self, missing: list[dict[str, Any]]) -> None:
        """Continue each answer that has code but no tests from its code and a 'Tests:' block that
        starts with ``assert ``: one batched call; the asserts parsed from it become the tests."""
        if not missing:
            return
        opts = self.options
        starts = [f"```python\n{d['text']}\n```{TESTS_START}" for d in missing]
        sampled = sample_texts(self.context, self.name, [d["user"] for d in missing], opts, n=1,
                               seed_offset=3, prefixes=starts, max_tokens=opts.tests_max_tokens,
                               stop=["```"])
        for d, start, (texts, _) in zip(missing, starts, sampled, strict=True):
            tail = "assert " + texts[0][len(start):]  # the answer from the prefix's own 'assert ' on
            d["tests"] = clean_tests(tail.split("```")[0], d["text"])
            d["meta"].update(tests_completed=True, raw_tests=tail)


@hookimpl
def register_generators() -> list[type]:
    return [CodeConcepts, CodeTask, CodeResponse]
