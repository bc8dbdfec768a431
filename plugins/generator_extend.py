"""The ``extend`` generator: Self-Lengthen's Extender, lengthening drafts in rounds.

What it is: for each draft (a Response: ``prompt`` the instruction, ``text`` the draft), up to
``rounds`` rounds of Self-Lengthen's two steps. Step 1: the model is shown the first half of the
text's paragraphs (lines or sentences when it has fewer than two paragraphs) and told to rewrite
them in more detail WITHOUT continuing; the first ``keep`` (2/3) of its rewrite's paragraphs are
kept. Step 2: the model writes the whole answer again, its draft shown as a reference, starting
from that kept prefix (the sampler's assistant prefix: the model continues it). The candidate is
accepted only if it has more words (engine.toolkit.lengthen.count_words) than the current text
(a candidate cut by ``max_tokens`` is first trimmed to its last full sentence, ``trim_cut``: the
paper samples until the model stops, a small CPU budget cuts nearly every continuation);
a rejected round leaves the text as it was and the next round starts from it again. All texts
advance together on the episode driver's step loop (engine.episodes.drive): each step is ONE
sampler call across every text still extending.
Lineage: every round's candidate is a side output, a Refinement (``depth`` = the round) linked to
the text it extends (role ``refines``), with ``meta`` {round, accepted, reason, words,
rewrite_words, cut}. The output, one per draft in input order, is a Refinement holding the final text
(the last accepted candidate, else the draft's own text) linked to it (``refines``) and to the
draft (``input``), with ``meta`` {kept, reason, rounds_accepted, words, draft_words}: kept only
when the final text is clean (engine.toolkit.lengthen.is_clean: sentence punctuation at the end,
no repeated 13-gram) and longer than ``min_ratio`` (1.2) x the draft; ``reason`` says why not. An
empty draft is not extended and is output with ``kept`` false and reason "empty draft".
``messages(responses)`` (engine.contracts.Prompted) is the chat the extender is trained on: the
instruction and a text to lengthen, as step 2 shows them; ``completion(output)`` its text.
What it is not: a judge of quality (only length and cleanliness decide) or a trainer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import Field

from engine import hookimpl
from engine.contracts import Messages, Stage
from engine.episodes import drive
from engine.records import Link, Record, Refinement, Response
from engine.sampling.protocol import SampleResult
from engine.toolkit.lengthen import count_words, is_clean, trim_to_sentence
from engine.toolkit.prompting import SamplingOptions, chat, continued

REWRITE = ("Here is the beginning of an answer to the instruction below.\n\nInstruction: {instruction}"
           "\n\nBeginning of the answer:\n{part}\n\nRewrite this beginning so that it is longer and more "
           "detailed: add explanations, examples and description. Only rewrite this part; do not continue "
           "the answer beyond it.")
EXTEND = ("Instruction: {instruction}\n\nHere is an answer to it:\n{text}\n\nWrite a longer and more "
          "detailed version of the whole answer, from beginning to end.")


class ExtendOptions(SamplingOptions):
    rounds: int = Field(3, ge=1, le=16, description="extension rounds at most (Self-Lengthen: 3)")
    min_ratio: float = Field(1.2, ge=1.0, description="keep a final text only if longer than this x draft")
    keep: float = Field(2 / 3, gt=0.0, le=1.0, description="share of the rewrite's paragraphs kept")
    max_tokens: int = Field(512, ge=1, le=32768, description="new tokens per step")
    adapter_role: str | None = Field("extender", description="adapter role the extender samples from")
    trim_cut: bool = Field(True, description="cut a candidate that hit max_tokens back to its last "
                                             "full sentence (else it is never clean)")
    rewrite_prompt: str = Field(REWRITE, description="step 1: {instruction}, {part} (the first half)")
    extend_prompt: str = Field(EXTEND, description="step 2 (and training): {instruction}, {text}")


def units(text: str) -> list[str]:
    """A text's paragraphs; its lines when it has fewer than two; its sentences when one line."""
    for pattern in (r"\n\s*\n", r"\n", r"(?<=[.!?])\s+"):
        parts = [p.strip() for p in re.split(pattern, text.strip()) if p.strip()]
        if len(parts) >= 2:
            return parts
    return [text.strip()] if text.strip() else []


