"""Checks a resolved config before a run starts: what would otherwise fail minutes in.

What it is: :func:`preflight`, which ``validate`` and ``run`` both call before anything is created:
the data file exists and parses; every template file a stage names exists; the model resolves
(alias installed, local directory usable; no conversion, no download) for samplers that load one;
and each bound stage's own ``Stage.preflight`` (evaluator data installed, sampler and sandbox
backends importable, with the install hint). Every problem is a (YAML path, message) pair and they
all come back at once as one ConfigError. On a cluster (``runtime.address`` set) only the files
are checked here: the backends, the model and the evaluators' data are the cluster's.
What it is not: the schema (engine/config.py) or a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import ConfigError, UserError

if TYPE_CHECKING:
    from engine.config import ResolvedConfig, ResolvedStage
    from engine.manager import PluginManager


def preflight(resolved: ResolvedConfig, pm: PluginManager) -> None:
    """Raise ConfigError naming every problem a run of ``resolved`` would meet before its first stage."""
    from engine.data import load_tasks
    from engine.toolkit.prompting import find_template

    cfg = resolved.config
    problems: list[tuple[str, str]] = []
    remote = cfg.runtime.address is not None  # backends, model and evaluator data live on the cluster
    if cfg.data.source:
        try:
            load_tasks(cfg.data.source, cfg.data.limit)
        except (UserError, OSError, ValueError) as exc:
            problems.append(("data.source", str(exc).removeprefix("data.source: ")))
    for bound in _bound(resolved):
        template = getattr(bound.options, "template", None)
        if isinstance(template, str) and template:
            try:
                find_template(template)
            except UserError as exc:
                problems.append((f"{bound.path}.options.template", str(exc)))
        if not remote:
            problems += [(bound.path, msg) for msg in bound.info.cls.preflight(bound.options)]
    if not remote and getattr(resolved.sampler.info.cls, "loads_model", False):
        own = getattr(resolved.sampler.options, "model", None)
        if (problem := _model_problem(own or cfg.model.name, pm)) is not None:
            problems.append(("sampler.options.model" if own else "model.name", problem))
    if problems:
        raise ConfigError(problems, resolved.source)


def _bound(resolved: ResolvedConfig) -> list[ResolvedStage]:
    stages = [resolved.loop, resolved.sampler, *resolved.stages.values(), *resolved.evaluators,
              *resolved.trainers.values()]
    return stages + [s for s in (resolved.sandbox, resolved.trainer) if s is not None]


def _model_problem(name: str, pm: PluginManager) -> str | None:
    """The built-in resolver's verdict on ``name``; none when a plugin's ``resolve_model`` hook may
    answer for it (only running that hook would tell, and it may convert or download)."""
    from engine.sampling.resolver import model_problem
    from engine.sampling.resolver import resolve_model as builtin

    hooks = [h for h in pm.hook.resolve_model.get_hookimpls() if h.function is not builtin]
    return None if hooks else model_problem(name)
