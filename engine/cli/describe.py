"""What a stage or loop declares, as plain data: the one introspection ``plugins show`` and
``loops show`` print.

What it is: :func:`option_rows` (a pydantic ``Options`` model as a flat table: nested models'
fields as dotted paths, readable types, defaults, limits, descriptions), :func:`stage_facts`
(kind, plugin, distribution, record kinds, resources, options) and :func:`loop_facts` (roles with
their default stage and options, the loop's options, the adapter roles it trains). Everything
returned is JSON-ready. What it is not: rendering (engine/cli/plugins.py, engine/cli/loops.py) or
validation of a config (engine/config.py).
"""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from engine.contracts import ANY, Role, validate_options

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

    from engine.manager import PluginManager, StageInfo

_LIMITS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "min length"),
           ("max_length", "max length"))


@dataclass(frozen=True)
class OptionRow:
    """One option: its dotted ``name`` (the key under ``options:``), readable ``type``, ``default``
    (JSON-ready; None with ``required`` when there is none), ``limits`` such as ``>= 1, <= 64``
    and the field's ``description``."""

    name: str
    type: str
    default: Any
    required: bool
    limits: str
    description: str


def option_rows(model: type[BaseModel], values: dict[str, Any] | None = None,
                prefix: str = "") -> list[OptionRow]:
    """``model``'s fields as rows; a field whose type is a pydantic model is replaced by that
    model's fields under ``field.``. ``values`` (a dumped instance, e.g. a loop's defaults merged
    over the stage's) overrides the declared defaults."""
    rows: list[OptionRow] = []
    for fname, f in model.model_fields.items():
        key = f.alias or fname
        name = prefix + key
        has, default = _default(f)
        if values is not None and key in values:
            has, default = True, values[key]
        nested = _nested_model(f.annotation)
        if nested is not None:
            if _allows_none(f.annotation):
                rows.append(OptionRow(name, type_name(f.annotation), _jsonable(default) if has else None,
                                      not has, _limits(f), f.description or ""))
            sub = default.model_dump(mode="json", by_alias=True) if isinstance(default, BaseModel) else (
                default if isinstance(default, dict) else None)
            rows += option_rows(nested, sub, name + ".")
            continue
        rows.append(OptionRow(name, type_name(f.annotation), _jsonable(default) if has else None,
                              not has, _limits(f), f.description or ""))
    return rows


def type_name(ann: Any) -> str:
    """A readable type: ``int``, ``str | None``, ``Literal['bfs', 'dfs']``, ``list[str]``."""
    if ann is None or ann is type(None):
        return "None"
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Literal:
        return "Literal[" + ", ".join(repr(a) for a in args) + "]"
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        base = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{base}[{inner}]" if args else base
    if ann is typing.Any:
        return "Any"
    return getattr(ann, "__name__", str(ann))


def stage_facts(info: StageInfo) -> dict[str, Any]:
    """What ``plugins show`` prints for one registered stage."""
    cls = info.cls
    return {
        "kind": info.kind, "name": info.name, "plugin": info.plugin, "distribution": info.distribution,
        "version": info.version, "doc": _doc(cls),
        "accepts": list(getattr(cls, "accepts", (ANY,))), "produces": list(getattr(cls, "produces", (ANY,))),
        "resources": cls.resources.model_dump() if hasattr(cls, "resources") else {},
        "options": [asdict(r) for r in option_rows(cls.Options)],
    }


def loop_facts(info: StageInfo, pm: PluginManager) -> dict[str, Any]:
    """What ``loops show`` prints: every role with its default stage, that stage's ``options`` (the
    loop's ``loop_options`` merged over the stage's defaults; ``problem`` says why they could not
    be), the loop's options and what it trains."""
    cls = info.cls
    roles: dict[str, Role] = getattr(cls, "roles", {})
    return {
        "name": info.name, "plugin": info.plugin, "distribution": info.distribution, "version": info.version,
        "doc": _doc(cls),
        "roles": {name: _role_facts(role, pm) for name, role in roles.items()},
        "options": [asdict(r) for r in option_rows(cls.Options)],
        "trains": {role: list(kinds) for role, kinds in getattr(cls, "trains", {}).items()},
    }


def _role_facts(role: Role, pm: PluginManager) -> dict[str, Any]:
    facts: dict[str, Any] = {"kind": role.kind, "takes": list(role.takes), "gives": list(role.gives),
                             "optional": role.optional, "doc": role.doc, "default": None}
    if role.default is None:
        return facts
    from engine.config import default_ref

    ref = default_ref(role.default, None)
    name, given = str(ref.name), ref.options
    default: dict[str, Any] = {"name": name, "options": _jsonable(given), "loop_options": _jsonable(given),
                               "problem": None}
    try:
        stage = pm.stage(role.kind, name)
    except KeyError as exc:
        default["problem"] = str(exc.args[0])
    else:
        try:
            merged = validate_options(stage.cls, given).model_dump(mode="json", by_alias=True)
        except ValidationError as exc:
            default["problem"] = f"the loop's default options do not validate: {exc.errors()[0]['msg']}"
        else:
            default["options"] = merged
    facts["default"] = default
    return facts


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested options as ``{dotted path: value}`` (``{"judge": {"votes": 3}}`` -> ``judge.votes``)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + str(key)] = _jsonable(value)
    return out


def _default(f: FieldInfo) -> tuple[bool, Any]:
    if f.default_factory is not None:
        return True, f.default_factory()  # type: ignore[call-arg]
    if f.default is PydanticUndefined:
        return False, None
    return True, f.default


def _nested_model(ann: Any) -> type[BaseModel] | None:
    for a in (ann, *typing.get_args(ann)):
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def _allows_none(ann: Any) -> bool:
    return type(None) in typing.get_args(ann)


def _limits(f: FieldInfo) -> str:
    found = []
    for meta in f.metadata:
        for attr, sign in _LIMITS:
            value = getattr(meta, attr, None)
            if value is not None:
                found.append(f"{sign} {value}")
    return ", ".join(found)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _doc(cls: type[Any]) -> str:
    """The first paragraph of the class docstring (not an inherited one), else of its module's."""
    import sys

    module = sys.modules.get(cls.__module__)
    doc = cls.__dict__.get("__doc__") or (module.__doc__ if module else None) or ""
    return " ".join(doc.strip().split("\n\n", 1)[0].split())


def print_header(console: Any, facts: dict[str, Any], label: str) -> None:
    """``<label> <name>  plugin ..., distribution ... <version>`` and the docstring, on ``console``."""
    from rich.markup import escape

    console.print(f"[bold]{escape(label)} {escape(facts['name'])}[/bold]  plugin {escape(facts['plugin'])}, "
                  f"distribution {escape(facts['distribution'])} {escape(facts['version'])}")
    if facts["doc"]:
        console.print(escape(facts["doc"]))
