"""SELF: self-feedback and self-refinement, then fine-tuning on what the model itself accepts.

One iteration: answer the prompts (``respond``), judge each answer (``judge``), send the failing
ones with their critiques to the refiner (``refine``), judge the refinements, keep what passes
(``passing``), and fine-tune on the kept answers mixed with meta-skill examples
(prompt + response -> feedback + refined response), so the model keeps its ability to critique
and refine. What it is not: SELF's optional inference-time refinement (an evaluator's job).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Role, Stage
from engine.data import load_tasks
from engine.records import Critique, Link, Refinement, Response, TrainingExample

DEFAULT_SOURCE = "data/self-prompts.jsonl"


class SelfOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    meta_skill: bool = Field(True, description="mix (response, feedback, refinement) examples in")
    keep_passing_originals: bool = Field(True, description="train on first answers the judge accepts")


class SelfEvolve(Stage[SelfOptions]):
    kind = "loop"
    name = "self"
    roles = {
        "respond": Role(kind="generator", takes=("task",), gives=("response",), default="respond",
                        doc="the model answers each prompt"),
        "judge": Role(kind="critic", takes=("response",), gives=("critique",), default="llm-judge",
                      doc="self-feedback: one critique per answer (called again on the refinements)"),
        "failing": Role(kind="filter", takes=("critique",), gives=("critique",),
                        default={"name": "verdict", "options": {"keep": "no"}},
                        doc="keeps the critiques of answers to refine"),
        "refine": Role(kind="refiner", takes=("response", "critique"), gives=("refinement",),
                       default="critique-refine", doc="self-refinement of the failing answers"),
        "passing": Role(kind="filter", takes=("critique",), gives=("critique",),
                        default={"name": "verdict", "options": {"keep": "yes"}},
                        doc="keeps the critiques of answers good enough to train on"),
    }
    trains = {"policy": ("training_example",)}

    def run_iteration(self, runner: Any, iteration: int) -> None:
        opts = self.options
        data = runner.config.data
        tasks = runner.ingest("prompts", load_tasks(data.source or DEFAULT_SOURCE, data.limit))
        responses: list[Response] = runner.call("respond", tasks)
        critiques: list[Critique] = runner.call("judge", responses)
        by_id = {r.id: r for r in responses}
        failing = runner.call("failing", critiques)
        to_fix = [by_id[c.parent_ids("judges")[0]] for c in failing]
        refinements: list[Refinement] = runner.call("refine", to_fix, failing)
        verdicts: list[Critique] = runner.call("judge", refinements, key="refined")
        accepted = runner.call("passing", verdicts)
        refined_by_id = {r.id: r for r in refinements}
        crit_by_id = {c.id: c for c in critiques}
        examples: list[TrainingExample] = []
        for verdict in accepted:
            ref = refined_by_id[verdict.parent_ids("judges")[0]]
            examples.append(_sft(ref, verdict))
            if opts.meta_skill:
                original = by_id[ref.parent_ids("refines")[0]]
                feedback = crit_by_id[ref.parent_ids("input")[0]]
                examples.append(_meta_skill(original, feedback, ref, verdict))
        if opts.keep_passing_originals:
            passing_first = runner.call("passing", critiques, key="originals")
            examples += [_sft(by_id[c.parent_ids("judges")[0]], c) for c in passing_first]
        runner.ingest("examples", examples)
        runner.train(examples)


def _sft(resp: Response, verdict: Critique) -> TrainingExample:
    return TrainingExample(
        messages=[{"role": "user", "content": resp.prompt}, {"role": "assistant", "content": resp.text}],
        parents=[Link(id=resp.id, role="input"), Link(id=verdict.id, role="judges")])


def _meta_skill(original: Response, feedback: Critique, ref: Refinement,
                verdict: Critique) -> TrainingExample:
    ask = (f"Instruction:\n{original.prompt}\n\nResponse:\n{original.text}\n\n"
           "Give feedback on the response, then write an improved response.")
    answer = f"{feedback.text}\n\n[START]{ref.text}[END]"
    return TrainingExample(
        messages=[{"role": "user", "content": ask}, {"role": "assistant", "content": answer}],
        target_role="meta-skill",
        parents=[Link(id=ref.id, role="input"), Link(id=original.id, role="refines"),
                 Link(id=feedback.id, role="judges"), Link(id=verdict.id, role="judges")])


@hookimpl
def register_loops() -> list[type]:
    return [SelfEvolve]
