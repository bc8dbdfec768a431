"""Roles typed by record kind: what a loop hands a role and expects back, and whether a stage fits.

What it is: :class:`Role` (a loop's declaration of one role), ``ANY``, :func:`kinds_fit` (record
kinds against allowed ones, a subclass kind fitting its base) and :func:`role_mismatch` (why a
stage's ``accepts``/``produces`` do not fit a role; ``resolve_config`` turns it into an exit-2
error). What it is not: stage binding itself (engine/config.py) or the stage base (engine/contracts.py,
which re-exports these for plugin authors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from engine.contracts import Stage
    from engine.records import Record

StageKind = Literal["generator", "critic", "refiner", "filter", "sampler", "sandbox", "trainer",
                    "evaluator", "environment", "loop"]
"""The kinds of stage (engine.contracts lists each kind's verb)."""

ANY = "*"
"""In ``accepts``: any record kind. In ``produces``: the kinds the stage was handed (a filter) or
kinds it cannot know in advance."""

class Role(BaseModel):
    """One role of a loop: the stage kind bound to it, the record kinds the loop hands in
    (``takes``) and expects back (``gives``), its default stage (a name or
    ``{"name": ..., "options": {...}}``) and whether it may be left unbound (``optional``: the
    config says ``stages.<role>: null`` and the runner passes the records through)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: StageKind
    takes: tuple[str, ...]
    gives: tuple[str, ...]
    default: str | dict[str, Any] | None = None
    optional: bool = False
    doc: str = ""


def kinds_fit(kinds: Sequence[str], allowed: Sequence[str], classes: dict[str, type[Record]]) -> bool:
    """Every kind of ``kinds`` is in ``allowed``, or its record class subclasses an allowed one
    (a ``refinement`` is a ``response``); ``ANY`` in ``allowed`` allows everything."""
    if ANY in allowed:
        return True
    for kind in kinds:
        cls = classes.get(kind)
        if kind not in allowed and not (cls is not None and any(
                issubclass(cls, classes[a]) for a in allowed if a in classes)):
            return False
    return True


def role_mismatch(role: Role, stage: type[Stage[Any]], classes: dict[str, type[Record]]) -> str | None:
    """Why ``stage`` cannot be bound to ``role`` (record kinds that do not fit), or None."""
    takes_ok = kinds_fit(role.takes, stage.accepts, classes)
    gives_ok = ANY in stage.produces or kinds_fit(stage.produces, role.gives, classes)
    if takes_ok and gives_ok:
        return None
    return (f"{stage.kind} {stage.name!r} accepts {_kinds(stage.accepts)} and produces "
            f"{_kinds(stage.produces)}, but the role hands in {_kinds(role.takes)} and expects back "
            f"{_kinds(role.gives)}")


def _kinds(kinds: Sequence[str]) -> str:
    return "any kind" if ANY in kinds else "[" + ", ".join(kinds) + "]"


