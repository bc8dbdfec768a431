"""The ``dedup`` filter: exact duplicates of instruction or response, then MinHash near-duplicate code.

What it is: SelfCodeAlign's dedup, kept general: for each record its instruction (Response.prompt,
Task.prompt, a training example's first user message) and its response text (Response.text, the
last assistant message) are normalised (whitespace collapsed, case folded); a record whose
instruction or response was already seen in the batch is dropped (``exact`` picks which fields
count). Then the code is compared by MinHash LSH (datasketch) on token 5-grams at Jaccard
``threshold`` (0.7; LSH candidates are confirmed by their estimated Jaccard) and near-duplicates
are dropped. The first record of each group is kept, in
input order. Records with no text (critiques, executions...) pass through untouched.
What it is not: decontamination against benchmarks (``decontaminate``) nor a cross-iteration dedup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import ANY, Stage
from engine.records import Record, Response, Task, TrainingExample


class DedupOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exact: list[Literal["instruction", "response"]] = Field(
        default_factory=lambda: ["instruction", "response"],
        description="fields whose exact (normalised) repeats are dropped")
    near: bool = Field(True, description="drop MinHash near-duplicates of the response code")
    threshold: float = Field(0.7, gt=0.0, le=0.95, description="Jaccard threshold of near-duplicates")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    shingle: int = Field(5, ge=1, le=32, description="tokens per shingle")


def fields_of(rec: Record) -> tuple[str, str] | None:
    """(instruction, response) text of a record, or None for records without text to compare."""
    if isinstance(rec, Response):
        return rec.prompt, rec.text
    if isinstance(rec, Task):
        return rec.prompt, ""
    if isinstance(rec, TrainingExample):
        user = next((m["content"] for m in rec.messages if m.get("role") == "user"), rec.prompt or "")
        answer = next((m["content"] for m in reversed(rec.messages) if m.get("role") == "assistant"),
                      rec.completion or "")
        return user, answer
    return None


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def shingles(text: str, k: int) -> set[bytes]:
    tokens = re.findall(r"\w+|[^\w\s]", text)
    return {" ".join(tokens[i:i + k]).encode() for i in range(max(1, len(tokens) - k + 1))}


class Dedup(Stage[DedupOptions]):
    kind = "filter"
    name = "dedup"
    accepts = ("response", "task", "training_example")
    produces = (ANY,)

    def filter(self, records: Sequence[Record]) -> list[Record]:
        opts = self.options
        seen: dict[str, set[str]] = {"instruction": set(), "response": set()}
        lsh, hashes = None, {}
        if opts.near:
            from datasketch import MinHash, MinHashLSH

            lsh = MinHashLSH(threshold=opts.threshold, num_perm=opts.num_perm)
        kept: list[Record] = []
        for i, rec in enumerate(records):
            texts = fields_of(rec)
            if texts is None:
                kept.append(rec)
                continue
            keys = dict(zip(("instruction", "response"), map(normalise, texts), strict=True))
            if any(keys[f] and keys[f] in seen[f] for f in opts.exact):
                continue
            if lsh is not None and texts[1].strip():
                mh = MinHash(num_perm=opts.num_perm, seed=1)
                mh.update_batch(list(shingles(texts[1], opts.shingle)))
                if any(mh.jaccard(hashes[c]) >= opts.threshold for c in lsh.query(mh)):
                    continue
                hashes[str(i)] = mh
                lsh.insert(str(i), mh)
            for f in opts.exact:
                if keys[f]:
                    seen[f].add(keys[f])
            kept.append(rec)
        return kept


@hookimpl
def register_filters() -> list[type]:
    return [Dedup]
