"""Stage options: validation that refuses unknown keys at every level.

What it is: :func:`validate_options` (a stage's options checked against its ``Options`` model)
and :func:`unknown_keys` (pydantic ``extra_forbidden`` errors for keys a model lacks, so a
plugin whose Options model forgot ``extra="forbid"`` still refuses typos). What it is not: the
config schema (engine/config.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, get_args

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from engine.contracts import Stage


def validate_options(cls: type[Stage[Any]], options: BaseModel | dict[str, Any] | None) -> BaseModel:
    """``options`` checked against ``cls.Options``. Unknown keys are refused at every level, even
    when a plugin's Options model forgot ``extra="forbid"`` (pydantic would drop them silently)."""
    if isinstance(options, cls.Options):
        return options
    data = options.model_dump() if isinstance(options, BaseModel) else dict(options or {})
    errors = unknown_keys(cls.Options, data, ())
    if errors:
        raise ValidationError.from_exception_data(cls.Options.__name__, errors)
    return cls.Options.model_validate(data)


def unknown_keys(model: type[BaseModel], data: Any, loc: tuple[str | int, ...]) -> list[Any]:
    """pydantic ``extra_forbidden`` error entries for keys of ``data`` that ``model`` lacks."""
    if not isinstance(data, dict) or model.model_config.get("extra") == "allow":
        return []
    names: dict[str, Any] = {}
    for fname, f in model.model_fields.items():
        for key in (fname, f.alias, f.validation_alias if isinstance(f.validation_alias, str) else None):
            if key:
                names[key] = f.annotation
    errors: list[Any] = []
    for key, value in data.items():
        if key not in names:
            errors.append({"type": "extra_forbidden", "loc": (*loc, key), "input": value})
            continue
        ann = names[key]
        sub = next((a for a in (ann, *get_args(ann))
                    if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is not None:
            errors += unknown_keys(sub, value, (*loc, key))
    return errors


