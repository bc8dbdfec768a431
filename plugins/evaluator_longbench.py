"""The ``longbench-write`` evaluator: does the model write as long as it is asked to?

What it is: LongBench-Write's prompts (from the ``evalscope`` package, read by path: the 60 English
ones by default, or all 120), those asking for at most ``max_words`` words, or a seeded subset of
``n`` of them spread over the requested lengths; each is answered once through the run's sampler
(the adapter of ``adapter_role``; greedy by default) as a chat. Metrics: ``S_l``, the length score
of LongWriter and Self-Lengthen (engine.toolkit.lengthen.length_score: 100 at the requested length,
falling linearly to 0 at 4x over or 1/3 under), averaged over prompts; ``words_median`` and
``words_mean`` written; ``requested_median``; ``ratio_median`` (written / requested); and
``hit_token_limit``, the share of answers cut by ``max_tokens``. ``details["items"]`` holds every
prompt's [requested words, written words, S_l, cut] in prompt order, so two model versions can be
compared prompt by prompt (``autodidact report``: a paired permutation test on the log length
ratios, engine.toolkit.stats, and ``length.png``, written against requested words per iteration);
``S_l`` also keeps ``item_scores`` (each prompt's S_l: a paired bootstrap in the report), and every
metric its 95% interval as ``ci95`` (seeded bootstrap over prompts of the mean or median; Wilson
for ``hit_token_limit``).
With ``refine`` (engine.toolkit.refining: the model judges its answers and rewrites those it
rejects) every metric is also given for the refined answers, as ``<metric>+refine`` (a refined
answer counts as not cut: the refiner's limit is not the answer's).
What it is not: the quality half of LongBench-Write (a judge's 6-aspect score), not measured here.
"""

from __future__ import annotations

import statistics
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Stage
from engine.data import data_problems, package_file, read_jsonl, seeded_subset
from engine.records import EvalResult
from engine.toolkit.lengthen import count_words, length_score
from engine.toolkit.refining import (
    RefineAtInference,
    answer_prompts,
    refine_answers,
    refine_problems,
    refined_results,
)
from engine.toolkit.stats import bootstrap_mean, bootstrap_median, wilson

PACKAGE = "evalscope"
FILES = {"en": "third_party/longbench_write/resources/longbench_write_en.jsonl",
         "all": "third_party/longbench_write/resources/longbench_write.jsonl"}


class LongBenchWriteOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subset: Literal["en", "all"] = Field("en", description="the 60 English prompts, or all 120")
    max_words: int = Field(2000, ge=1, description="keep prompts asking for at most this many words")
    n: int | None = Field(None, ge=1, description="a seeded subset of this many prompts (None: all kept)")
    seed: int = Field(0, description="seed of the subset")
    max_tokens: int = Field(1024, ge=1, le=65536, description="new tokens per answer")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0: greedy")
    adapter_role: str | None = Field("policy", description="adapter role of the model under test")
    refine: RefineAtInference | None = Field(None, description="also score the answers after the model's "
                                             "own critique and refinement (<metric>+refine)")


def load_prompts(subset: str = "en", max_words: int = 2000, n: int | None = None,
                 seed: int = 0) -> list[dict[str, Any]]:
    """LongBench-Write rows (prompt, type, length) asking for at most ``max_words``, sorted by
    requested length; ``n``: a seeded draw of that many, in the same order."""
    path = package_file(PACKAGE, FILES[subset])
    if path is None:
        raise RuntimeError(f"longbench-write: {PACKAGE}/{FILES[subset]} is not installed; "
                           "run scripts/setup.sh (it installs evalscope --no-deps)")
    rows = [r for r in read_jsonl(path) if int(r["length"]) <= max_words]
    rows.sort(key=lambda r: int(r["length"]))
    return seeded_subset(rows, n, seed)


class LongBenchWrite(Stage[LongBenchWriteOptions]):
    kind = "evaluator"
    name = "longbench-write"

    @classmethod
    def preflight(cls, options: LongBenchWriteOptions) -> list[str]:
        return data_problems(lambda: load_prompts(options.subset, options.max_words, options.n,
                                                  options.seed)) + refine_problems(options.refine)

    def evaluate(self, sampler: Any, model_version: str | None) -> list[EvalResult]:
        opts = self.options
        rows = load_prompts(opts.subset, opts.max_words, opts.n, opts.seed)
        prompts = [r["prompt"] for r in rows]
        got = answer_prompts(self.context, sampler, prompts, max_tokens=opts.max_tokens,
                             temperature=opts.temperature, adapter_role=opts.adapter_role,
                             model_version=model_version)
        version, answers = got.version, got.texts
        cut = [int(f == "length") for f in got.finish]
        base = {"subset": opts.subset, "max_words": opts.max_words, "prompts": len(rows),
                "max_tokens": opts.max_tokens, "temperature": opts.temperature, "adapter": got.adapter}
        out = self.scored(rows, answers, cut, version, base)
        if opts.refine is not None:
            outcome = refine_answers(self.context, sampler, prompts, answers, opts.refine, opts.adapter_role,
                                     max_tokens=opts.max_tokens)
            kept = [c if new == old else 0 for c, new, old in zip(cut, outcome.answers, answers, strict=True)]
            out += refined_results(self.scored(rows, outcome.answers, kept, version, base), outcome)
        return out

    def scored(self, rows: list[dict[str, Any]], answers: list[str], cut: list[int], version: str | None,
               base: dict[str, Any]) -> list[EvalResult]:
        """The metrics of ``answers`` to ``rows`` (``cut``: 1 where an answer hit the token limit)."""
        items = []
        for row, text, c in zip(rows, answers, cut, strict=True):
            written, requested = count_words(text), int(row["length"])
            items.append([requested, written, round(length_score(requested, written), 2), c])
        words = [w for _, w, _, _ in items]
        asked = [r for r, _, _, _ in items]
        values = {"S_l": statistics.fmean(s for _, _, s, _ in items),
                  "words_median": statistics.median(words), "words_mean": statistics.fmean(words),
                  "requested_median": statistics.median(asked),
                  "ratio_median": statistics.median(w / r for r, w, _, _ in items),
                  "hit_token_limit": statistics.fmean(c for _, _, _, c in items)}
        details = {**base, "items": items, "columns": ["requested", "written", "S_l", "cut"]}
        scores = [float(s) for _, _, s, _ in items]
        intervals = {"S_l": bootstrap_mean(scores), "words_median": bootstrap_median(words),
                     "words_mean": bootstrap_mean(words), "requested_median": bootstrap_median(asked),
                     "ratio_median": bootstrap_median([w / r for r, w, _, _ in items]),
                     "hit_token_limit": wilson(sum(c for _, _, _, c in items), len(items))}
        extra: dict[str, dict[str, Any]] = {"S_l": {"item_scores": scores}}
        return [EvalResult(evaluator=self.name, metric=metric, value=float(value), n=len(items),
                           model_version=version, details={**details, **extra.get(metric, {}),
                                                           "ci95": list(intervals[metric])})
                for metric, value in values.items()]


@hookimpl
def register_evaluators() -> list[type]:
    return [LongBenchWrite]
