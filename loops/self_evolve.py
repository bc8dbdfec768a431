"""SELF: self-feedback and self-refinement, then fine-tuning on what the model itself accepts.

One iteration: answer the prompts (``respond``), judge each answer (``judge``), send the failing
ones with their critiques to the refiner (``refine``), drop the refinements that are not answers
(``screen``, optional, default ``non-answer``: a verdict, an empty text or a copy of the critique,
each drop recorded with its reason), judge the others, keep what passes (``passing``), and
fine-tune on the kept answers mixed with meta-skill examples (prompt + response -> feedback +
refined response), so the model keeps its ability to critique and refine.

Meta-skill data comes from a teacher (``teacher_feedback`` and ``teacher_refine``; by default the
model itself, or any named sampler: ``options.sampler: teacher``): the teacher critiques the
policy's answers, refines those it does not accept, and judges its refinements. A pair is kept only
when the refinement is better: where the task carries a gold answer (``meta.answer``, math), when
the refined answer is correct (engine.toolkit.math.is_correct, math-verify); otherwise when the
teacher's Yes share of the refinement beats that of the original. With the teacher roles unbound
(``stages.teacher_feedback: null``), the self-refinements the model accepts serve as meta-skill
data. When the teacher is the policy with the judge's and refiner's options, its calls are the
request cache's hits, not new samples. What it is not: SELF's inference-time refinement (the
evaluators' ``refine`` option, engine.toolkit.refining).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Role, Stage
from engine.data import load_tasks
from engine.records import Critique, Link, Refinement, Response, Task, TrainingExample

DEFAULT_SOURCE = "data/self-prompts.jsonl"


class SelfOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    meta_skill: bool = Field(True, description="mix (response, feedback, refinement) examples in: the "
                             "teacher's when its roles are bound, else the accepted self-refinements")
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
        "screen": Role(kind="filter", takes=("refinement",), gives=("refinement",), optional=True,
                       default="non-answer",
                       doc="drops refinements that are not answers (a verdict, empty, the critique) before "
                           "they are judged; each drop recorded with its reason"),
        "passing": Role(kind="filter", takes=("critique",), gives=("critique",),
                        default={"name": "verdict", "options": {"keep": "yes"}},
                        doc="keeps the critiques of answers good enough to train on"),
        "teacher_feedback": Role(kind="critic", takes=("response",), gives=("critique",), optional=True,
                                 default={"name": "llm-judge", "options": {"votes": 3, "max_tokens": 96}},
                                 doc="meta-skill data: the teacher's feedback on the policy's answers, "
                                     "and its verdict on its own refinements (options.sampler: the teacher)"),
        "teacher_refine": Role(kind="refiner", takes=("response", "critique"), gives=("refinement",),
                               optional=True,
                               default={"name": "critique-refine", "options": {"max_tokens": 128}},
                               doc="meta-skill data: the teacher's refined answer"),
    }
    trains = {"policy": ("training_example",)}

    def run_iteration(self, runner: Any, iteration: int) -> None:
        opts = self.options
        data = runner.config.data
        tasks: list[Task] = runner.ingest("prompts", load_tasks(data.source or DEFAULT_SOURCE, data.limit))
        responses: list[Response] = runner.call("respond", tasks)
        critiques: list[Critique] = runner.call("judge", responses)
        by_id = {r.id: r for r in responses}
        failing = runner.call("failing", critiques)
        to_fix = [by_id[c.parent_ids("judges")[0]] for c in failing]
        refinements: list[Refinement] = runner.call("screen", runner.call("refine", to_fix, failing))
        verdicts: list[Critique] = runner.call("judge", refinements, key="refined")
        accepted = runner.call("passing", verdicts)
        refined_by_id = {r.id: r for r in refinements}
        crit_by_id = {c.id: c for c in critiques}
        teacher = opts.meta_skill and runner.stage("teacher_feedback") is not None \
            and runner.stage("teacher_refine") is not None
        meta = runner.ingest("meta-skill", _teacher_meta_skill(runner, tasks, responses)) if teacher else []
        examples: list[TrainingExample] = []
        for verdict in accepted:
            ref = refined_by_id[verdict.parent_ids("judges")[0]]
            examples.append(_sft(ref, verdict))
            if opts.meta_skill and not teacher:
                original = by_id[ref.parent_ids("refines")[0]]
                feedback = crit_by_id[ref.parent_ids("input")[0]]
                examples.append(_meta_skill(original, feedback, ref, verdict))
        if opts.keep_passing_originals:
            passing_first = runner.call("passing", critiques, key="originals")
            examples += [_sft(by_id[c.parent_ids("judges")[0]], c) for c in passing_first]
        runner.ingest("examples", examples)
        runner.train([*examples, *meta])


def _teacher_meta_skill(runner: Any, tasks: list[Task], responses: list[Response]) -> list[TrainingExample]:
    """Meta-skill examples from the teacher: feedback on every answer, a refinement of each answer
    it does not accept (screened for non-answers), its verdict on the refinement; kept when the
    refinement is better (see the module doc). Records the teacher could not serve (``on_error:
    skip``) are left out."""
    from engine.toolkit.math import is_correct

    gold = {t.id: t.meta.get("answer") for t in tasks}
    feedback: list[Critique] = runner.call("teacher_feedback", responses, key="meta")
    by_id = {r.id: r for r in responses}
    todo = [c for c in feedback if c.verdict is not True]
    originals = [by_id[c.parent_ids("judges")[0]] for c in todo]
    rewrites = runner.call("teacher_refine", originals, todo, key="meta")
    refined: list[Refinement] = runner.call("screen", rewrites, key="meta")
    verdicts: list[Critique] = runner.call("teacher_feedback", refined, key="meta-refined")
    verdict_of = {v.parent_ids("judges")[0]: v for v in verdicts}
    crit_by_id = {c.id: c for c in feedback}
    kept = []
    for ref in refined:
        original = by_id[ref.parent_ids("refines")[0]]
        before, after = crit_by_id[ref.parent_ids("input")[0]], verdict_of.get(ref.id)
        answer = gold.get(original.parent_ids("input")[0])
        if after is None or not ref.text.strip():
            continue
        better = (is_correct(ref.text, str(answer)) if answer is not None
                  else after.vote_share > before.vote_share)
        if better:
            kept.append(_meta_skill(original, before, ref, after))
    return kept


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
