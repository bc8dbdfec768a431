"""The runner: the API a loop recipe composes its stages with (README: "Runner API").

What it is: ``call(role, *args, key=)`` builds the stage bound to ``role``, runs its verb on a
whole batch, writes the outputs and side outputs (with their parents) to the lineage store under
one stage execution, fires ``on_stage_end`` / ``on_records_written``, and on resume returns the
stored outputs of an execution that already finished instead of running it again; ``stage(role)``
hands a loop the bound stage itself (its public helpers, such as ``messages``); ``ingest`` records
what the loop made; ``train`` makes the next model version of an adapter role.
What it is not: a scheduler; where stages run (in process or on Ray actors) is the executor's
business, and the runner never asks which backend a stage is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.contracts import Role, Stage, StageContext, build_stage, kinds_fit
from engine.errors import StageFailed
from engine.records import Record
from engine.runtime.streaming import Args, Outputs, StageRun, Stream, source_of

if TYPE_CHECKING:
    from engine.config import ResolvedConfig, ResolvedStage
    from engine.lineage.store import LineageStore
    from engine.manager import PluginManager
    from engine.runtime.training import MakeRoom


@dataclass
class StageProgress:
    """Callbacks the CLI hooks its progress display into (no-ops by default)."""

    start: Callable[[str, int], None] = lambda role, total: None
    advance: Callable[[str, int], None] = lambda role, n: None
    end: Callable[[str, int, int, float], None] = lambda role, n_in, n_out, s: None
    fail: Callable[[str, float, str], None] = lambda role, seconds, error: None


def keyed(role: str, key: str) -> str:
    """The name of a stage execution: its role, and ``:key`` for a keyed call (``judge:refined``)."""
    return f"{role}:{key}" if key else role


@dataclass
class Runner:
    run_id: str
    run_dir: Path
    resolved: ResolvedConfig
    pm: PluginManager
    store: LineageStore
    sampler: Any = None
    sandbox: Any = None
    samplers: dict[str, Any] = field(default_factory=dict)  # named samplers besides the policy's
    progress: StageProgress = field(default_factory=StageProgress)
    iteration: int = 0
    model_version: str | None = None
    adapters: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # adapter role -> its latest model version
    summary: dict[str, Any] = field(default_factory=dict)
    service_seconds: float = 0.0
    make_room: MakeRoom | None = None  # lends the services' replicas to a training (Services.lend)

    @property
    def config(self) -> Any:
        return self.resolved.config

    @property
    def loop_options(self) -> Any:
        return self.resolved.loop.options

    def context(self) -> StageContext:
        cfg = self.resolved.config
        return StageContext(seed=cfg.seed * 1000 + self.iteration, iteration=self.iteration,
                            model_name=cfg.model.name, run_dir=self.run_dir, sampler=self.sampler,
                            samplers=dict(self.samplers),
                            sandbox=self.sandbox, model_version=self.model_version,
                            adapters=dict(self.adapters), plugins=self.pm)

    def instantiate(self, bound: ResolvedStage, role: str) -> Stage[Any]:
        """The stage bound in ``bound``, made by engine.contracts.build_stage with this run's context."""
        ctx = self.context()
        ctx.progress = lambda n: self.progress.advance(role, n)
        return build_stage(bound.info.cls, bound.options, ctx)

    def stage(self, role: str) -> Stage[Any] | None:
        """The stage bound to ``role`` (None for an optional role left unbound), with this run's
        context: a loop reads a stage's public helpers through it (``runner.stage("judge")
        .messages(responses)``, engine.contracts.Prompted) instead of importing its module."""
        self._role(role)
        bound = self.resolved.stages.get(role)
        return self.instantiate(bound, role) if bound is not None else None

    # -- stage calls --------------------------------------------------------------------------
    def call(self, role: str, *args: Sequence[Any], key: str = "") -> Outputs:
        """Run the stage bound to ``role`` on a batch, as one chunk; outputs are in input order.

        Use ``key`` to call one role several times in an iteration (each call is its own stage
        execution, ``role:key``). The stage's side outputs (``Stage.emit``) and the StageError
        records of skipped inputs are written under the same execution and returned as
        ``outputs.side``. An optional role left unbound returns its first argument unchanged. A
        stage execution that already finished (a resumed run) is not run again: its recorded
        outputs and side outputs are returned. With ``on_error: skip`` a batch that raises is
        retried record by record; each record that still raises gets a StageError record instead.
        """
        chunk: Args = tuple(list(a) for a in args)
        run = self._stage_run(role, key)
        if run is None:
            self.check_kinds(role, "hands in", [r for arg in chunk for r in arg], "takes")
            self.funnel(keyed(role, key), len(chunk[0]) if chunk else 0)
            return Outputs(chunk[0] if chunk else [])
        if run.finished():
            out = Outputs()
            for part in run.replay():
                out.extend(part)
                out.side.extend(part.side)
            return out
        self.progress.start(run.name, len(chunk[0]) if chunk else 0)
        try:
            result = run.chunk(0, chunk)
        except BaseException as exc:
            run.finish(exc)
            raise
        run.finish()
        return result

    def stream(self, role: str, inputs: Iterable[Any] | Stream, *, key: str = "",
               chunk_size: int | None = None) -> Stream:
        """Run the stage bound to ``role`` as a stream of chunks (README: "Streaming stages").

        ``inputs`` is any iterable (read lazily, ``chunk_size`` records at a time, default
        ``runtime.chunk_size``) or another stream, whose chunks this one takes one for one and
        starts on as soon as the first is done. Each chunk's outputs and side outputs are written
        to lineage when it finishes; a resumed run reruns only the chunks that had not finished.
        Iterate the stream for its chunks (``Outputs``), or use ``records()`` / ``collect()``."""
        run = self._stage_run(role, key)
        return Stream(run, source_of(inputs, chunk_size or self.config.runtime.chunk_size))

    def _stage_run(self, role: str, key: str) -> StageRun | None:
        """The stage execution of ``role`` (and ``key``) in this iteration; None when the role is an
        optional one left unbound."""
        self._role(role)
        bound = self.resolved.stages.get(role)
        if bound is None:
            return None
        exec_id = self._start(role, bound, key)
        return StageRun(self, role, keyed(role, key), bound, exec_id)

    def check_kinds(self, role: str, what: str, records: Sequence[Any], side: str) -> None:
        """The records a role is handed (``takes``) or gives back (``gives``) are of the kinds the loop
        declared for it: a loop or stage that breaks its declaration fails here, naming the role."""
        allowed = getattr(self._role(role), side)
        kinds = sorted({r.kind for r in records if isinstance(r, Record)})
        if not kinds_fit(kinds, allowed, self.record_kinds):
            raise TypeError(f"role {role!r} of loop {self.resolved.loop.info.name!r}: {what} "
                            f"[{', '.join(kinds)}], but the role {side} [{', '.join(allowed)}]")

    def _role(self, role: str) -> Role:
        """The loop's declaration of ``role``; KeyError naming the loop for a role it lacks."""
        roles: dict[str, Role] = self.resolved.loop.info.cls.roles
        if role not in roles:
            raise KeyError(f"loop {self.resolved.loop.info.name!r} has no role {role!r}")
        return roles[role]

    @cached_property
    def record_kinds(self) -> dict[str, type[Record]]:
        return self.pm.record_kinds()

    def ingest(self, role: str, records: Sequence[Record]) -> list[Record]:
        """Record what the loop itself made (loaded data, assembled examples) as a stage."""
        exec_id = self.store.start_stage(
            self.run_id, self.iteration, role, kind="source", stage=role,
            plugin=self.resolved.loop.info.plugin, plugin_version=self.resolved.loop.info.version,
            options={}, model_version=self.model_version)
        self.write(exec_id, records)
        self.store.finish_stage(exec_id, n_in=0, n_out=len(records), seconds=0.0)
        self.funnel(role, len(records))
        return list(records)

    def records(self, ids: Sequence[str]) -> list[Record]:
        """The records with these ids from lineage, in the order given (absent ids left out): what a
        loop reads back instead of holding a streamed stage's outputs."""
        return self.store.get_records(ids)

    def write(self, exec_id: str, records: Sequence[Record]) -> None:
        if records:
            self.store.write_records(self.run_id, self.iteration, exec_id, records)
            self.pm.hook.on_records_written(run_id=self.run_id, records=list(records))

    def funnel(self, role: str, count: int) -> None:
        self.summary.setdefault("funnel", {})[role] = count

    def _start(self, role: str, bound: ResolvedStage, key: str) -> str:
        return self.store.start_stage(
            self.run_id, self.iteration, keyed(role, key), kind=bound.info.kind,
            stage=bound.info.name, plugin=bound.info.plugin, plugin_version=bound.info.version,
            options=bound.options.model_dump(mode="json"), model_version=self.model_version,
            attempt_key=key)

    def failure(self, role: str, bound: ResolvedStage, exc: BaseException,
                record: str | None = None) -> StageFailed:
        """``exc``, raised by the stage bound to ``role``, as a one-line StageFailed (kept as is
        when it already is one)."""
        if isinstance(exc, StageFailed):
            return exc
        return StageFailed(iteration=self.iteration, role=role, stage=bound.info.name,
                           plugin=bound.info.plugin, cause=exc, record=record)

    def finish_execution(self, exec_id: str, role: str, bound: ResolvedStage, n_in: int, n_out: int,
                seconds: float, error: str | None, finished: bool | None = None) -> None:
        self.store.finish_stage(exec_id, n_in=n_in, n_out=n_out, seconds=seconds, error=error,
                                finished=finished)
        if finished is False:
            self.progress.fail(role, seconds, error or "failed")
        else:
            self.progress.end(role, n_in, n_out, seconds)
        self.funnel(role, n_out)
        self.pm.hook.on_stage_end(run_id=self.run_id, iteration=self.iteration, role=role,
                                  stage=bound.info.name, n_in=n_in, n_out=n_out, seconds=seconds,
                                  error=error)

    # -- training -----------------------------------------------------------------------------
    def train(self, examples: Sequence[Record], role: str = "policy", key: str = "") -> str | None:
        """Train the adapter of ``role`` with its trainer (``trainers[role]``, else ``trainer``) on
        ``examples``; record and return the new model version. The ``policy`` role's version is the
        run's ``model_version``; each role continues from its own previous adapter. ``key`` names
        each of several trainings of one role in an iteration (on-policy steps: ``key="step2"``);
        the stages called after a training sample from its adapter."""
        from engine.training.protocol import ModelVersion

        bound = self.resolved.trainer_for(role)
        if bound is None or not examples:
            return None
        stage_role = keyed(f"train:{role}", key)
        exec_id = self._start(f"train:{role}", bound, key)
        done = self.store.stage_execution(exec_id)
        made = self.store.model_version_made_by(exec_id) if done and done.get("finished") else None
        if made is not None:  # a resumed run: this training finished before the crash; never redo it
            row = self.store.get_model_version(made)
            assert row is not None
            self._adopt(role, made, row["adapter_path"])
            return made
        parent = self.versions.get(role, self.model_version if role == "policy" else None)
        base = ModelVersion(base_model=self.config.model.name, adapter_path=self.adapters.get(role),
                            parent=parent)
        out_dir = self.run_dir / "adapters" / (f"iter{self.iteration}-{role}" + (f"-{key}" if key else ""))
        t0 = time.perf_counter()
        from engine.runtime.training import run_training  # on a Ray worker, or in process with Ray off

        try:
            new = run_training(bound, self.context(), list(examples), base, str(out_dir),
                               self.config.runtime.ray, self.make_room)
        except Exception as exc:
            failed = self.failure(stage_role, bound, exc)
            self.finish_execution(exec_id, stage_role, bound, len(examples), 0, time.perf_counter() - t0,
                                  failed.cause, finished=False)
            raise failed from exc
        self.service_seconds += time.perf_counter() - t0
        self.store.add_model_version(
            new.id, run_id=self.run_id, base_model=new.base_model, adapter_path=new.adapter_path,
            checkpoint_hash=new.checkpoint_hash, parent_version=parent, execution_id=exec_id,
            trained_on=[e.id for e in examples])
        self.store.add_training_steps(self.run_id, self.iteration, new.id, stage_role.removeprefix("train:"),
                                      new.steps)
        self.finish_execution(exec_id, stage_role, bound, len(examples), 1, time.perf_counter() - t0, None)
        self._adopt(role, new.id, new.adapter_path)
        return new.id

    def _adopt(self, role: str, version: str, adapter_path: str | None) -> None:
        if adapter_path:
            self.adapters[role] = adapter_path
        self.versions[role] = version
        if role == "policy":
            self.model_version = version
