"""Run directories: start a run from a resolved config, resume one, list them.

What it is: the lifecycle of a run (directory, config snapshot, lineage store, status), the
iteration loop (evaluators on the base model first, then each iteration followed by its
evaluations, each through ``evaluate_with``, which ``autodidact eval`` reuses:
engine.runtime.evaluation; an evaluation is keyed by evaluator, options and model version, and an
iteration whose model version did not change reuses the earlier result), and resume from the run
directory alone. What it is not: the stage calls
themselves (runner.py) nor the CLI's display.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from engine import __version__
from engine.config import ResolvedConfig, ResolvedStage, parse_config, resolve_config
from engine.errors import RunFailed, StoreFailed, UserError
from engine.manager import PluginManager, create_plugin_manager
from engine.records import EvalResult, content_hash, record_namespace
from engine.runtime.runner import Runner, StageProgress

CONFIG_FILE = "config.yaml"
STATE_FILE = "run.json"
LOG_FILE = "run.log"


def code_version() -> str:
    """autodidact's version plus the git commit of the checkout, when there is one."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def store_url(resolved: ResolvedConfig, run_dir: Path) -> str:
    return resolved.config.store.url or f"sqlite:///{(run_dir / 'lineage.sqlite').resolve()}"


def new_run_dir(resolved: ResolvedConfig) -> tuple[str, Path]:
    cfg = resolved.config
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    run_id = f"{cfg.name or resolved.loop.info.name}-{stamp}-{cfg.digest()[:6]}"
    run_dir = cfg.output_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return run_id, run_dir


def start_run(resolved: ResolvedConfig, pm: PluginManager,
              progress: StageProgress | None = None,
              on_iteration: Callable[[int, dict[str, Any]], None] | None = None) -> Path:
    """Check what can be checked before running (engine.preflight), then create the run directory
    and store, and run every iteration. Returns the run dir."""
    from engine.lineage.store import LineageStore
    from engine.preflight import preflight

    preflight(resolved, pm)

    store = LineageStore.open(store_url(resolved, Path(resolved.config.output_dir)), create=True) \
        if resolved.config.store.url else None
    run_id, run_dir = new_run_dir(resolved)
    store = store or LineageStore.open(store_url(resolved, run_dir), create=True)
    cfg = resolved.config
    store.create_run(run_id, config=cfg.model_dump(mode="json"), config_hash=cfg.digest(),
                     code_version=code_version(), loop=resolved.loop.info.name, name=cfg.name)
    _save_state(run_dir, run_id=run_id, status="running", store_url=store_url(resolved, run_dir))
    return _execute(run_id, run_dir, resolved, pm, store, progress, on_iteration)


def resume_run(run_dir: Path, progress: StageProgress | None = None,
               on_iteration: Callable[[int, dict[str, Any]], None] | None = None,
               pm: PluginManager | None = None) -> Path:
    """Continue a run from its directory: finished stage executions, and the finished chunks of
    streamed ones, are not run again. ``pm``: the plugin manager (default: every installed plugin)."""
    from engine.configfile import load_yaml
    from engine.lineage.store import LineageStore

    state = load_state(run_dir)
    pm = pm or create_plugin_manager()
    data, node = load_yaml(run_dir / CONFIG_FILE)
    cfg = parse_config(data, node, source=str(run_dir / CONFIG_FILE))
    resolved = resolve_config(cfg, pm, node, source=str(run_dir / CONFIG_FILE))
    store = LineageStore.open(state["store_url"], create=False)
    if state["run_id"] not in {r["id"] for r in store.runs()}:
        store.close()
        raise UserError(f"{run_dir}: its store {state['store_url']} holds no run {state['run_id']!r}")
    _save_state(run_dir, status="running")
    store.set_run_status(state["run_id"], "running")
    return _execute(state["run_id"], run_dir, resolved, pm, store, progress, on_iteration, state)


