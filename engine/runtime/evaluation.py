"""One evaluator on one model version, outside a loop: what ``autodidact eval`` runs.

What it is: :func:`evaluate_run` builds the run's services from its own config (the sampler, the
named samplers and the sandbox, in this process: the code path of ``runtime.ray: false``), picks a
model version the run recorded (``--iteration`` or ``--model-version``; its adapter from lineage),
runs the evaluator through the same call as the evaluations after each iteration
(engine.runtime.run.evaluate_with) and stores the results in the run's lineage store beside the
loop's own: at the version's iteration, under the evaluator name ``<name>@<label>`` (so they never
replace the loop's rows), with ``details["source"] = "autodidact eval"``. :func:`evaluate_model`
does the same for a base model without a run, in a temporary directory: nothing is kept.
What it is not: a loop (nothing is trained or generated), nor the CLI's display.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import DataConfig, LoopConfig, ResolvedConfig, StageRef, parse_config, resolve_config
from engine.errors import ConfigError, UserError
from engine.manager import PluginManager, create_plugin_manager
from engine.records import EvalResult
from engine.runtime.runner import Runner, StageProgress

SOURCE = "autodidact eval"
EVALS_DIR = "evals"
"""Under the run directory: ``evals/<label>`` is the evaluator's run directory (files it writes,
such as ifeval's answers), so the loop's own files are never overwritten."""


@dataclass
class Evaluated:
    """What ``autodidact eval`` measured: results, and where they belong."""

    results: list[EvalResult]
    evaluator: str  # the name the results are stored under (``<name>@<label>`` for a run)
    iteration: int
    model_version: str | None
    run_id: str | None = None


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs as evaluator options: each value read as YAML (``50`` an int, ``[1, 5]``
    a list, ``held-out`` a string); a dotted key sets a nested option (``refine.rounds=2``)."""
    import yaml

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--option {pair!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        *parents, last = key.strip().split(".")
        node = options
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"--option {pair!r}: {part!r} is already set to a value")
            node = child
        node[last] = value
    return options


def _resolve(cfg: LoopConfig, evaluator: str, options: dict[str, Any], pm: PluginManager,
             source: str) -> ResolvedConfig:
    """``cfg`` with only this evaluator, no loop data, Ray off; checked as ``run`` checks a config
    (engine.preflight). A problem with the evaluator or its options names ``--evaluator`` or
    ``--option KEY``; all problems in one line."""
    from engine.preflight import preflight

    cfg = cfg.model_copy(update={
        "evaluators": [StageRef(name=evaluator, options=options)], "data": DataConfig(),
        "runtime": cfg.runtime.model_copy(update={"ray": False})})
    try:
        resolved = resolve_config(cfg, pm, source=source)
        preflight(resolved, pm)
    except ConfigError as exc:
        named = []
        for path, msg in exc.problems:
            if path == "evaluators.0.name":
                path = "--evaluator"
            elif path.startswith("evaluators.0.options."):
                path = "--option " + path.removeprefix("evaluators.0.options.")
            elif path in ("evaluators.0", "evaluators.0.options"):
                path = f"--evaluator {evaluator}"
            named.append(f"{path}: {msg}" if path else msg)
        raise UserError(f"{source}: " + "; ".join(" ".join(m.split()) for m in named)) from None
    return resolved


def _versions(store: Any, run_id: str) -> list[dict[str, Any]]:
    """The model versions a run trained: id, adapter_path, iteration and adapter role, in order."""
    from sqlalchemy import select

    from engine.lineage import schema as t

    mv, se = t.model_versions.c, t.stage_executions.c
    query = (select(mv.id, mv.adapter_path, se.iteration, se.role, mv.created_at)
             .join(t.stage_executions, se.id == mv.execution_id)
             .where(mv.run_id == run_id).order_by(se.iteration, mv.created_at))
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["role"] = row["role"].removeprefix("train:").split(":")[0]
    return rows


def pick_version(store: Any, state: dict[str, Any], run_dir: Path, iteration: int | None,
                 model_version: str | None) -> tuple[int, str | None, dict[str, str]]:
    """(iteration, model version, adapters) of the version to evaluate: ``model_version`` (any
    version the run trained, under its own adapter role), else the policy's version at the end of
    ``iteration`` (default: the last finished one; 0 and an iteration that trained nothing before
    it: the base model)."""
    run_id = state["run_id"]
    versions = _versions(store, run_id)
    if model_version is not None:
        if iteration is not None:
            raise UserError("give --iteration or --model-version, not both")
        row = next((v for v in versions if v["id"] == model_version), None)
        if row is None:
            known = ", ".join(v["id"] for v in versions) or "none: it trained nothing"
            raise UserError(f"{run_dir}: run {run_id} recorded no model version {model_version!r} "
                            f"(it has: {known})")
        return row["iteration"], row["id"], {row["role"]: row["adapter_path"]} if row["adapter_path"] else {}
    done = int(state.get("iterations_done", 0))
    iteration = done if iteration is None else iteration
    if not 0 <= iteration <= done:
        raise UserError(f"{run_dir}: run {run_id} has no finished iteration {iteration} "
                        f"(0 is the base model; finished: {done})")
    policy = [v for v in versions if v["role"] == "policy" and v["iteration"] <= iteration]
    if not policy:
        return iteration, None, {}
    last = policy[-1]
    return iteration, last["id"], {"policy": last["adapter_path"]} if last["adapter_path"] else {}


