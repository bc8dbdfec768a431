"""Typed records: what flows between stages and lands in the lineage store.

Every record carries the ids of its parents (with the role of each edge) from the moment it is
made, so lineage is never reconstructed after the fact. A record's id is derived from its kind,
its content and its parents, so the same record made twice (a resumed stage, a retried batch)
has the same id and is stored once. This module holds data only: no I/O, no stage logic.
Plugins may add record kinds by subclassing :class:`Record` with a new ``kind`` literal and
returning the class from the ``register_record_kinds`` hook.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

EdgeRole = str
"""Role of a parent edge: ``input``, ``refines``, ``judges``, ``chosen``, ``rejected``, ``tests``..."""


class Link(BaseModel):
    """A parent reference: the parent's id and the role the parent played."""

    model_config = ConfigDict(frozen=True)
    id: str
    role: EdgeRole = "input"


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace: the text that content hashes are taken of."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(data: Any) -> str:
    """sha256 hex digest of the canonical JSON of ``data``."""
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


_NAMESPACE: ContextVar[str] = ContextVar("autodidact_record_namespace", default="")


@contextmanager
def record_namespace(namespace: str) -> Iterator[None]:
    """Salt the ids of records made inside this block (the runner uses ``run_id/iteration``), so
    equal content made by two runs, or two iterations, stays two records, while a resumed
    iteration makes exactly the ids it made before."""
    token = _NAMESPACE.set(namespace)
    try:
        yield
    finally:
        _NAMESPACE.reset(token)


