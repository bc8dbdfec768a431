"""The authoring contract: roles typed by record kind, optional roles, typed and strict options,
side outputs, ``runner.stage``, and the skip policy's note (scripted, in process, seconds)."""

from __future__ import annotations

import json
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from engine import hookimpl
from engine.config import parse_config, resolve_config
from engine.contracts import ANY, NoOptions, Role, Stage, StageContext, build_stage, kinds_fit
from engine.errors import ConfigError
from engine.lineage import queries
from engine.lineage.store import LineageStore
from engine.manager import create_plugin_manager
from engine.records import BUILTIN_KINDS, Critique, Link, Record, Response, Seed, Task
from engine.runtime.run import start_run


class LenientOptions(BaseModel):  # forgets extra="forbid"
    min_words: int = 1
    nested: LenientNested = None  # type: ignore[assignment]


class LenientNested(BaseModel):
    depth: int = 1


LenientOptions.model_rebuild()


class ResponseFilter(Stage[LenientOptions]):
    """Expects responses: binding it where critiques flow is a config error."""

    kind = "filter"
    name = "long-responses"
    accepts = ("response",)
    produces = ("response",)

    def filter(self, records: Sequence[Record]) -> list[Record]:
        return [r for r in records
                if isinstance(r, Response) and len(r.text.split()) >= self.options.min_words]


class Echo(Stage[LenientOptions]):
    """Seeds -> tasks, emitting one side record per input; raises on a seed that says 'boom'."""

    kind = "generator"
    name = "echo"
    accepts = ("seed",)
    produces = ("task",)

    def generate(self, inputs: Sequence[Record]) -> list[Record]:
        out: list[Record] = []
        for s in inputs:
            assert isinstance(s, Seed)
            if "boom" in s.text:
                raise ValueError(f"cannot echo {s.text!r}")
            out.append(Task(prompt=s.text.upper(), parents=[Link(id=s.id)]))
            self.emit([Record(kind="note", meta={"seen": s.text}, parents=[Link(id=s.id)])])
        return out


class TwoStep(Stage[NoOptions]):
    """A loop: echo the seeds (required), then an optional filter over tasks."""

    kind = "loop"
    name = "two-step"
    roles = {
        "echo": Role(kind="generator", takes=("seed",), gives=("task",), default="echo"),
        "keep": Role(kind="filter", takes=("task",), gives=("task",), optional=True),
    }
    trains: dict[str, tuple[str, ...]] = {}
    seen: list[Any] = []

    def run_iteration(self, runner: Any, iteration: int) -> None:
        seeds = runner.ingest("seeds", [Seed(text=t) for t in ("a b", "c boom", "d e f")])
        tasks = runner.call("echo", seeds)
        again = runner.call("echo", seeds)  # finished: read back from the store, side outputs too
        kept = runner.call("keep", tasks)
        TwoStep.seen[:] = [tasks, again, kept, runner.stage("echo"), runner.stage("keep")]


def plugin() -> types.ModuleType:
    mod = types.ModuleType("authoring_test_plugin")
    mod.register_filters = hookimpl(lambda: [ResponseFilter])  # type: ignore[attr-defined]
    mod.register_generators = hookimpl(lambda: [Echo])  # type: ignore[attr-defined]
    mod.register_loops = hookimpl(lambda: [TwoStep])  # type: ignore[attr-defined]
    return mod


def resolve(cfg: dict[str, Any]) -> Any:
    pm = create_plugin_manager(entry_points=False, plugins=[plugin()])
    return resolve_config(parse_config({"sampler": "scripted", **cfg}), pm), pm


def test_a_binding_whose_kinds_do_not_fit_is_refused_naming_role_stage_and_kinds() -> None:
    with pytest.raises(ConfigError) as err:
        resolve({"loop": "self", "stages": {"passing": "long-responses"}})
    msg = str(err.value)
    assert "stages.passing" in msg and "role 'passing' of loop 'self'" in msg
    assert "filter 'long-responses' accepts [response]" in msg
    assert "hands in [critique] and expects back [critique]" in msg
    assert err.value.exit_code == 2
    resolve({"loop": "self", "stages": {"respond": "respond"}})  # a fitting binding passes


def test_a_trainer_that_cannot_take_the_loops_examples_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"trainer: adapter role 'policy' of loop 'self': trainer 'dpo' "
                                          r"accepts \[preference_pair\]"):
        resolve({"loop": "self", "trainer": "dpo"})
    resolve({"loop": "spar", "trainers": {"policy": "dpo", "refiner": "sft"}})
    with pytest.raises(ConfigError, match="trainers.refiner"):
        resolve({"loop": "spar", "trainers": {"policy": "dpo", "refiner": "dpo"}})


def test_a_subclass_kind_fits_its_base_and_generic_stages_fit_anything() -> None:
    assert kinds_fit(("refinement",), ("response",), BUILTIN_KINDS), "a refinement is a response"
    assert not kinds_fit(("response",), ("refinement",), BUILTIN_KINDS)
    assert not kinds_fit(("critique",), ("response",), BUILTIN_KINDS)
    assert kinds_fit(("critique", "anything"), (ANY,), BUILTIN_KINDS)
    assert kinds_fit(("seed_request",), ("seed_request",), BUILTIN_KINDS), "unregistered kinds match by name"


