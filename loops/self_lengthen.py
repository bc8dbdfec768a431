"""Self-Lengthen: a generator and an extender, two adapters on one sampler, lengthen the model's writing.

One iteration: the ``instruct`` role has the model write new long-writing instructions from a few
seed ones (``data.source``, default configs/data/lengthen-seeds.jsonl), each with a requested
length; ``suitable`` (the model's own Yes/No judgement, the ``llm-judge`` critic with the
lengthen-suitable template) and ``keep`` (its verdict) keep those that ask for a long text, and
each becomes a task that states its length. ``draft`` writes one response per task with the
generator adapter; ``extend`` lengthens each draft in Self-Lengthen's rounds with the extender
adapter (every round and its accept decision in lineage) and marks the final text kept only
if clean and longer than 1.2x the draft. The kept texts train the generator (instruction ->
final text) and the extender (the draft with ``drop`` of its lines dropped -> final text, in
the extender's own chat format), each its own LoRA adapter continuing from its previous one;
iteration k+1 drafts with generator k and extends with extender k.
What it is not: the LongBench-Write evaluation (the ``longbench-write`` evaluator measures it).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Prompted, Role, Stage
from engine.data import load_tasks
from engine.records import Critique, Link, Refinement, Response, Task, TrainingExample
from engine.toolkit.lengthen import drop_lines

DEFAULT_SOURCE = "data/lengthen-seeds.jsonl"


class SelfLengthenOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    drop: float = Field(0.2, ge=0.0, lt=1.0, description="share of the draft's lines the extender misses")
    length_phrase: str = Field(" Write about {words} words.", description="appended to each kept instruction")


class SelfLengthen(Stage[SelfLengthenOptions]):
    kind = "loop"
    name = "self-lengthen"
    roles = {
        "instruct": Role(kind="generator", takes=("task",), gives=("response",),
                         default={"name": "self-instruct", "options": {"adapter_role": "generator"}},
                         doc="new instructions (as responses) from a few seed ones, each with a length"),
        "suitable": Role(kind="critic", takes=("response",), gives=("critique",),
                         default={"name": "llm-judge", "options": {
                             "template": "templates/lengthen-suitable.txt", "votes": 3, "max_tokens": 8,
                             "prefix": "Final judgement:", "adapter_role": "generator"}},
                         doc="the model's own Yes/No: does the instruction ask for a long text?"),
        "keep": Role(kind="filter", takes=("critique",), gives=("critique",),
                     default={"name": "verdict", "options": {"keep": "yes"}}, doc="keeps the Yes ones"),
        "draft": Role(kind="generator", takes=("task",), gives=("response",),
                      default={"name": "respond",
                               "options": {"adapter_role": "generator", "max_tokens": 512}},
                      doc="the generator drafts one response per task"),
        "extend": Role(kind="generator", takes=("response",), gives=("refinement",),
                       default={"name": "extend", "options": {"adapter_role": "extender"}},
                       doc="the extender lengthens each draft (one final text per draft, in order)"),
    }
    trains = {"generator": ("training_example",), "extender": ("training_example",)}

    def run_iteration(self, runner: Any, iteration: int) -> None:
        opts = self.options
        data = runner.config.data
        seeds = runner.ingest("seeds", load_tasks(data.source or DEFAULT_SOURCE, data.limit))
        candidates: list[Response] = runner.call("instruct", seeds)
        fresh = [c for c in candidates if not c.meta.get("empty") and not c.meta.get("duplicate")]
        kept: list[Critique] = runner.call("keep", runner.call("suitable", fresh))
        by_id = {c.id: c for c in fresh}
        tasks = runner.ingest("tasks", [_task(by_id[k.parent_ids("judges")[0]], k, opts) for k in kept])
        drafts: list[Response] = runner.call("draft", tasks)
        finals: list[Refinement] = runner.call("extend", drafts)
        if len(finals) != len(drafts):
            raise ValueError(f"the extend role gives one final text per draft; it gave {len(finals)} "
                             f"for {len(drafts)}")
        good = [(d, f) for d, f in zip(drafts, finals, strict=True) if f.meta.get("kept")]
        extender = runner.stage("extend")
        generator_examples = [_example([{"role": "user", "content": d.prompt}], f.text, "generator", d, f)
                              for d, f in good]
        extender_examples = [_example(_extender_chat(extender, d, opts.drop, runner.config.seed), f.text,
                                      "extender", d, f) for d, f in good]
        runner.train(runner.ingest("examples:generator", generator_examples), role="generator")
        runner.train(runner.ingest("examples:extender", extender_examples), role="extender")


def _task(instruction: Response, verdict: Critique, opts: SelfLengthenOptions) -> Task:
    words = int(instruction.meta.get("words", 500))
    return Task(prompt=instruction.text.rstrip() + opts.length_phrase.format(words=words),
                meta={"words": words},
                parents=[Link(id=instruction.id, role="input"), Link(id=verdict.id, role="judged")])


def _extender_chat(extender: Any, draft: Response, drop: float, seed: int) -> list[dict[str, str]]:
    """The extender's training prompt: its own chat for the draft with ``drop`` of its lines gone."""
    short = Response(text=drop_lines(draft.text, drop, seed), prompt=draft.prompt, parents=draft.parents)
    if not isinstance(extender, Prompted):
        raise TypeError("the extend role's stage must show its chat (engine.contracts.Prompted)")
    (chat,) = extender.messages([short])
    return [dict(m) for m in chat]


def _example(chat: list[dict[str, str]], text: str, role: str, draft: Response, final: Refinement,
             ) -> TrainingExample:
    return TrainingExample(messages=[*chat, {"role": "assistant", "content": text}], target_role=role,
                           model_version=final.model_version,
                           parents=[Link(id=final.id, role="input"), Link(id=draft.id, role="draft")])


@hookimpl
def register_loops() -> list[type]:
    return [SelfLengthen]