def _join(parts: Sequence[str]) -> str:
    return "\n\n".join(parts)


@dataclass
class _Text:
    """One draft's extension state."""

    draft: Response
    current: Response  # the last accepted text (the draft at first)
    accepted: int = 0
    round: int = 0
    prefix: str = ""  # step 2's kept rewrite, set by step 1
    rewrite_words: int = 0
    done: bool = False
    rounds: list[Refinement] = field(default_factory=list)


class Extend(Stage[ExtendOptions]):
    kind = "generator"
    name = "extend"
    accepts = ("response",)
    produces = ("refinement",)

    def messages(self, responses: Sequence[Response]) -> list[Messages]:
        """The extender's own chat for each response: its instruction and the text to lengthen."""
        return [chat(self.options.extend_prompt.format(instruction=r.prompt, text=r.text)) for r in responses]

    def completion(self, output: Refinement) -> str:
        return output.text

    def generate(self, inputs: Sequence[Record]) -> list[Record]:
        drafts = [r for r in inputs if isinstance(r, Response)]
        texts = [_Text(draft=d, current=d, done=not d.text.strip()) for d in drafts]
        drive(self, texts, self.options, done=lambda t: t.done, chats=self._chats, advance=self._advance,
              n=1, seed=lambda step: 7 + step)
        out: list[Record] = []
        for t in texts:
            self.emit(t.rounds)
            out.append(self._final(t))
        return out

    def _chats(self, live: list[_Text], step: int) -> list[Messages]:
        opts = self.options
        if step % 2 == 0:  # step 1: rewrite the first half, without continuing
            return [chat(opts.rewrite_prompt.format(instruction=t.current.prompt, part=_join(
                (parts := units(t.current.text))[:math.ceil(len(parts) / 2)]))) for t in live]
        return [chat(opts.extend_prompt.format(instruction=t.current.prompt, text=t.current.text), t.prefix)
                for t in live]

    def _advance(self, live: list[_Text], results: list[SampleResult], step: int) -> None:
        opts = self.options
        self.context.progress(len(live) if step % 2 else 0)
        if step % 2 == 0:
            for t, r in zip(live, results, strict=True):
                rewrite = units(r.completions[0].text)
                t.prefix = _join(rewrite[:max(1, math.ceil(opts.keep * len(rewrite)))]) + "\n\n"
                t.rewrite_words = count_words(r.completions[0].text)
            return
        for t, r in zip(live, results, strict=True):
            (candidate,) = continued(chat("", t.prefix), r)
            cut = r.completions[0].finish_reason == "length"
            if cut and opts.trim_cut:
                candidate = trim_to_sentence(candidate)
            before, after = count_words(t.current.text), count_words(candidate)
            t.round += 1
            accepted = after > before
            node = Refinement(text=candidate.strip(), prompt=t.current.prompt, depth=t.round,
                              model_version=r.model_version, parents=[Link(id=t.current.id, role="refines")],
                              meta={"round": t.round, "accepted": accepted, "words": after,
                                    "rewrite_words": t.rewrite_words, "cut": cut,
                                    "reason": "" if accepted else f"not longer: {before} -> {after} words"})
            t.rounds.append(node)
            if accepted:
                t.current, t.accepted = node, t.accepted + 1
            t.done = t.round >= opts.rounds

    def _final(self, t: _Text) -> Refinement:
        draft_words, words = count_words(t.draft.text), count_words(t.current.text)
        if not t.draft.text.strip():
            kept, reason = False, "empty draft"
        else:
            kept, reason = is_clean(t.current.text)
            if kept and words <= self.options.min_ratio * draft_words:
                kept, reason = False, (f"not longer than {self.options.min_ratio}x the draft: "
                                       f"{draft_words} -> {words} words")
        links = [Link(id=t.current.id, role="refines")] if t.current is not t.draft else []
        return Refinement(text=t.current.text, prompt=t.draft.prompt, depth=t.accepted,
                          model_version=t.current.model_version,
                          parents=[*links, Link(id=t.draft.id, role="input")],
                          meta={"kept": kept, "reason": reason, "rounds_accepted": t.accepted, "words": words,
                                "draft_words": draft_words})


@hookimpl
def register_generators() -> list[type]:
    return [Extend]