def test_required_roles_cannot_be_unbound_and_optional_ones_can() -> None:
    with pytest.raises(ConfigError, match="role 'echo' of loop 'two-step' is required"):
        resolve({"loop": "two-step", "stages": {"echo": None}})
    resolved, _ = resolve({"loop": "two-step"})
    assert "keep" not in resolved.stages and "echo" in resolved.stages
    resolved, _ = resolve({"loop": "selfcodealign", "stages": {"dedup": None}})
    assert "dedup" not in resolved.stages and "decontaminate" in resolved.stages


def test_unknown_option_keys_are_refused_even_without_extra_forbid() -> None:
    with pytest.raises(ConfigError, match=r"stages.echo.options.min_wrds: unknown field"):
        resolve({"loop": "two-step", "stages": {"echo": {"options": {"min_wrds": 2}}}})
    with pytest.raises(ConfigError, match=r"stages.echo.options.nested.dept: unknown field"):
        resolve({"loop": "two-step", "stages": {"echo": {"options": {"nested": {"dept": 2}}}}})
    resolved, _ = resolve({"loop": "two-step", "stages": {"echo": {"options": {"min_words": 2}}}})
    assert resolved.stages["echo"].options.min_words == 2


def test_stage_generic_sets_options_and_build_stage_validates() -> None:
    assert Echo.Options is LenientOptions
    stage = build_stage(Echo, {"min_words": 3}, StageContext())
    assert isinstance(stage.options, LenientOptions) and stage.options.min_words == 3
    with pytest.raises(Exception, match="min_wrds"):
        build_stage(Echo, {"min_wrds": 3}, StageContext())


def test_side_outputs_skip_note_optional_passthrough_and_runner_stage(tmp_path: Path) -> None:
    resolved, pm = resolve({"loop": "two-step", "output_dir": str(tmp_path), "runtime": {"ray": False},
                            "stages": {"echo": {"on_error": "skip"}}})
    run_dir = start_run(resolved, pm)
    tasks, again, kept, echo, keep = TwoStep.seen
    assert [t.prompt for t in tasks] == ["A B", "D E F"]
    assert [r.kind for r in tasks.side] == ["note", "note", "stage_error"], "emitted, then the skipped input"
    assert [t.id for t in again] == [t.id for t in tasks]
    assert [r.id for r in again.side] == [r.id for r in tasks.side]
    assert kept == tasks, "an optional role left unbound passes its records through"
    assert isinstance(echo, Echo) and keep is None
    store = LineageStore.for_run_dir(run_dir)
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    try:
        [row] = [r for r in queries.funnel(store, run_id) if r["role"] == "echo"]
        assert row["n_out"] == 2
        execs = store.engine.connect().exec_driver_sql(
            "SELECT finished, error FROM stage_executions WHERE role = 'echo'").all()
        assert execs == [(1, "1 record(s) failed and were skipped")], "the note survives; finished once"
        notes = queries.records_of_kind(store, run_id, 1, "note")
        assert len(notes) == 2
    finally:
        store.close()


def test_runner_stage_refuses_an_unknown_role(tmp_path: Path) -> None:
    from engine.runtime.runner import Runner

    resolved, pm = resolve({"loop": "two-step"})
    runner = Runner("r", tmp_path, resolved, pm, store=None)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="has no role 'judge'"):
        runner.stage("judge")


def test_prompted_judge_shows_its_chat(make_stage: Any) -> None:
    judge = make_stage("critic", "llm-judge", votes=1, prefix="Final judgement:")
    (chat,) = judge.messages([Response(text="hi", prompt="Say hi.")])
    assert chat[0]["role"] == "user" and "Say hi." in chat[0]["content"] and "hi" in chat[0]["content"]
    assert chat[-1] == {"role": "assistant", "content": "Final judgement:"}
    assert judge.completion(Critique(verdict=True, text="Final judgement: Yes")) == "Final judgement: Yes"


class Liar(Echo):
    """Declares tasks but gives back seeds."""

    name = "liar"

    def generate(self, inputs: Sequence[Record]) -> list[Record]:
        return [Seed(text="not a task", parents=[Link(id=s.id)]) for s in inputs]


class Mishand(TwoStep):
    """Hands the task filter seeds, against its own declaration."""

    name = "mishand"

    def run_iteration(self, runner: Any, iteration: int) -> None:
        runner.call("keep", runner.ingest("seeds", [Seed(text="x")]))


@pytest.mark.parametrize("loop, stages, message", [
    ("mishand", {}, r"role 'keep' of loop 'mishand': hands in \[seed\], but the role takes \[task\]"),
    ("two-step", {"echo": "liar"}, r"role 'echo' of loop 'two-step': got back from generator 'liar' "
                                   r"\[seed\], but the role gives \[task\]"),
])
def test_records_that_break_a_roles_declaration_fail_naming_it(
        tmp_path: Path, loop: str, stages: dict[str, Any], message: str) -> None:
    mod = plugin()
    mod.register_loops = hookimpl(lambda: [TwoStep, Mishand])  # type: ignore[attr-defined]
    mod.register_generators = hookimpl(lambda: [Echo, Liar])  # type: ignore[attr-defined]
    pm = create_plugin_manager(entry_points=False, plugins=[mod])
    cfg = parse_config({"loop": loop, "sampler": "scripted", "output_dir": str(tmp_path),
                        "runtime": {"ray": False}, "stages": stages})
    with pytest.raises(TypeError, match=message):
        start_run(resolve_config(cfg, pm), pm)
