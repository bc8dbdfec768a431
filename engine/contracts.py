"""Stage contracts: one typed protocol per stage kind, one verb each, batch-first.

What it is: the ``Stage`` base class (stable ``name``, a pydantic ``Options`` model, declared
``resources``), ``resources_of`` (what one instance needs with given options), the
``StageContext`` a stage receives at run time, and a protocol per kind.
What it is not: any implementation. The sampler, sandbox and trainer protocols carry their own
request/result types and live beside them (engine/sampling, sandbox/, engine/training); they are
listed here in ``VERBS`` so every kind is checked the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    Protocol,
    TypeVar,
    cast,
    get_args,
    runtime_checkable,
)

from pydantic import BaseModel, ConfigDict

from engine.options import validate_options
from engine.records import Critique, EvalResult, Record, Refinement, Response
from engine.roles import ANY, Role, StageKind, kinds_fit, role_mismatch

if TYPE_CHECKING:
    from engine.manager import PluginManager
    from engine.sampling.protocol import Sampler

KINDS: tuple[StageKind, ...] = ("generator", "critic", "refiner", "filter", "sampler", "sandbox",
                                "trainer", "evaluator", "environment", "loop")
VERBS: dict[StageKind, str] = {
    "generator": "generate", "critic": "critique", "refiner": "refine", "filter": "filter",
    "sampler": "sample", "sandbox": "execute", "trainer": "train", "evaluator": "evaluate",
    "environment": "rollout", "loop": "run_iteration",
}
"""The one verb each kind of stage implements (an environment implements ``reset`` and ``step``;
its ``rollout``, the episode driver, comes from engine.episodes.Environment)."""

Messages = list[dict[str, str]]
"""A chat: OpenAI-style ``{"role": ..., "content": ...}`` dicts."""


class NoOptions(BaseModel):
    """Options of a stage that takes none."""

    model_config = ConfigDict(extra="forbid")


class Resources(BaseModel):
    """What a stage needs from the runtime; the runtime never asks which backend a stage is."""

    model_config = ConfigDict(frozen=True)
    num_cpus: float = 1.0
    num_gpus: float = 0.0


POLICY_SAMPLER = "policy"
"""The name of a run's default sampler: the one that serves the model being trained."""


@dataclass
class StageContext:
    """What a stage may use while it runs. Built by the runtime (``build_stage``); stages never build it.

    ``sampler`` is the run's policy sampler (possibly a remote handle), ``samplers`` every named
    sampler of the run by name (``policy`` among them; a stage picks one with its ``sampler``
    option), ``sandbox`` the run's sandbox,
    ``adapters`` maps role names to LoRA adapter paths of the current model version, ``plugins``
    the plugin manager (stages build helper stages with :meth:`make_stage` and resolve models with
    :meth:`resolve_model`; None in a process that has none, where both build a fresh manager),
    ``emitted`` the side outputs of the current call (:meth:`Stage.emit`).
    """

    seed: int = 0
    iteration: int = 0
    model_name: str = ""
    run_dir: Path | None = None
    sampler: Sampler | None = None
    samplers: dict[str, Sampler] = field(default_factory=dict)
    sandbox: Any = None
    model_version: str | None = None
    adapters: dict[str, str] = field(default_factory=dict)
    progress: Callable[[int], None] = lambda n: None
    plugins: PluginManager | None = None
    emitted: list[Record] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def require_sampler(self, stage: str, name: str | None = None) -> Sampler:
        """The sampler named ``name`` (None or ``policy``: the run's policy sampler)."""
        if name is not None and name != POLICY_SAMPLER:
            if name not in self.samplers:
                raise RuntimeError(f"stage {stage!r} asks for sampler {name!r}, but the run's samplers are "
                                   f"{', '.join(sorted({POLICY_SAMPLER, *self.samplers}))}")
            return self.samplers[name]
        if self.sampler is None:
            raise RuntimeError(f"stage {stage!r} needs a sampler but the run has none")
        return self.sampler

    def plugin_manager(self) -> PluginManager:
        """The run's plugin manager (a fresh one, entry points included, where none was given)."""
        if self.plugins is None:
            from engine.manager import create_plugin_manager

            self.plugins = create_plugin_manager()
        return self.plugins

    def resolve_model(self, name: str, cache_dir: Path | None = None) -> Path:
        """A local HF directory for model ``name``: the plugins' ``resolve_model`` hooks decide
        (the built-in resolver answers last)."""
        from engine.sampling.resolver import resolve_model_path

        return resolve_model_path(name, cache_dir, self.plugin_manager())

    def make_stage(self, kind: StageKind, name: str, options: BaseModel | dict[str, Any] | None = None,
                   ) -> Stage[Any]:
        """Build the registered stage ``name`` of ``kind`` with this context (a helper stage)."""
        info = self.plugin_manager().stage(kind, name)
        return build_stage(info.cls, options, replace(self, emitted=[]))

    def __getstate__(self) -> dict[str, Any]:  # a context shipped to a Ray actor leaves the manager
        state = dict(self.__dict__)
        state.update(plugins=None, progress=_no_progress, emitted=[])
        return state


def _no_progress(n: int) -> None:
    return None


OptionsT = TypeVar("OptionsT", bound=BaseModel)


