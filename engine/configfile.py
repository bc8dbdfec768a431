"""Reading a config file: YAML with line numbers, dotted overrides, and where a problem lies.

What it is: ``load_yaml`` (a mapping and its node tree), ``apply_overrides``
(``iterations=3 stages.respond.options.temperature=0.9``, values read as YAML; the node tree marks
what an override set, so its problems name the override instead of a line), ``line_of`` /
``override_at`` (where a path's value came from) and ``_problems`` (pydantic errors as
(path, message) pairs with that place). What it is not: the schema or stage resolution
(engine/config.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from engine.errors import ConfigError

STAGE_REF_KEYS = ("name", "options", "on_error")
"""Keys of a stage reference, which a config may also write as a bare stage name."""


MAX_BYTES = 1_000_000
"""Largest config file or override value read (bytes)."""
MAX_NODES = 100_000
"""Most YAML nodes a document may hold once every alias is expanded (a billion-laughs bomb has
billions): counted on the node graph before anything is constructed."""
MAX_DEPTH = 100
"""Deepest nesting of mappings and sequences."""


def load_yaml(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    """Read a YAML mapping (and its node tree, for line numbers) or raise ConfigError: any file
    (binary, another encoding, huge, a bomb of aliases) gives one message naming it."""
    src = str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError([("", f"cannot read file: {exc.strerror or exc}")], src) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError([("", f"file is larger than {MAX_BYTES:,} bytes: not a config")], src)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([("", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                                "save the file as UTF-8")], src) from None
    data, node = parse_yaml(text, src)
    if not isinstance(data, dict):
        raise ConfigError([("", "the top level must be a mapping of config keys")], src)
    return data, node


def parse_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse one YAML document with the safe loader, bounded: at most MAX_NODES nodes once aliases
    are expanded, MAX_DEPTH levels, no recursive alias; ConfigError (naming ``source``) on any
    problem. Returns the value and its node tree."""
    if len(text) > MAX_BYTES:
        raise ConfigError([("", f"larger than {MAX_BYTES:,} characters")], source)
    if "\x00" in text:
        at = text.index(chr(0))
        raise ConfigError([("", f"contains a NUL byte at offset {at}: not YAML text")], source)
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses unprintable characters already
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_bounds(node)
        return loader.construct_document(node), node
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError([("", f"invalid YAML: {where}{problem}")], source) from None
    except RecursionError:
        raise ConfigError([("", f"invalid YAML: nested deeper than {MAX_DEPTH} levels")], source) from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_bounds(root: yaml.Node) -> None:
    """Refuse a node graph whose expansion is too big or too deep, or that contains itself (an
    alias to an enclosing node). Aliased nodes are shared in the graph, so this walks each node
    once and works out the size and depth the expansion would have, without expanding anything."""
    sizes: dict[int, tuple[int, int]] = {}  # node id -> (values, levels) of its expansion
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        kids = _children(node)
        if done:
            open_.discard(id(node))
            below = [sizes[id(k)] for k in kids]
            size = 1 + sum(n for n, _ in below)
            levels = 1 + max((d for _, d in below), default=0)
            if size > MAX_NODES:
                raise yaml.YAMLError(f"more than {MAX_NODES:,} values once its aliases are expanded "
                                     "(an alias bomb?)")
            if levels > MAX_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels")
            sizes[id(node)] = size, levels
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_:
            raise yaml.YAMLError("an alias refers to a node that contains it (recursive)")
        open_.add(id(node))
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def apply_overrides(data: dict[str, Any], overrides: list[str],
                    node: yaml.Node | None = None) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a copy of ``data``. Given the
    file's YAML ``node`` tree, each overridden value's node becomes an :class:`OverrideNode`, so a
    problem there cites the override instead of a line of the file."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError([("", "an override must look like key.path=value")], f"override {item!r}")
        value = parse_yaml(raw, f"override {item!r}")[0] if raw else ""
        parts = key.split(".")
        cur: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(cur, list):
                if not part.isdigit() or int(part) >= len(cur):
                    raise ConfigError([(key, f"{part!r} is not an index of the list")], f"override {item!r}")
                idx = int(part)
                if last:
                    cur[idx] = value
                else:
                    cur = cur[idx]
            elif isinstance(cur, dict):
                if last:
                    cur[part] = value
                else:
                    old = cur.get(part)
                    if isinstance(old, str) and parts[i + 1] in STAGE_REF_KEYS:
                        cur[part] = {"name": old}  # `loop: spar` + loop.options.x keeps the name
                    elif not isinstance(old, dict | list):
                        cur[part] = {}
                    cur = cur[part]
            else:
                raise ConfigError([(key, f"{'.'.join(parts[:i])} is not a mapping")], f"override {item!r}")
        if node is not None:
            mark_override(node, parts, item)
    return out


class OverrideNode(yaml.ScalarNode):
    """Stands in the YAML node tree for a value that a command-line override set: it has no line
    in the file; ``item`` is the override as typed (``stages.judge.options.votes=0``)."""

    def __init__(self, item: str) -> None:
        super().__init__("tag:yaml.org,2002:str", item)
        self.item = item


def mark_override(node: yaml.Node, parts: list[str], item: str) -> None:
    """Put an :class:`OverrideNode` for ``item`` at key path ``parts`` of ``node``, or at the first
    part the file lacks (the override made everything below it)."""
    cur = node
    for i, part in enumerate(parts):
        if isinstance(cur, yaml.SequenceNode) and part.isdigit() and int(part) < len(cur.value):
            child = cur.value[int(part)]
        elif isinstance(cur, yaml.MappingNode):
            at = next((j for j, (k, _) in enumerate(cur.value) if k.value == part), None)
            if at is None:
                cur.value.append((yaml.ScalarNode("tag:yaml.org,2002:str", part), OverrideNode(item)))
                return
            child = cur.value[at][1]
        else:
            return
        if i == len(parts) - 1 or not isinstance(child, yaml.MappingNode | yaml.SequenceNode):
            if isinstance(cur, yaml.SequenceNode):
                cur.value[int(part)] = OverrideNode(item)
            else:
                cur.value[at] = (cur.value[at][0], OverrideNode(item))
            return
        cur = child


def _child(node: yaml.Node, part: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if k.value == str(part)), None)
    if isinstance(node, yaml.SequenceNode) and str(part).isdigit() and int(part) < len(node.value):
        return node.value[int(part)]  # type: ignore[no-any-return]
    return None


def override_at(node: yaml.Node | None, path: tuple[Any, ...]) -> str | None:
    """The override that set the value at ``path`` or at a key above it, else None."""
    for part in path:
        if node is None or isinstance(node, OverrideNode):
            break
        node = _child(node, part)
    return node.item if isinstance(node, OverrideNode) else None


def line_of(node: yaml.Node | None, path: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``path`` (the deepest existing one); None where a
    command-line override set the value (the file has no line for it)."""
    if override_at(node, path) is not None:
        return None
    line = None
    for part in path:
        if node is None:
            break
        line = node.start_mark.line + 1
        node = _child(node, part)
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _problems(exc: ValidationError, prefix: tuple[Any, ...], node: yaml.Node | None) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        path = ".".join(str(p) for p in loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        line = line_of(node, loc)
        out.append((path, f"{msg} (line {line})" if line else msg))
    return out


