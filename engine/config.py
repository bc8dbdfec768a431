"""Loop configs: YAML validated by pydantic, dotted overrides, stage options resolved.

What it is: the config schema, ``parse_config``, and ``resolve_config``, which checks every stage
name against the plugin registry (suggesting close names), validates each stage's options against
its ``Options`` model (unknown keys refused), and checks that each role's binding fits the record
kinds the loop hands in and expects back. Every problem names its YAML path
(``stages.critic.options.votes``). Reading files and overrides is engine/configfile.py.
What it is not: the runner; validating a config creates no run directory and no store rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.configfile import _problems, apply_overrides, load_yaml, override_at
from engine.errors import ConfigError
from engine.records import content_hash

if TYPE_CHECKING:
    from engine.contracts import StageKind
    from engine.manager import PluginManager, StageInfo


class StageRef(BaseModel):
    """A stage by registered name, with its options (checked against the stage's Options)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, description="null: the loop's default for the role")
    options: dict[str, Any] = Field(default_factory=dict)
    on_error: Literal["fail", "skip"] = Field(
        "fail", description="fail: a raising batch stops the run; skip: failing records recorded, dropped")
    replicas: int | Literal["auto"] = Field(
        1, description="sampler and sandbox only: actors serving it (auto: as many as the cluster fits "
                       "for a sampler, one per node for a sandbox)")

    @field_validator("replicas", mode="before")
    @classmethod
    def _replicas(cls, v: Any) -> Any:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError(f"expected a whole number >= 1 or 'auto', got {v!r}")


def _as_ref(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "smollm2-135m-instruct"
    adapter: str | None = None


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str | None = Field(None, description="Ray address; null starts a local Ray on 127.0.0.1")
    num_cpus: int | None = Field(None, ge=1)
    ray: bool = Field(True, description="false runs stages in-process (tests, debugging)")
    chunk_size: int = Field(1024, ge=1, le=1_000_000,
                            description="records per chunk of a streamed stage (runner.stream)")


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(None, description="SQLAlchemy URL; null: SQLite file in the run directory")


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str | None = None
    limit: int | None = Field(None, ge=1)


class LoopConfig(BaseModel):
    """The whole config file."""

    model_config = ConfigDict(extra="forbid")
    loop: StageRef
    name: str | None = None
    seed: int = 0
    iterations: int = Field(1, ge=1, le=1000)
    model: ModelConfig = ModelConfig()
    sampler: StageRef = StageRef(name="transformers")
    samplers: dict[str, StageRef] = Field(
        default_factory=dict, description="named samplers besides the policy's (`sampler`), e.g. "
        "teacher: {name: openai, options: {...}}; an LLM stage picks one with its `sampler` option")
    stages: dict[str, StageRef | None] = Field(
        default_factory=dict, description="role -> stage; null leaves an optional role unbound")
    data: DataConfig = DataConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    store: StoreConfig = StoreConfig()
    sandbox: StageRef | None = None
    trainer: StageRef | None = None
    trainers: dict[str, StageRef] = Field(
        default_factory=dict, description="per-role trainers (e.g. policy: dpo, refiner: sft); "
                                          "roles not named here use `trainer`")
    evaluators: list[StageRef] = Field(default_factory=list)
    output_dir: Path = Path("runs")

    _refs = field_validator("loop", "sampler", "sandbox", "trainer", mode="before")(
        classmethod(lambda cls, v: _as_ref(v)))

    @field_validator("stages", "trainers", "samplers", mode="before")
    @classmethod
    def _stage_refs(cls, v: Any) -> Any:
        return {k: _as_ref(x) for k, x in v.items()} if isinstance(v, dict) else v

    @field_validator("evaluators", mode="before")
    @classmethod
    def _eval_refs(cls, v: Any) -> Any:
        return [_as_ref(x) for x in v] if isinstance(v, list) else v

    def digest(self) -> str:
        return content_hash(self.model_dump(mode="json"))


@dataclass
class ResolvedStage:
    """A config entry bound to its registered stage and validated options."""

    path: str
    info: StageInfo
    options: BaseModel
    on_error: str = "fail"


@dataclass
class ResolvedConfig:
    config: LoopConfig
    loop: ResolvedStage
    sampler: ResolvedStage
    stages: dict[str, ResolvedStage]
    sandbox: ResolvedStage | None
    trainer: ResolvedStage | None
    evaluators: list[ResolvedStage]
    source: str = "config"
    trainers: dict[str, ResolvedStage] = field(default_factory=dict)
    samplers: dict[str, ResolvedStage] = field(default_factory=dict)  # named, besides the policy's

    def trainer_for(self, role: str) -> ResolvedStage | None:
        """The trainer of an adapter role: ``trainers[role]``, else ``trainer``."""
        return self.trainers.get(role, self.trainer)


def default_ref(default: str | dict[str, Any] | None, given: StageRef | None) -> StageRef:
    """The loop's default stage for a role, with the user's options merged in (deeply) when the user
    keeps the default stage; the user's stage unchanged when they pick another one."""
    if default is None:
        return given or StageRef()
    base = StageRef.model_validate(_as_ref(default))
    if given is None:
        return base
    if given.name not in (None, base.name):
        return given
    return StageRef(name=base.name, options=_merged(base.options, given.options), on_error=given.on_error)


def _merged(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` over ``base``, nested mappings merged key by key (``judge.votes`` keeps ``judge.*``)."""
    out = dict(base)
    for key, value in given.items():
        old = out.get(key)
        out[key] = _merged(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return out


def parse_config(data: dict[str, Any], node: yaml.Node | None = None, source: str = "config") -> LoopConfig:
    try:
        return LoopConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, (), node), source) from None


def resolve_config(cfg: LoopConfig, pm: PluginManager, node: yaml.Node | None = None,
                   source: str = "config") -> ResolvedConfig:
    """Bind every stage in the config to its registered class and validate its options (unknown
    keys refused for every stage); refuse a role binding whose record kinds do not fit the role,
    and a trainer that cannot take what the loop trains its adapter role on."""
    from engine.contracts import POLICY_SAMPLER, Role, role_mismatch, validate_options
    from engine.manager import unknown_name_message

    problems: list[tuple[str, str]] = []
    classes = pm.record_kinds()

    def bind(kind: StageKind, ref: StageRef, path: tuple[Any, ...]) -> ResolvedStage | None:
        if ref.name is None:
            problems.append((".".join(map(str, path + ("name",))), "Field required"))
            return None
        try:
            info = pm.stage(kind, ref.name)
        except KeyError as exc:
            problems.append((".".join(map(str, path + ("name",))), str(exc.args[0])))
            return None
        try:
            opts = validate_options(info.cls, ref.options)
        except ValidationError as exc:
            problems.extend(_problems(exc, path + ("options",), node))
            return None
        return ResolvedStage(".".join(map(str, path)), info, opts, ref.on_error)

    def check_kinds(path: str, what: str, mismatch: str | None) -> None:
        if mismatch:
            problems.append((path, f"{what}: {mismatch}"))

    for path, ref in _refs_without_replicas(cfg):
        if ref.replicas != 1:
            problems.append((f"{path}.replicas", "replicas applies only to the sampler and the sandbox"))
    loop = bind("loop", cfg.loop, ("loop",))
    sampler = bind("sampler", cfg.sampler, ("sampler",))
    named = {name: bind("sampler", ref, ("samplers", name)) for name, ref in cfg.samplers.items()}
    for name in cfg.samplers:
        if name == POLICY_SAMPLER or not name.isidentifier():
            problems.append((f"samplers.{name}", f"a sampler name must be a word other than "
                                                 f"{POLICY_SAMPLER!r} (the policy's is `sampler`)"))
    stages: dict[str, ResolvedStage] = {}
    trainer = bind("trainer", cfg.trainer, ("trainer",)) if cfg.trainer else None
    trainers = {role: bind("trainer", ref, ("trainers", role)) for role, ref in cfg.trainers.items()}
    if loop is not None:
        roles: dict[str, Role] = loop.info.cls.roles
        for role in cfg.stages:
            if role not in roles:
                problems.append((f"stages.{role}", unknown_name_message(
                    f"role for loop {cfg.loop.name!r}", role, list(roles))))
        for role, spec in roles.items():
            given = cfg.stages.get(role, MISSING)
            if given is None or (given is MISSING and spec.default is None):
                if not spec.optional:
                    problems.append((f"stages.{role}", f"role {role!r} of loop {cfg.loop.name!r} is "
                                     f"required ({spec.kind}); name a stage for it"))
                continue  # an optional role left unbound: the runner passes records through
            ref = default_ref(spec.default, given if isinstance(given, StageRef) else None)
            bound = bind(spec.kind, ref, ("stages", role))
            if bound is not None:
                stages[role] = bound
                check_kinds(f"stages.{role}", f"role {role!r} of loop {cfg.loop.name!r}",
                            role_mismatch(spec, bound.info.cls, classes))
        trains: dict[str, tuple[str, ...]] = getattr(loop.info.cls, "trains", {})
        for role, kinds in trains.items():
            bound_trainer = trainers.get(role) or trainer
            if bound_trainer is not None:
                check_kinds(bound_trainer.path, f"adapter role {role!r} of loop {cfg.loop.name!r}",
                            role_mismatch(Role(kind="trainer", takes=kinds, gives=()), bound_trainer.info.cls,
                                          classes))
    sandbox = bind("sandbox", cfg.sandbox, ("sandbox",)) if cfg.sandbox else None
    evaluators = [bind("evaluator", ref, ("evaluators", i)) for i, ref in enumerate(cfg.evaluators)]
    names = {POLICY_SAMPLER, *cfg.samplers}
    for bound in [*stages.values(), *(e for e in evaluators if e is not None)]:
        asked = getattr(bound.options, "sampler", None)
        if isinstance(asked, str) and asked not in names:
            problems.append((f"{bound.path}.options.sampler",
                             unknown_name_message("sampler", asked, sorted(names))))
    if problems:
        raise ConfigError(problems, source)
    assert loop is not None and sampler is not None
    return ResolvedConfig(cfg, loop, sampler, stages, sandbox, trainer,
                          [e for e in evaluators if e is not None], source,
                          {r: t for r, t in trainers.items() if t is not None},
                          {n: s for n, s in named.items() if s is not None})


MISSING: Any = object()


def _refs_without_replicas(cfg: LoopConfig) -> list[tuple[str, StageRef]]:
    """Every stage reference but the samplers and the sandbox, with its YAML path."""
    refs = [("loop", cfg.loop)] + [(f"stages.{r}", ref) for r, ref in cfg.stages.items() if ref]
    refs += [("trainer", cfg.trainer)] if cfg.trainer else []
    refs += [(f"trainers.{r}", ref) for r, ref in cfg.trainers.items()]
    return refs + [(f"evaluators.{i}", ref) for i, ref in enumerate(cfg.evaluators)]


def load_config(path: Path, overrides: list[str] | None = None,
                pm: PluginManager | None = None) -> ResolvedConfig:
    """Read, override, validate and resolve a config file; ConfigError on any problem."""
    from engine.manager import create_plugin_manager

    data, node = load_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides, node)
    try:
        cfg = parse_config(data, node, str(path))
        return resolve_config(cfg, pm or create_plugin_manager(), node, str(path))
    except ConfigError as exc:  # a problem in an overridden value names the override, not a line
        cited = [(override_at(node, tuple(p.split("."))) if p else None, p, m) for p, m in exc.problems]
        items = {item for item, _, _ in cited}
        if items == {None}:
            raise
        if len(items) == 1:
            raise ConfigError([(p, m) for _, p, m in cited], f"override {items.pop()!r}") from None
        raise ConfigError([(p, m if item is None else f"{m} (override {item!r})") for item, p, m in cited],
                          exc.source) from None