class Stage(Generic[OptionsT]):
    """Base of every stage. Subclass ``Stage[MyOptions]`` (``self.options`` is then typed as
    ``MyOptions``) and set ``kind``, ``name``, and the record kinds it ``accepts`` and
    ``produces`` (default: any)."""

    kind: ClassVar[StageKind]
    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    resources: ClassVar[Resources] = Resources()
    accepts: ClassVar[tuple[str, ...]] = (ANY,)
    produces: ClassVar[tuple[str, ...]] = (ANY,)
    options: OptionsT
    context: StageContext

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Options" in cls.__dict__:
            return
        for base in getattr(cls, "__orig_bases__", ()):  # Stage[MyOptions] sets Options = MyOptions
            args = get_args(base)
            model = args[0] if args else None
            if isinstance(model, type) and issubclass(model, BaseModel) and model is not BaseModel:
                cls.Options = model
                return

    def __init__(self, options: OptionsT | None = None, context: StageContext | None = None) -> None:
        self.options = options if options is not None else cast(OptionsT, self.Options())
        self.context = context if context is not None else StageContext()

    @classmethod
    def preflight(cls, options: OptionsT) -> list[str]:
        """What ``validate`` (and ``run``, before it creates anything) can check without running:
        installed data, importable backends, binaries, files. One line per problem, each saying
        how to fix it; [] when all is well. Cheap: no model is loaded, nothing is written."""
        return []

    def emit(self, records: Sequence[Record]) -> None:
        """Side outputs: records the stage made besides its verb's result (a tree search's node
        critiques). The runner writes them to lineage under this stage's execution."""
        self.context.emitted.extend(records)


def build_stage(cls: type[Stage[Any]], options: BaseModel | dict[str, Any] | None,
                context: StageContext) -> Stage[Any]:
    """The one way a stage instance is made (stages, samplers, sandboxes, trainers, evaluators,
    loops): options validated (unknown keys refused), the context given."""
    return cls(validate_options(cls, options), context)


def resources_of(stage_cls: type[Any], options: BaseModel | None) -> Resources:
    """What one instance of ``stage_cls`` (a service replica, a training worker) needs with
    ``options``: the stage's ``resources_for(options)`` classmethod where its needs depend on its
    options (a sampler sharded over GPUs, a trainer's ``num_gpus``), else its declared ``resources``."""
    resources_for = getattr(stage_cls, "resources_for", None)
    res = resources_for(options) if callable(resources_for) else stage_cls.resources
    return cast(Resources, res)


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
class EnvironmentProtocol(Protocol):
    """Answers a policy's actions in multi-turn episodes (engine.episodes): ``reset(tasks)`` gives
    each episode's first observation, ``step(episodes, actions)`` one observation (text, reward,
    done) per live episode; ``rollout(tasks)`` drives them and returns one trajectory per task."""

    name: ClassVar[str]

    def reset(self, tasks: Sequence[Any]) -> list[Any]: ...

    def step(self, episodes: Sequence[Any], actions: Sequence[str]) -> list[Any]: ...

    def rollout(self, tasks: Sequence[Record]) -> list[Record]: ...


@runtime_checkable
class Loop(Protocol):
    """A loop recipe: ``roles`` declares each role (:class:`Role`: stage kind, record kinds in and
    out, default stage, optional); ``trains`` maps each adapter role the loop trains to the record
    kinds it hands that role's trainer. ``run_iteration`` composes the roles through the runner
    (engine/runtime/runner.py); what it makes is recorded in lineage, so it returns nothing."""

    name: ClassVar[str]
    roles: ClassVar[dict[str, Role]]
    trains: ClassVar[dict[str, tuple[str, ...]]]

    def run_iteration(self, runner: Any, iteration: int) -> None: ...


@runtime_checkable
class Prompted(Protocol):
    """A stage that can show the chat it sends the model for given inputs (``messages``: the same
    arguments as its verb, one chat per output it makes) and the text the model writes for one of
    its outputs (``completion``: a refinement between its markers, a critique's text), so a loop can
    build training data in that stage's own format without importing it:
    ``runner.stage("judge").messages(responses)``."""

    def messages(self, *inputs: Sequence[Any]) -> list[Messages]: ...

    def completion(self, output: Any) -> str: ...


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
    for attr in ("accepts", "produces"):
        value = getattr(cls, attr, (ANY,))
        if not (isinstance(value, tuple) and value and all(isinstance(k, str) for k in value)):
            problems.append(f"'{attr}' is not a non-empty tuple of record kinds")
    if kind == "environment":
        problems += [f"has no method '{verb}' (an environment's verb)" for verb in ("reset", "step")
                     if not callable(getattr(cls, verb, None))]
    if kind == "loop":
        roles = getattr(cls, "roles", None)
        if not (isinstance(roles, dict) and all(isinstance(r, Role) for r in roles.values())):
            problems.append("'roles' is not a dict of engine.contracts.Role")
        trains = getattr(cls, "trains", {})
        if not (isinstance(trains, dict) and all(isinstance(v, tuple) for v in trains.values())):
            problems.append("'trains' is not a dict of adapter role -> tuple of record kinds")
    return problems


__all__ = ["ANY", "KINDS", "VERBS", "Critic", "EnvironmentProtocol", "Evaluator", "Filter", "Generator",
           "Loop", "Messages",
           "NoOptions", "Prompted", "Refiner", "Resources", "Role", "Stage", "StageContext", "StageKind",
           "build_stage", "check_stage_class", "kinds_fit", "resources_of", "role_mismatch",
           "validate_options"]
