"""The ``self-instruct`` generator: the model writes new instructions from a few of the seed ones.

What it is: Self-Lengthen's (and Self-Instruct's) instruction generation. Each call makes
``count`` candidates; candidate i shows the model ``shots`` seed instructions drawn (seeded by
the run's seed, the iteration and i) from the input tasks, numbered, in the ``self-instruct.txt``
template, and keeps the first line of its answer, stripped of numbering and quotes. Each
candidate is a Response (its ``text`` the new instruction, its ``prompt`` the few-shot prompt),
linked to its seed tasks (role ``example``), with a requested length drawn from ``lengths`` in
``meta["words"]``: a critic can judge it as it judges any answer, and a loop turns the kept ones
into tasks.
What it is not: a judge of whether the instruction is suitable (a critic's job), or a dedup: an
empty or duplicate candidate is made all the same and marked ``meta["empty"]`` / ``meta["duplicate"]``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from engine import hookimpl
from engine.contracts import Stage
from engine.records import Link, Record, Response, Task
from engine.toolkit.prompting import SamplingOptions, chat, load_template, sample_chats

TEMPLATE = Path(__file__).parent / "templates" / "self-instruct.txt"
_NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[-*•]|instruction\s*\d*\s*:)\s*", re.I)


class SelfInstructOptions(SamplingOptions):
    count: int = Field(32, ge=1, le=100_000, description="new instructions per call")
    shots: int = Field(3, ge=1, le=16, description="seed instructions shown per new one")
    lengths: list[int] = Field([300, 500, 800, 1000], min_length=1,
                               description="requested lengths in words, one drawn per instruction")
    max_tokens: int = Field(80, ge=1, le=32768, description="new tokens per instruction")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="sampling temperature")


def first_line(text: str) -> str:
    """The instruction in a model's answer: its first non-blank line, unnumbered and unquoted."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    return _NUMBERING.sub("", line).strip().strip('"“”').strip()


class SelfInstruct(Stage[SelfInstructOptions]):
    kind = "generator"
    name = "self-instruct"
    accepts = ("task",)
    produces = ("response",)

    def generate(self, inputs: Sequence[Record]) -> list[Record]:
        seeds = [t for t in inputs if isinstance(t, Task)]
        if not seeds:
            return []
        opts = self.options
        template = load_template(opts.template, TEMPLATE)
        draws = []
        for i in range(opts.count):
            rng = random.Random(f"{self.context.seed}:{self.context.iteration}:{i}")
            shown = rng.sample(seeds, min(opts.shots, len(seeds)))
            draws.append((shown, rng.choice(opts.lengths)))
        chats = [chat(template.format(examples="\n".join(f"{k}. {s.prompt}" for k, s in enumerate(shown, 1))))
                 for shown, _ in draws]
        seen: set[str] = set()
        out: list[Record] = []
        for (shown, words), msgs, (texts, version) in zip(
                draws, chats, sample_chats(self.context, self.name, chats, opts, n=1), strict=True):
            text = first_line(texts[0])
            meta = {"words": words, "empty": not text, "duplicate": text.lower() in seen}
            seen.add(text.lower())
            out.append(Response(text=text, prompt=msgs[0]["content"], model_version=version, meta=meta,
                                parents=[Link(id=s.id, role="example") for s in shown]))
        return out


@hookimpl
def register_generators() -> list[type]:
    return [SelfInstruct]
