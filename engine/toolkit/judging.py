"""Judging and refining with a model: the toolkit part shared by judges, refiners and searches.

What it is: :class:`JudgeOptions` and :class:`RefineOptions` (sampling options plus the verdict
patterns, tie policy and refinement markers), :func:`parse_verdict` (the last Yes/No phrase of a
text), :func:`tally` and :func:`make_critique` (a majority vote over sampled critiques, each kept
with its own verdict), :func:`judge_messages` and :func:`refine_messages` (the chats a judge and a
refiner send, from the shipped templates or a user's), :func:`extract` (a rewrite between
markers), :func:`carried` (the ``meta`` an answer hands on to what is made from it: a task's
verifiable ``checks``, a refinement's ``critique`` text) and :func:`helper_problems` (a ``preflight``
check of the helper stages a stage builds by name). What it is not: a stage; ``llm-judge``,
``critique-refine`` and ``tree-search`` are built-in plugins that use these, and a third-party
judge can too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from engine.contracts import Messages
from engine.records import Critique, Link, Record, Response
from engine.toolkit.prompting import SamplingOptions, chat, load_template

TEMPLATES = Path(__file__).parent / "templates"


class JudgeOptions(SamplingOptions):
    votes: int = Field(5, ge=1, le=64, description="critiques sampled per response")
    yes_pattern: str = Field(r"judg(?:e)?ment\s*:\s*\**\s*yes", description="regex of a Yes verdict")
    no_pattern: str = Field(r"judg(?:e)?ment\s*:\s*\**\s*no", description="regex of a No verdict")
    tie: Literal["drop", "yes", "no"] = Field("drop", description="verdict of a tied vote (drop: none)")
    max_tokens: int = Field(192, ge=1, le=32768, description="new tokens per critique")


class RefineOptions(SamplingOptions):
    start_marker: str = Field("[START]", description="the rewrite starts after this marker")
    end_marker: str = Field("[END]", description="and ends before this one")
    max_tokens: int = Field(384, ge=1, le=32768, description="new tokens per rewrite")


def parse_verdict(text: str, yes: str, no: str) -> bool | None:
    """True/False from the LAST verdict phrase in ``text``; None if there is none."""
    hits = [(m.start(), True) for m in re.finditer(yes, text, re.I)]
    hits += [(m.start(), False) for m in re.finditer(no, text, re.I)]
    return max(hits)[1] if hits else None


def majority(yes: int, no: int, tie: str) -> bool | None:
    if yes != no:
        return yes > no
    return {"yes": True, "no": False}.get(tie)


def judge_messages(responses: Sequence[Response], opts: JudgeOptions) -> list[Messages]:
    """The judge chat of each response (its instruction and text in the judge template), with the
    options' assistant prefix when set."""
    template = load_template(opts.template, TEMPLATES / "judge.txt")
    return [chat(template.format(prompt=r.prompt, response=r.text), opts.prefix) for r in responses]


def tally(texts: Sequence[str], opts: JudgeOptions) -> dict[str, object]:
    """The vote fields of a Critique from sampled judge texts: verdict, counts, Yes share, samples."""
    verdicts = [parse_verdict(t, opts.yes_pattern, opts.no_pattern) for t in texts]
    yes, no = verdicts.count(True), verdicts.count(False)
    return {"verdict": majority(yes, no, opts.tie), "votes_yes": yes, "votes_no": no,
            "vote_share": yes / len(texts) if texts else 0.0, "samples": list(texts),
            "sample_verdicts": verdicts}


def make_critique(response_id: str, texts: Sequence[str], version: str | None,
                  opts: JudgeOptions) -> Critique:
    """The critique of one response from its sampled judge texts (``text``: the first one)."""
    return Critique(**tally(texts, opts), text=texts[0] if texts else "",
                    model_version=version, parents=[Link(id=response_id, role="judges")])


def refine_messages(responses: Sequence[Response], critiques: Sequence[Critique],
                    opts: RefineOptions) -> list[Messages]:
    """The rewrite chat of each (response, critique) pair (the critique's ``text``)."""
    template = load_template(opts.template, TEMPLATES / "refine.txt")
    return [chat(template.format(prompt=r.prompt, response=r.text, critique=c.text), opts.prefix)
            for r, c in zip(responses, critiques, strict=True)]


def extract(text: str, start: str, end: str) -> str:
    """The text between the last ``start`` marker and the following ``end`` marker."""
    if start in text:
        text = text.rsplit(start, 1)[1]
    return text.split(end, 1)[0].strip()


CARRIED = ("checks",)
"""The ``meta`` keys a response or refinement copies from the record it is made from."""


def carried(source: Record, critique: Critique | None = None) -> dict[str, Any]:
    """The ``meta`` of a record made from ``source``: ``source``'s verifiable ``checks`` (a task's
    ``[{"id", "kwargs", "text"}]`` from ``evolve-constraints``, which the ``respond`` generator and
    the refiners hand on, so that the ``constraint-check`` critic sees them on every answer) and,
    for a refinement, the ``critique`` text it was conditioned on (the ``non-answer`` filter checks
    that a rewrite is not a copy of it)."""
    meta = {k: source.meta[k] for k in CARRIED if k in source.meta}
    if critique is not None:
        meta["critique"] = critique.text
    return meta


def helper_problems(helpers: dict[str, tuple[str, str, dict[str, Any]] | None]) -> list[str]:
    """For a ``preflight``: one line per helper stage (option name -> (kind, registered name,
    options), None: unused) that is not registered or refuses its options; [] when all is well."""
    from engine.manager import create_plugin_manager
    from engine.options import validate_options

    pm, problems = create_plugin_manager(), []
    for where, helper in helpers.items():
        if helper is None:
            continue
        kind, name, options = helper
        try:
            validate_options(pm.stage(kind, name).cls, options)  # type: ignore[arg-type]
        except Exception as exc:  # an unknown stage or bad options: say which, in one line
            problems.append(f"{where}: " + " ".join(str(exc).split())[:300])
    return problems
