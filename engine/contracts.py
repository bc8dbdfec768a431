"""Stage contracts: one typed protocol per stage kind, one verb each, batch-first.

What it is: the ``Stage`` base class (stable ``name``, a pydantic ``Options`` model, declared
``resources``), the ``StageContext`` a stage receives at run time, and a protocol per kind.
What it is not: any implementation. The sampler, sandbox and trainer protocols carry their own
request/result types and live beside them (engine/sampling, sandbox/, engine/training); they are
listed here in ``VERBS`` so every kind is checked the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict

from engine.records import Critique, EvalResult, Record, Refinement, Response

if TYPE_CHECKING:
    from engine.sampling.protocol import Sampler

StageKind = Literal["generator", "critic", "refiner", "filter", "sampler", "sandbox", "trainer",
                    "evaluator", "loop"]
KINDS: tuple[StageKind, ...] = ("generator", "critic", "refiner", "filter", "sampler", "sandbox",
                                "trainer", "evaluator", "loop")
VERBS: dict[StageKind, str] = {
    "generator": "generate", "critic": "critique", "refiner": "refine", "filter": "filter",
    "sampler": "sample", "sandbox": "execute", "trainer": "train", "evaluator": "evaluate",
    "loop": "run_iteration",
}
"""The one verb each kind of stage implements."""


class NoOptions(BaseModel):
    """Options of a stage that takes none."""

    model_config = ConfigDict(extra="forbid")


class Resources(BaseModel):
    """What a stage needs from the runtime; the runtime never asks which backend a stage is."""

    model_config = ConfigDict(frozen=True)
    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass
class StageContext:
    """What a stage may use while it runs. Built by the runtime; stages never build it.

    ``sampler`` is the run's sampler (possibly a remote handle), ``sandbox`` the run's sandbox,
    ``adapters`` maps role names to LoRA adapter paths of the current model version.
    """

    seed: int = 0
    iteration: int = 0
    model_name: str = ""
    run_dir: Path | None = None
    sampler: Sampler | None = None
    sandbox: Any = None
    model_version: str | None = None
    adapters: dict[str, str] = field(default_factory=dict)
    progress: Callable[[int], None] = lambda n: None
    extra: dict[str, Any] = field(default_factory=dict)

    def require_sampler(self, stage: str) -> Sampler:
        if self.sampler is None:
            raise RuntimeError(f"stage {stage!r} needs a sampler but the run has none")
        return self.sampler


class Stage:
    """Base of every stage. Subclasses set ``kind``, ``name`` and usually ``Options``."""

    kind: ClassVar[StageKind]
    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    resources: ClassVar[Resources] = Resources()

    def __init__(self, options: BaseModel | None = None, context: StageContext | None = None) -> None:
        self.options = options if options is not None else self.Options()
        self.context = context if context is not None else StageContext()


R = TypeVar("R", bound=Record)


@runtime_checkable
class Generator(Protocol):
    """Makes new records from input records (seeds -> tasks, tasks -> responses...)."""

    name: ClassVar[str]

    def generate(self, inputs: Sequence[Record]) -> list[Record]: ...


@runtime_checkable
class Critic(Protocol):
    """Judges responses: one critique per response, in input order."""

    name: ClassVar[str]

    def critique(self, responses: Sequence[Response]) -> list[Critique]: ...


@runtime_checkable
class Refiner(Protocol):
    """Rewrites responses given their critiques: one refinement per pair, in input order."""

    name: ClassVar[str]

    def refine(self, responses: Sequence[Response], critiques: Sequence[Critique]) -> list[Refinement]: ...


@runtime_checkable
class Filter(Protocol):
    """Keeps some records: returns the kept ones, in input order."""

    name: ClassVar[str]

    def filter(self, records: Sequence[Record]) -> list[Record]: ...


@runtime_checkable
class Evaluator(Protocol):
    """Measures a model version through a sampler; returns metrics as records."""

    name: ClassVar[str]

    def evaluate(self, sampler: Sampler, model_version: str | None) -> list[EvalResult]: ...


@runtime_checkable
class Loop(Protocol):
    """A loop recipe: ``roles`` maps each role to the stage kind it needs; ``defaults`` maps it to a
    stage name (or ``{"name": ..., "options": {...}}``) used when the config names none."""

    name: ClassVar[str]
    roles: ClassVar[dict[str, StageKind]]
    defaults: ClassVar[dict[str, Any]]

    def run_iteration(self, runner: Any, iteration: int) -> dict[str, Any]: ...


def check_stage_class(cls: Any, kind: StageKind) -> list[str]:
    """Problems that keep ``cls`` from being registered as a stage of ``kind`` (empty: fine)."""
    problems = []
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        problems.append("has no string 'name'")
    opts = getattr(cls, "Options", None)
    if not (isinstance(opts, type) and issubclass(opts, BaseModel)):
        problems.append("'Options' is not a pydantic model")
    if not callable(getattr(cls, VERBS[kind], None)):
        problems.append(f"has no method '{VERBS[kind]}' (the {kind} verb)")
    return problems
