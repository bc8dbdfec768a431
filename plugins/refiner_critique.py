"""The ``critique-refine`` refiner: rewrite a response given its critique, between markers.

What it is: one batched sampler call for all (response, critique) pairs; the model reflects,
then writes the new response between ``start_marker`` and ``end_marker``. Text outside the
markers is dropped; with no markers the whole completion (after the last start marker, if any)
is the refinement. The refinement links to the response (``refines``) and the critique
(``input``). What it is not: a search; the tree search refiner builds on this one.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from engine import hookimpl
from engine.contracts import Stage
from engine.records import Critique, Link, Refinement, Response
from plugins._llm import SamplingOptions, load_template, sample_texts


class RefineOptions(SamplingOptions):
    start_marker: str = "[START]"
    end_marker: str = "[END]"
    max_tokens: int = Field(384, ge=1, le=32768)


def extract(text: str, start: str, end: str) -> str:
    """The text between the last ``start`` marker and the following ``end`` marker."""
    if start in text:
        text = text.rsplit(start, 1)[1]
    return text.split(end, 1)[0].strip()


def refine_prompts(responses: Sequence[Response], critiques: Sequence[Critique],
                   opts: RefineOptions) -> list[str]:
    """The rewrite prompt of each (response, critique) pair: the first of the critique's texts."""
    template = load_template(opts.template, "refine.txt")
    return [template.format(prompt=r.prompt, response=r.text, critique=c.text.split("\n---\n")[0])
            for r, c in zip(responses, critiques, strict=True)]


class CritiqueRefiner(Stage):
    kind = "refiner"
    name = "critique-refine"
    Options = RefineOptions

    def refine(self, responses: Sequence[Response], critiques: Sequence[Critique]) -> list[Refinement]:
        opts = self.options
        assert isinstance(opts, RefineOptions)
        if len(responses) != len(critiques):
            raise ValueError(f"{len(responses)} responses but {len(critiques)} critiques")
        sampled = sample_texts(self.context, self.name, refine_prompts(responses, critiques, opts), opts,
                               seed_offset=2)
        out = []
        for resp, crit, (texts, version) in zip(responses, critiques, sampled, strict=True):
            depth = resp.depth + 1 if isinstance(resp, Refinement) else 1
            for i, text in enumerate(texts):
                out.append(Refinement(
                    text=extract(text, opts.start_marker, opts.end_marker), prompt=resp.prompt,
                    sample_index=i, depth=depth, model_version=version,
                    parents=[Link(id=resp.id, role="refines"), Link(id=crit.id, role="input")]))
        return out


@hookimpl
def register_refiners() -> list[type]:
    return [CritiqueRefiner]
