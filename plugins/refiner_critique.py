"""The ``critique-refine`` refiner: rewrite a response given its critique, between markers.

What it is: one batched sampler call for all (response, critique) pairs; the model reflects,
then writes the new response between ``start_marker`` and ``end_marker``. Text outside the
markers is dropped; with no markers the whole completion (after the last start marker, if any)
is the refinement. The refinement links to the response (``refines``) and the critique
(``input``), and carries the response's verifiable ``checks`` and the critique's text in its
``meta`` (engine.toolkit.judging.carried). ``messages(responses, critiques)`` shows the rewrite
chats (engine.contracts.Prompted).
What it is not: a search (``tree-search`` is one).
"""

from __future__ import annotations

from collections.abc import Sequence

from engine import hookimpl
from engine.contracts import Messages, Stage
from engine.records import Critique, Link, Refinement, Response
from engine.toolkit.judging import RefineOptions, carried, extract, refine_messages
from engine.toolkit.prompting import sample_chats


class CritiqueRefiner(Stage[RefineOptions]):
    kind = "refiner"
    name = "critique-refine"
    accepts = ("response", "critique")
    produces = ("refinement",)

    def messages(self, responses: Sequence[Response], critiques: Sequence[Critique]) -> list[Messages]:
        return refine_messages(responses, critiques, self.options)

    def completion(self, output: Refinement) -> str:
        """What the model writes for ``output``: its text between the markers."""
        return f"{self.options.start_marker}{output.text}{self.options.end_marker}"

    def refine(self, responses: Sequence[Response], critiques: Sequence[Critique]) -> list[Refinement]:
        opts = self.options
        if len(responses) != len(critiques):
            raise ValueError(f"{len(responses)} responses but {len(critiques)} critiques")
        sampled = sample_chats(self.context, self.name, self.messages(responses, critiques), opts,
                               seed_offset=2)
        out = []
        for resp, crit, (texts, version) in zip(responses, critiques, sampled, strict=True):
            depth = resp.depth + 1 if isinstance(resp, Refinement) else 1
            for i, text in enumerate(texts):
                out.append(Refinement(
                    text=extract(text, opts.start_marker, opts.end_marker), prompt=resp.prompt,
                    sample_index=i, depth=depth, model_version=version, meta=carried(resp, crit),
                    parents=[Link(id=resp.id, role="refines"), Link(id=crit.id, role="input")]))
        return out


@hookimpl
def register_refiners() -> list[type]:
    return [CritiqueRefiner]