class Record(BaseModel):
    """Base of every record. ``id`` is filled from content and parents when not given."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    id: str = ""
    parents: list[Link] = Field(default_factory=list)
    model_version: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    _identity_excludes: ClassVar[set[str]] = {"id", "meta"}

    def model_post_init(self, __context: Any) -> None:
        if not self.id:
            ns = _NAMESPACE.get()
            basis = {"ns": ns, "record": self.identity()} if ns else self.identity()
            self.id = self.kind[:4] + "-" + content_hash(basis)[:24]

    def identity(self) -> dict[str, Any]:
        """What the id is derived from: everything but the id and free-form metadata."""
        return self.model_dump(mode="json", exclude=self._identity_excludes)

    def payload(self) -> dict[str, Any]:
        """The record's own fields, as stored in the lineage store's JSON payload."""
        return self.model_dump(mode="json", exclude={"id", "kind", "parents", "model_version"})

    def parent_ids(self, role: str | None = None) -> list[str]:
        return [p.id for p in self.parents if role is None or p.role == role]


class Seed(Record):
    """Raw material a loop starts from (a seed function, an instruction from a dataset)."""

    kind: Literal["seed"] = "seed"
    text: str
    source: str = ""


class Concepts(Record):
    """Programming concepts extracted from a seed (SelfCodeAlign's snippet -> concepts step)."""

    kind: Literal["concepts"] = "concepts"
    text: str


class Task(Record):
    """A task or prompt to answer: plain text or chat messages, plus optional constraints."""

    kind: Literal["task"] = "task"
    prompt: str
    messages: list[dict[str, str]] | None = None
    category: str | None = None
    difficulty: str | None = None
    constraints: list[str] = Field(default_factory=list)


class Response(Record):
    """A model's answer to a task. ``sample_index`` tells apart identical samples of one task.

    ``prompt`` repeats the task's text so that judges and refiners need no lookup.
    """

    kind: Literal["response"] = "response"
    text: str
    prompt: str = ""
    sample_index: int = 0
    tests: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Critique(Record):
    """A judge's verdict on a response: the critique a refiner is shown (``text``), votes and the
    vote share; a judge that samples several critiques keeps each (``samples``) with its own
    verdict (``sample_verdicts``, None where none could be read)."""

    kind: Literal["critique"] = "critique"
    verdict: bool | None
    text: str = ""
    samples: list[str] = Field(default_factory=list)
    sample_verdicts: list[bool | None] = Field(default_factory=list)
    votes_yes: int = 0
    votes_no: int = 0
    vote_share: float = 0.0


class Refinement(Response):
    """A rewrite of a response, conditioned on a critique (a node of a refinement tree).

    A refinement is a response too, so critics judge it like any other.
    """

    kind: Literal["refinement"] = "refinement"  # type: ignore[assignment]
    depth: int = 1
    value: float | None = None


ExecutionStatus = Literal["passed", "failed", "error", "timeout", "memory", "killed"]


class Execution(Record):
    """The result of running a program and its tests in a sandbox."""

    kind: Literal["execution"] = "execution"
    status: ExecutionStatus
    failed_tests: list[str] = Field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    peak_memory_mb: float = 0.0

    _identity_excludes: ClassVar[set[str]] = {"id", "meta", "duration_s", "peak_memory_mb"}


class PreferencePair(Record):
    """A DPO pair: a prompt, the chosen and the rejected answer."""

    kind: Literal["preference_pair"] = "preference_pair"
    prompt: str
    chosen: str
    rejected: str


class TrainingExample(Record):
    """One example for a trainer: chat messages (SFT) or prompt/completion text."""

    kind: Literal["training_example"] = "training_example"
    messages: list[dict[str, str]] = Field(default_factory=list)
    prompt: str | None = None
    completion: str | None = None
    target_role: str | None = None


class Trajectory(Record):
    """An on-policy sample for RL trainers: a chat whose assistant turns the policy sampled, and rewards.

    ``rewards`` maps a name to a scalar for the whole trajectory or to one value per assistant turn
    (the trainer's ``reward_field`` picks one); ``turn_kl`` scales the trainer's KL coefficient per
    assistant turn (e.g. a strong KL on a first attempt).
    """

    kind: Literal["trajectory"] = "trajectory"
    messages: list[dict[str, str]]
    rewards: dict[str, float | list[float]] = Field(default_factory=dict)
    turn_kl: list[float] | None = None
    sample_index: int = 0
    token_ids: list[list[int]] | None = None
    """Per assistant turn, the sampled token ids (an episode keeps them, so RL need not re-tokenize)."""
    logprobs: list[list[float]] | None = None
    """Per assistant turn, the sampled tokens' log-probabilities under the policy that sampled them."""


class Turn(Record):
    """One turn of an episode (engine.episodes): the policy's ``action``, then the environment's
    ``observation``, ``reward`` and ``done``. Its parent is the turn before it (role ``previous``),
    or the task for turn 0 (role ``input``). ``token_ids`` and ``logprobs`` are the sampled tokens
    of the action and their log-probabilities, where the sampler reports them; ``error`` marks
    the turn at which the environment failed on this episode."""

    kind: Literal["turn"] = "turn"
    index: int
    action: str
    observation: str = ""
    reward: float | None = None
    done: bool = False
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    error: str | None = None


class EvalResult(Record):
    """A metric an evaluator measured for a model version."""

    kind: Literal["eval_result"] = "eval_result"
    evaluator: str
    metric: str
    value: float
    n: int = 0
    details: dict[str, Any] = Field(default_factory=dict)


class StageError(Record):
    """A stage failed on its parent record (kept in lineage under the ``skip`` error policy)."""

    kind: Literal["stage_error"] = "stage_error"
    error: str


BUILTIN_KINDS: dict[str, type[Record]] = {
    cls.model_fields["kind"].default: cls
    for cls in (Seed, Concepts, Task, Response, Critique, Refinement, Execution, PreferencePair,
                TrainingExample, Trajectory, Turn, EvalResult, StageError)
}
"""Record classes by kind; the plugin manager adds the kinds that plugins register."""


def load_record(kind: str, id: str, payload: dict[str, Any], parents: list[Link] | None = None,
                model_version: str | None = None,
                kinds: dict[str, type[Record]] | None = None) -> Record:
    """Rebuild a typed record from what the store keeps (a plain Record for unknown kinds)."""
    cls = (kinds or BUILTIN_KINDS).get(kind)
    if cls is None:
        return Record(kind=kind, id=id, parents=parents or [], model_version=model_version,
                      meta={"payload": payload})
    return cls.model_validate(dict(payload, id=id, parents=parents or [], model_version=model_version))