def load_state(run_dir: Path) -> dict[str, Any]:
    """The run's state file, checked: a missing, unreadable or damaged one is a UserError."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise UserError(f"{run_dir}: not a run directory (no {STATE_FILE})")
    try:
        state = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: damaged run state ({str(exc).splitlines()[0]})") from None
    missing = [k for k in ("run_id", "store_url")
               if not isinstance(state, dict) or not isinstance(state.get(k), str)]
    if missing:
        raise UserError(f"{path}: damaged run state (no {' or '.join(missing)})")
    return dict(state)


def _save_state(run_dir: Path, **state: Any) -> None:
    path = run_dir / STATE_FILE
    old = json.loads(path.read_text()) if path.exists() else {}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**old, **state}, indent=2))
    tmp.replace(path)


def _execute(run_id: str, run_dir: Path, resolved: ResolvedConfig, pm: PluginManager, store: Any,
             progress: StageProgress | None,
             on_iteration: Callable[[int, dict[str, Any]], None] | None,
             state: dict[str, Any] | None = None) -> Path:
    """Run iterations after the last one ``state`` says is done (all of them for a new run)."""
    from engine.runtime.services import Services

    state = state or {}
    done = int(state.get("iterations_done", 0))
    t_start = time.perf_counter()

    cfg = resolved.config
    pm.hook.configure.call_historic(kwargs={"config": cfg})
    services = Services()
    try:
        services = Services.start(resolved, run_dir, pm)
        runner = Runner(run_id, run_dir, resolved, pm, store, sampler=services.sampler,
                        samplers=services.samplers,
                        sandbox=services.sandbox, progress=progress or StageProgress(),
                        make_room=services.lend)
        loop = runner.instantiate(resolved.loop, "loop")
        runner.model_version = state.get("model_version")
        runner.adapters = dict(state.get("adapters") or {})
        runner.versions = dict(state.get("versions") or {})
        measured: dict[str, Any] = dict(state.get("evaluations") or {})  # eval_key -> where measured
        if done == 0:
            with record_namespace(f"{run_id}/0"):
                _evaluate(runner, resolved, measured)
        for it in range(done + 1, cfg.iterations + 1):
            runner.iteration, runner.summary = it, {}
            store.start_iteration(run_id, it)
            pm.hook.on_iteration_start(run_id=run_id, iteration=it)
            with record_namespace(f"{run_id}/{it}"):
                loop.run_iteration(runner, it)  # type: ignore[attr-defined]
                _evaluate(runner, resolved, measured)
            store.finish_iteration(run_id, it)
            pm.hook.on_iteration_end(run_id=run_id, iteration=it, summary=runner.summary)
            _save_state(run_dir, iterations_done=it, model_version=runner.model_version,
                        adapters=runner.adapters, versions=runner.versions, evaluations=measured)
            if on_iteration:
                on_iteration(it, runner.summary)
    except BaseException as exc:
        failure = _store_failure(exc, store)
        _mark_failed(store, run_id, run_dir, failure or exc)
        if failure is not None:
            raise failure from exc
        raise
    finally:
        services.stop()
    store.set_run_status(run_id, "finished", ended=True)
    wall = time.perf_counter() - t_start
    inside = services.clock.seconds + runner.service_seconds
    _save_state(run_dir, status="finished", timing={
        "wall_s": round(wall, 3), "services_s": round(inside, 3),
        "orchestration_s": round(wall - inside, 3)})
    store.close()
    return run_dir


def _store_failure(exc: BaseException, store: Any) -> StoreFailed | None:
    """A database error or a full disk, as the one-line StoreFailed the user can act on."""
    import errno

    from sqlalchemy.exc import SQLAlchemyError

    from engine.lineage.connect import first_line, safe_url
    from engine.lineage.errors import StoreError

    if isinstance(exc, StoreError):  # the store's own one-line description of a database error
        return StoreFailed(f"the lineage store failed: {exc}; fix it (free disk space, restart the "
                           "database), then resume")
    if isinstance(exc, SQLAlchemyError):
        return StoreFailed(f"the lineage store failed: {first_line(exc)} ({safe_url(store.url)}); "
                           "fix it (free disk space, restart the database), then resume")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFailed(f"no space left on the device of {exc.filename or 'the run directory'}; "
                           "free some, then resume")
    return None


def _mark_failed(store: Any, run_id: str, run_dir: Path, exc: BaseException) -> None:
    """Mark the run failed in the store and run.json, and append the traceback to run.log: each
    as far as it goes (the store or the disk may be what failed; the first error is the one shown)."""
    import traceback

    if isinstance(exc, RunFailed):
        exc.run_dir = str(run_dir)
    def log() -> None:
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with open(run_dir / LOG_FILE, "a") as fh:
            fh.write(f"--- {stamp} run failed: {type(exc).__name__}: {exc}\n")
            fh.write("".join(traceback.format_exception(exc.__cause__ or exc)))

    steps: list[Callable[[], object]] = [lambda: store.set_run_status(run_id, "failed"),
                                         lambda: _save_state(run_dir, status="failed"), log]
    for step in steps:
        try:
            step()
        except Exception:  # noqa: BLE001,S112 - best effort: the original error is what matters
            continue


def eval_key(bound: ResolvedStage, model_version: str | None,
             versions: dict[str, str] | None = None) -> str:
    """What an evaluation is keyed by: the evaluator, its options and the model version, with every
    adapter role's version (an evaluator may test another role's adapter, as Self-Lengthen's tests
    the generator's while the policy's version never changes)."""
    return content_hash({"evaluator": bound.info.name, "plugin": bound.info.plugin,
                         "options": bound.options.model_dump(mode="json"), "model": model_version or "",
                         "roles": dict(sorted((versions or {}).items()))})


def _evaluate(runner: Runner, resolved: ResolvedConfig, measured: dict[str, Any]) -> None:
    """Run every evaluator on the current model version and record its metrics. An evaluator
    already measured on this version (``measured``: eval key -> iteration and metrics, kept in
    run.json) is not run again: its rows are copied, with ``reused_from_iteration`` in details."""
    for bound in resolved.evaluators:
        key = eval_key(bound, runner.model_version, runner.versions)
        results = _reused(runner, bound, measured.get(key))
        if results is None:
            results = evaluate_with(runner, bound)
            measured[key] = {"iteration": runner.iteration,
                             "metrics": [[r.evaluator, r.metric] for r in results]}
        runner.store.add_metrics(runner.run_id, runner.iteration, runner.model_version, results)
        for r in results:
            runner.summary.setdefault("metrics", {})[f"{r.evaluator}/{r.metric}"] = r.value


def _reused(runner: Runner, bound: ResolvedStage, earlier: dict[str, Any] | None) -> list[EvalResult] | None:
    """The results measured in an earlier iteration, read back from the store and marked reused;
    None when there are none (or the store no longer holds all of them)."""
    from engine.lineage.queries import metric_rows

    if earlier is None or earlier["iteration"] == runner.iteration:
        return None
    k = int(earlier["iteration"])
    rows = {(r["evaluator"], r["metric"]): r for r in metric_rows(runner.store, runner.run_id, k)
            if (r["model_version"] or "") == (runner.model_version or "")}
    wanted = [rows.get((e, m)) for e, m in earlier["metrics"]]
    if any(r is None for r in wanted):
        return None
    role = f"eval:{bound.info.name} reused from iteration {k}"
    runner.progress.start(role, 0)
    results = [EvalResult(evaluator=r["evaluator"], metric=r["metric"], value=r["value"], n=r["n"],
                          details={**(r["details"] or {}), "reused_from_iteration": k},
                          model_version=runner.model_version, id=r["record_id"] or "")
               for r in wanted if r is not None]
    runner.progress.end(role, 0, len(results), 0.0)
    return results


def evaluate_with(runner: Runner, bound: ResolvedStage) -> list[EvalResult]:
    """The results of the evaluator ``bound`` on the runner's model version (its sampler, adapters
    and context), shown in the progress display; a failure is a one-line StageFailed. Records
    nothing: the caller stores them (after an iteration, or ``autodidact eval``)."""
    role = f"eval:{bound.info.name}"
    evaluator = runner.instantiate(bound, role)
    runner.progress.start(role, 0)
    t0 = time.perf_counter()
    try:
        results: list[EvalResult] = evaluator.evaluate(  # type: ignore[attr-defined]
            runner.sampler, runner.model_version)
    except Exception as exc:
        runner.progress.fail(role, time.perf_counter() - t0, str(exc))
        raise runner.failure(role, bound, exc) from exc
    runner.progress.end(role, 0, len(results), time.perf_counter() - t0)
    return results
