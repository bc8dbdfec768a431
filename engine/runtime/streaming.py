"""Stage executions run as chunks, and streams of them (``Runner.call`` and ``Runner.stream``).

What it is: ``StageRun``, one stage execution: each chunk of its inputs either comes back from
the lineage store (it finished before a resumed run stopped) or runs the stage's verb and is
written, outputs, side outputs and its chunk row, in one transaction; and ``Stream``, which runs
a StageRun's chunks on a thread of their own, a bounded number ahead of the consumer, so that
the driver holds a few chunks, not the stage, and a stream that reads another stream starts on
its first finished chunks (generate -> execute pipelined). Chunks keep their order: chunk i of
a stream is made from chunk i of its input, so a resumed run chunks the same way.
What it is not: a scheduler. Where a chunk's work runs (sampler and sandbox replicas on Ray) is
the services' business; a stream only decides how much is in flight.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.contracts import VERBS, Stage
from engine.errors import StageFailed
from engine.records import Link, Record, StageError

if TYPE_CHECKING:
    from engine.config import ResolvedStage
    from engine.runtime.runner import Runner

Args = tuple[list[Any], ...]


class Outputs(list[Any]):
    """What ``Runner.call`` returns, and each chunk a ``Stream`` yields: the stage's outputs (a
    list, in input order) and its side outputs (``side``: records the stage emitted, and StageError
    records of skipped inputs)."""

    def __init__(self, outputs: Sequence[Any] = (), side: Sequence[Record] = ()) -> None:
        super().__init__(outputs)
        self.side: list[Record] = list(side)


def distinct(records: Iterable[Any]) -> list[Record]:
    """The records among ``records`` by id, first occurrence first (the store keeps one of each)."""
    seen: dict[str, Record] = {}
    for r in records:
        if isinstance(r, Record):
            seen.setdefault(r.id, r)
    return list(seen.values())


def chunks_of(items: Iterable[Any], size: int) -> Iterator[Args]:
    """``items`` in lists of ``size`` (the last one shorter), as one-argument chunks."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield (batch,)
            batch = []
    if batch:
        yield (batch,)


@dataclass
class StageRun:
    """One stage execution of ``role`` (``name``: the role with its key), run chunk by chunk."""

    runner: Runner
    role: str
    name: str
    bound: ResolvedStage
    exec_id: str
    n_in: int = 0
    n_out: int = 0
    errors: int = 0
    replayed: int = 0
    ran: int = 0
    started: float = field(default_factory=time.perf_counter)
    _stage: Stage[Any] | None = None

    @property
    def stage(self) -> Stage[Any]:
        if self._stage is None:
            self._stage = self.runner.instantiate(self.bound, self.name)
        return self._stage

    def finished(self) -> bool:
        done = self.runner.store.stage_execution(self.exec_id)
        return bool(done and done.get("finished"))

    def replay(self) -> Iterator[Outputs]:
        """The chunks of an execution that finished before (a resumed run), from the store."""
        store = self.runner.store
        rows = store.chunks_of(self.exec_id)
        if not rows:  # written before chunks were recorded: outputs, then side outputs
            done = store.stage_execution(self.exec_id) or {}
            stored = store.records_of(self.exec_id)
            yield Outputs(stored[:done.get("n_out") or 0], side=stored[done.get("n_out") or 0:])
        for row in rows:
            stored, side = store.chunk_records(row)
            yield Outputs(stored, side=side)

    def chunk(self, index: int, args: Args) -> Outputs:
        """Chunk ``index``: its stored outputs if it finished before (same inputs), else the verb's."""
        from engine.lineage.chunks import inputs_hash  # the store's package (alembic) only when writing

        self.n_in += len(args[0]) if args else 0
        store = self.runner.store
        digest = inputs_hash(args)
        row = store.chunk_of(self.exec_id, index)
        if row is not None and row["inputs_hash"] == digest:
            stored, side = store.chunk_records(row)
            self.replayed += 1
            self.n_out += len(distinct(stored))
            return Outputs(stored, side=side)
        self.runner.check_kinds(self.role, "hands in", [r for arg in args for r in arg], "takes")
        t0 = time.perf_counter()
        try:
            out, errors = run_verb(self.stage, args, self.bound.on_error) if args and args[0] else ([], [])
        except Exception as exc:
            one = args[0][0] if args and len(args[0]) == 1 else None
            raise self.runner.failure(self.name, self.bound, exc, getattr(one, "id", None)) from exc
        records = [r for r in out if isinstance(r, Record)]
        self.runner.check_kinds(self.role, f"got back from {self.bound.info.kind} "
                                           f"{self.bound.info.name!r}", records, "gives")
        side = distinct([*self.stage.context.emitted, *errors])
        self.stage.context.emitted.clear()
        r = self.runner
        store.write_chunk(r.run_id, r.iteration, self.exec_id, index, inputs_hash=digest, outputs=records,
                          side=side, n_in=len(args[0]) if args else 0, seconds=time.perf_counter() - t0)
        for written in (distinct(records), side):
            if written:
                r.pm.hook.on_records_written(run_id=r.run_id, records=written)
        self.ran += 1
        self.errors += len(errors)
        self.n_out += len(distinct(records))
        return Outputs(records, side=side)

    def finish(self, error: BaseException | None = None) -> None:
        note = None
        if isinstance(error, StageFailed):
            note = error.cause
        elif error is not None:
            note = f"{type(error).__name__}: {error}"
        elif self.errors:
            note = f"{self.errors} record(s) failed and were skipped"
        self.runner.finish_execution(self.exec_id, self.name, self.bound, self.n_in, self.n_out,
                                     time.perf_counter() - self.started, note, finished=error is None)


