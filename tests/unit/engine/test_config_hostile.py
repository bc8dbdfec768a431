"""Config loading is total: hostile files and overrides give one ConfigError naming the file or
the override (exit 2, one line, no traceback), bounded in time and memory, and no run directory.

The property-based part (hypothesis) feeds the loader and the override parser arbitrary bytes,
YAML-shaped text and override strings: each must load or raise ConfigError, within a second and
100 MB.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from engine.cli import app
from engine.config import load_config
from engine.configfile import MAX_BYTES, apply_overrides, parse_yaml
from engine.errors import ConfigError
from engine.manager import PluginManager, create_plugin_manager

GOOD = "loop: self\nsampler: {name: scripted, options: {engine_kwargs_free: 1}}\noutput_dir: OUT\n"
LOL = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
              for p, c in zip(["", "a", "b", "c", "d", "e", "f", "g"], "abcdefgh", strict=True))

HOSTILE: dict[str, bytes] = {
    "binary": bytes(range(256)) * 4,
    "utf-16": "loop: self\n".encode("utf-16"),
    "latin-1": "loop: caf\xe9\n".encode("latin-1"),
    "nul": b"loop: self\x00\n",
    "huge": b"a: " + b"x" * (MAX_BYTES + 10) + b"\n",
    "deep": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "deep-map": ("a:\n" + "".join(" " * i + "b:\n" for i in range(1, 300))).encode(),
    "bomb": f"{LOL}loop: self\nsampler:\n  name: vllm\n  options:\n    engine_kwargs: {{x: *h}}\n".encode(),
    "recursive": b"loop: self\nx: &a [1, *a]\n",
    "merge-bomb": (LOL + "m: {<<: *h}\n").encode(),
    "python-tag": b"loop: !!python/object/apply:os.system ['true']\n",
    "unknown-tag": b"loop: !mine self\n",
    "unhashable-key": b"? [1, 2]\n: x\n",
    "complex-key": b"{[a]: 1}\n",
    "two-docs": b"loop: self\n---\nloop: spar\n",
    "tabs": b"loop:\n\t- self\n",
}


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_one_line_exit_2(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(HOSTILE[name])
    for command in ("validate", "run"):
        t0 = time.perf_counter()
        code, output = _cli(command, str(path))
        assert code == 2, output
        assert output.startswith("error: ") and str(path) in output, output
        assert "Traceback" not in output and len(output.strip().splitlines()) <= 2, output
        assert time.perf_counter() - t0 < 10, "bounded before anything is expanded"
    assert not (tmp_path / "runs").exists() and list(tmp_path.iterdir()) == [path]


def test_bomb_under_a_free_form_option_is_refused_before_expansion(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_bytes(HOSTILE["bomb"])
    tracemalloc.start()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "alias bomb" in str(info.value) and peak < 20e6


@pytest.mark.parametrize("item, words", [
    ("sampler.options.x=[" + "[" * 3000, "invalid YAML"),
    ("sampler.options.x=" + LOL.replace("\n", " ").replace("a: &a", "{a: &a").rstrip() + "}", "invalid YAML"),
    ("sampler.options.x=&a [*a]", "recursive"),
    ("sampler.options.x=!!python/name:os.system", "invalid YAML"),
    ("sampler.options.x=a\x00b", "NUL"),
    ("=1", "key.path=value"),
    ("iterations", "key.path=value"),
    ("evaluators.3.name=x", "not an index of the list"),
])
def test_hostile_override_names_it(item: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides({"iterations": 1, "sampler": {"options": {}}, "evaluators": []}, [item])
    message = str(info.value)
    assert words in message and message.startswith("override "), message


@pytest.fixture(scope="module")
def pm() -> PluginManager:
    return create_plugin_manager()


def _bounded(call: object) -> None:
    """``call()`` returns or raises ConfigError, within a second and 100 MB."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        call()  # type: ignore[operator]
    except ConfigError as exc:
        assert str(exc).strip()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0 and peak < 100e6


YAMLISH = st.text(alphabet=st.sampled_from(list("ab:&*[]{}<>-?!|,#'\"\n\t \\%@`~=.0123")), max_size=300)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=400), YAMLISH.map(str.encode),
                      st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_fuzz_config_file(tmp_path: Path, pm: PluginManager, body: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(body)
    _bounded(lambda: load_config(path, [], pm))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(st.one_of(YAMLISH, st.text(max_size=60)), max_size=4))
def test_fuzz_overrides(tmp_path: Path, pm: PluginManager, items: list[str]) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD.replace("OUT", str(tmp_path / "runs")).replace("engine_kwargs_free: 1", ""))
    _bounded(lambda: load_config(path, items, pm))
    assert not (tmp_path / "runs").exists()


def test_parse_yaml_keeps_merge_keys_and_aliases_within_bounds() -> None:
    data, node = parse_yaml("base: &b {x: 1, y: 2}\nuse: {<<: *b, y: 3}\nlist: [*b, *b]\n", "t")
    assert data["use"] == {"x": 1, "y": 3} and data["list"] == [{"x": 1, "y": 2}] * 2 and node is not None
