"""Loop configs: YAML validated by pydantic, dotted overrides, stage options resolved.

What it is: the config schema, loading (with YAML line numbers in messages), overrides such as
``iterations=3 sampler.options.temperature=0.7``, and ``resolve_config`` which checks every stage
name against the plugin registry (suggesting close names) and validates each stage's options
against its ``Options`` model. Every problem names its YAML path (``stages.critic.options.votes``).
What it is not: the runner; validating a config creates no run directory and no store rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
    stages: dict[str, StageRef] = Field(default_factory=dict)
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

    @field_validator("stages", "trainers", mode="before")
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

    def trainer_for(self, role: str) -> ResolvedStage | None:
        """The trainer of an adapter role: ``trainers[role]``, else ``trainer``."""
        return self.trainers.get(role, self.trainer)


def default_ref(default: str | dict[str, Any], given: StageRef | None) -> StageRef:
    """The loop's default stage for a role, with the user's options merged in (deeply) when the user
    keeps the default stage; the user's stage unchanged when they pick another one."""
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


# -- loading --------------------------------------------------------------------------------

def load_yaml(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    """Read a YAML mapping (and its node tree, for line numbers) or raise ConfigError."""
    src = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([("", f"cannot read file: {exc.strerror or exc}")], src) from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError([("", f"invalid YAML: {where}{getattr(exc, 'problem', exc)}")], src) from None
    if not isinstance(data, dict):
        raise ConfigError([("", "the top level must be a mapping of config keys")], src)
    return data, node


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a copy of ``data``."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError([(item, "an override must look like key.path=value")], "override")
        value = yaml.safe_load(raw) if raw else ""
        parts = key.split(".")
        cur: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(cur, list):
                if not part.isdigit() or int(part) >= len(cur):
                    raise ConfigError([(key, f"{part!r} is not an index of the list")], "override")
                idx = int(part)
                if last:
                    cur[idx] = value
                else:
                    cur = cur[idx]
            elif isinstance(cur, dict):
                if last:
                    cur[part] = value
                else:
                    if not isinstance(cur.get(part), dict | list):
                        cur[part] = {}
                    cur = cur[part]
            else:
                raise ConfigError([(key, f"{'.'.join(parts[:i])} is not a mapping")], "override")
    return out


def line_of(node: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``path`` (the deepest existing one)."""
    line = None
    for part in path:
        if node is None:
            break
        line = node.start_mark.line + 1
        nxt = None
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
        node = nxt
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _problems(exc: ValidationError, prefix: tuple[Any, ...], node: yaml.Node | None) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        path = ".".join(str(p) for p in loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        line = line_of(node, loc)
        out.append((path, f"{msg} (line {line})" if line else msg))
    return out


def parse_config(data: dict[str, Any], node: yaml.Node | None = None, source: str = "config") -> LoopConfig:
    try:
        return LoopConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, (), node), source) from None


def resolve_config(cfg: LoopConfig, pm: PluginManager, node: yaml.Node | None = None,
                   source: str = "config") -> ResolvedConfig:
    """Bind every stage in the config to its registered class and validate its options."""
    problems: list[tuple[str, str]] = []

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
            opts = info.cls.Options.model_validate(ref.options)
        except ValidationError as exc:
            problems.extend(_problems(exc, path + ("options",), node))
            return None
        return ResolvedStage(".".join(map(str, path)), info, opts, ref.on_error)

    loop = bind("loop", cfg.loop, ("loop",))
    sampler = bind("sampler", cfg.sampler, ("sampler",))
    stages: dict[str, ResolvedStage] = {}
    if loop is not None:
        roles: dict[str, StageKind] = loop.info.cls.roles
        for role in cfg.stages:
            if role not in roles:
                from engine.manager import unknown_name_message

                problems.append((f"stages.{role}", unknown_name_message(
                    f"role for loop {cfg.loop.name!r}", role, list(roles))))
        for role, kind in roles.items():
            ref = default_ref(loop.info.cls.defaults[role], cfg.stages.get(role))
            bound = bind(kind, ref, ("stages", role))
            if bound is not None:
                stages[role] = bound
    sandbox = bind("sandbox", cfg.sandbox, ("sandbox",)) if cfg.sandbox else None
    trainer = bind("trainer", cfg.trainer, ("trainer",)) if cfg.trainer else None
    trainers = {role: bind("trainer", ref, ("trainers", role)) for role, ref in cfg.trainers.items()}
    evaluators = [bind("evaluator", ref, ("evaluators", i)) for i, ref in enumerate(cfg.evaluators)]
    if problems:
        raise ConfigError(problems, source)
    assert loop is not None and sampler is not None
    return ResolvedConfig(cfg, loop, sampler, stages, sandbox, trainer,
                          [e for e in evaluators if e is not None], source,
                          {r: t for r, t in trainers.items() if t is not None})


def load_config(path: Path, overrides: list[str] | None = None,
                pm: PluginManager | None = None) -> ResolvedConfig:
    """Read, override, validate and resolve a config file; ConfigError on any problem."""
    from engine.manager import create_plugin_manager

    data, node = load_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides)
    cfg = parse_config(data, node, str(path))
    return resolve_config(cfg, pm or create_plugin_manager(), node, str(path))