def evaluate_run(run_dir: Path, evaluator: str, options: dict[str, Any], *, iteration: int | None = None,
                 model_version: str | None = None, label: str = "eval", pm: PluginManager | None = None,
                 progress: StageProgress | None = None) -> Evaluated:
    """Evaluate a model version of the run in ``run_dir`` and store the results in its lineage (see
    the module doc). Bad input (no such run, evaluator, option or version) is a UserError."""
    from engine.configfile import load_yaml
    from engine.lineage.store import LineageStore
    from engine.runtime.run import CONFIG_FILE, load_state

    if not label or not label.replace("-", "").replace("_", "").isalnum():
        raise UserError(f"--label {label!r}: use letters, digits, '-' or '_'")
    state = load_state(run_dir)
    pm = pm or create_plugin_manager()
    source = str(Path(run_dir) / CONFIG_FILE)
    try:
        data, node = load_yaml(Path(source))
    except OSError as exc:
        raise UserError(f"{source}: cannot read the run's config ({exc.strerror or exc})") from None
    resolved = _resolve(parse_config(data, node, source), evaluator, options, pm, source)
    store = LineageStore.open(state["store_url"], create=False)
    try:
        if state["run_id"] not in {r["id"] for r in store.runs()}:
            raise UserError(f"{run_dir}: its store holds no run {state['run_id']!r}")
        it, version, adapters = pick_version(store, state, Path(run_dir), iteration, model_version)
        results = _run_evaluator(resolved, pm, Path(run_dir), store, state["run_id"], it, version, adapters,
                                 Path(run_dir) / EVALS_DIR / label, progress)
        name = f"{evaluator}@{label}"
        opts = resolved.evaluators[0].options.model_dump(mode="json")
        stored = [EvalResult(evaluator=name, metric=r.metric, value=r.value, n=r.n,
                             model_version=r.model_version,
                             details={**r.details, "source": SOURCE, "label": label, "options": opts})
                  for r in results]
        store.add_metrics(state["run_id"], it, version, stored)
    finally:
        store.close()
    return Evaluated(stored, name, it, version, state["run_id"])


def evaluate_model(evaluator: str, options: dict[str, Any], *, model: str | None = None,
                   config: Path | None = None, pm: PluginManager | None = None,
                   progress: StageProgress | None = None) -> Evaluated:
    """Evaluate a base model without a run: the sampler and sandbox of ``config`` (default: the
    embedded default's, a config with nothing but ``model.name``), ``model`` overriding its model.
    Everything runs in a temporary directory that is removed afterwards: nothing is kept."""
    from engine.configfile import load_yaml
    from engine.lineage.store import LineageStore

    pm = pm or create_plugin_manager()
    if config is not None:
        data, node = load_yaml(config)
        source = str(config)
    else:
        data, node, source = {"loop": "self"}, None, "autodidact eval"
    cfg = parse_config(data, node, source)
    if model is not None:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"name": model})})
    resolved = _resolve(cfg, evaluator, options, pm, source)
    with tempfile.TemporaryDirectory(prefix="autodidact-eval-") as tmp:
        store = LineageStore.open(f"sqlite:///{Path(tmp) / 'lineage.sqlite'}", create=True)
        try:
            store.create_run("eval", config=cfg.model_dump(mode="json"), config_hash=cfg.digest(),
                             code_version="", loop="none")
            results = _run_evaluator(resolved, pm, Path(tmp), store, "eval", 0, None, {},
                                     Path(tmp) / EVALS_DIR, progress)
        finally:
            store.close()
    return Evaluated(results, evaluator, 0, None)


def _run_evaluator(resolved: ResolvedConfig, pm: PluginManager, run_dir: Path, store: Any, run_id: str,
                   iteration: int, version: str | None, adapters: dict[str, str], work_dir: Path,
                   progress: StageProgress | None) -> list[EvalResult]:
    """Start the services in this process, run the one evaluator of ``resolved`` on the version
    (engine.runtime.run.evaluate_with), stop them."""
    from engine.runtime.run import evaluate_with
    from engine.runtime.services import Services

    pm.hook.configure.call_historic(kwargs={"config": resolved.config})
    work_dir.mkdir(parents=True, exist_ok=True)
    services = Services()
    try:
        services = Services.start(resolved, run_dir, pm)
        runner = Runner(run_id, work_dir, resolved, pm, store, sampler=services.sampler,
                        samplers=services.samplers, sandbox=services.sandbox,
                        progress=progress or StageProgress(), iteration=iteration, model_version=version,
                        adapters=dict(adapters))
        return evaluate_with(runner, resolved.evaluators[0])
    finally:
        services.stop()
