"""The one hookspecs module: every hook a plugin can implement, typed and documented.

What it is: the specifications pluggy checks implementations against. What it is not: the
implementations (built-ins live in plugins/, registered through these same hooks). Every hook
here is documented in README.md's "Hook reference"; a test fails when one is missing there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import hookspec

if TYPE_CHECKING:
    from engine.records import Record

# ---------------------------------------------------------------------------------------------
# Registration: each returns stage classes of one kind (subclasses of engine.contracts.Stage).
# ---------------------------------------------------------------------------------------------


@hookspec
def register_generators() -> list[type]:
    """Generator stages: make records from records (``generate``)."""


@hookspec
def register_critics() -> list[type]:
    """Critic stages: judge responses (``critique``)."""


@hookspec
def register_refiners() -> list[type]:
    """Refiner stages: rewrite responses given critiques (``refine``)."""


@hookspec
def register_filters() -> list[type]:
    """Filter stages: keep some records (``filter``)."""


@hookspec
def register_samplers() -> list[type]:
    """Sampler backends: generate completions for a batch of requests (``sample``)."""


@hookspec
def register_sandboxes() -> list[type]:
    """Sandbox backends: run untrusted programs and their tests (``execute``)."""


@hookspec
def register_trainers() -> list[type]:
    """Trainers: turn training examples into a new model version (``train``)."""


@hookspec
def register_evaluators() -> list[type]:
    """Evaluators: measure a model version (``evaluate``)."""


@hookspec
def register_environments() -> list[type]:
    """Environments: answer a policy's actions in multi-turn episodes (``reset``, ``step``; subclass
    engine.episodes.Environment, whose ``rollout`` drives the episodes)."""


@hookspec
def register_loops() -> list[type]:
    """Loop recipes: compositions of stages run as iterations (``run_iteration``)."""


@hookspec
def register_record_kinds() -> list[type[Record]]:
    """Record classes a plugin adds (subclasses of engine.records.Record with a new ``kind``)."""


# ---------------------------------------------------------------------------------------------
# Policy: the first non-None answer wins; built-ins answer last (trylast).
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def resolve_model(name: str, cache_dir: Path) -> Path | None:
    """Turn a model alias or id into a local HF directory, or None if this plugin can't."""


# ---------------------------------------------------------------------------------------------
# Configuration (historic: plugins registered later still receive it).
# ---------------------------------------------------------------------------------------------


@hookspec(historic=True)
def configure(config: Any) -> None:
    """Called once with the validated loop config before a run starts."""


# ---------------------------------------------------------------------------------------------
# Events: instrumentation. Return values are ignored; exceptions propagate.
# ---------------------------------------------------------------------------------------------


@hookspec
def on_iteration_start(run_id: str, iteration: int) -> None:
    """An iteration begins."""


@hookspec
def on_stage_end(run_id: str, iteration: int, role: str, stage: str, n_in: int, n_out: int,
                 seconds: float, error: str | None) -> None:
    """A stage finished a batch (``error`` is set when it failed)."""


@hookspec
def on_records_written(run_id: str, records: list[Record]) -> None:
    """A batch of records landed in the lineage store."""


@hookspec
def on_iteration_end(run_id: str, iteration: int, summary: dict[str, Any]) -> None:
    """An iteration ended; ``summary`` holds its funnel and metrics."""