def run_verb(stage: Stage[Any], args: Sequence[Sequence[Any]], policy: str) -> tuple[list[Any], list[Record]]:
    """The stage's verb on a batch; with ``policy == "skip"`` a batch that raises is retried record
    by record, and each record that still raises gets a StageError record instead."""
    verb: Callable[..., Any] = getattr(stage, VERBS[stage.kind])
    try:
        return list(verb(*args)), []
    except Exception:
        if policy != "skip":
            raise
    out: list[Any] = []
    errors: list[Record] = []
    stage.context.emitted.clear()  # the failed batch's side outputs are dropped with it
    for item in zip(*args, strict=True):
        kept = len(stage.context.emitted)
        try:
            out.extend(verb(*([x] for x in item)))
        except Exception as exc:
            del stage.context.emitted[kept:]
            errors.append(StageError(error=f"{type(exc).__name__}: {exc}"[:2000],
                                     parents=[Link(id=item[0].id, role="input")]))
    return out, errors


_DONE = object()


class Stream:
    """A stage run as a stream of chunks: iterate it for one ``Outputs`` per chunk, in chunk order.

    Its chunks run on a thread of its own, at most ``ahead`` finished chunks ahead of the consumer,
    so a stream that reads this one (``runner.stream("execute", responses)``) works on chunk i
    while this one makes chunk i + 1. A stream runs once: iterate it once (``records()`` and
    ``collect()`` iterate it for you). An error in a chunk ends the stream and is raised to its
    consumer, after the execution is recorded as failed.
    """

    def __init__(self, run: StageRun | None, source: Iterator[Args], ahead: int = 2) -> None:
        self.run = run
        self._source = source
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, ahead))
        self._closed = threading.Event()
        self._used = False

    def __iter__(self) -> Iterator[Outputs]:
        if self._used:
            raise RuntimeError("a stream runs once; keep what you need from its first iteration")
        self._used = True
        context = contextvars.copy_context()  # record ids are namespaced by a context variable
        worker = threading.Thread(target=context.run, args=(self._work,), daemon=True,
                                  name=f"stream-{self.run.name if self.run else 'pass'}")
        worker.start()
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._closed.set()

    def records(self) -> Iterator[Any]:
        """The outputs one by one (side outputs are in lineage, not here)."""
        for chunk in self:
            yield from chunk

    def collect(self) -> Outputs:
        """All outputs and side outputs in one ``Outputs`` (for stages small enough to hold)."""
        out = Outputs()
        for chunk in self:
            out.extend(chunk)
            out.side.extend(chunk.side)
        return out

    def _put(self, item: Any) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        run = self.run
        try:
            if run is None:  # an optional role left unbound: its inputs pass through
                for args in self._source:
                    if not self._put(Outputs(args[0] if args else [])):
                        return
                self._put(_DONE)
                return
            if run.finished():  # the whole execution finished before: replay it
                for chunk in run.replay():
                    if not self._put(chunk):
                        return
                self._put(_DONE)
                return
            run.runner.progress.start(run.name, 0)
            for index, args in enumerate(self._source):
                if not self._put(run.chunk(index, args)):
                    return
            run.finish()
            self._put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            if run is not None:
                try:
                    run.finish(exc)
                except Exception:  # noqa: BLE001 - the store may be what failed; the first error wins
                    pass
            self._put(exc)


def source_of(inputs: Iterable[Any] | Stream, size: int) -> Iterator[Args]:
    """The chunks a stream reads: another stream's output chunks one for one, else ``inputs`` in
    chunks of ``size``."""
    if isinstance(inputs, Stream):
        return ((list(chunk),) for chunk in inputs)
    return chunks_of(inputs, size)
