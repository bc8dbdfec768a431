"""The model resolver: aliases converted once under a lock, local dirs, hub ids offline, versions."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from engine import hookimpl
from engine.manager import create_plugin_manager
from engine.sampling import resolver
from engine.sampling.errors import ModelResolutionError
from engine.sampling.resolver import (
    GGUFAlias,
    adapter_hash,
    base_version,
    builtin_resolve,
    default_cache_dir,
    model_version,
    resolve_model_path,
)


@pytest.fixture
def fake_alias(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """An alias whose 'GGUF' lives in a fake package; conversion is a stub that counts its calls."""
    pkg = tmp_path / "site" / "fake_model_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (pkg / "tiny.gguf").write_bytes(b"GGUF" + b"\0" * 16)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    alias = GGUFAlias("fake_model_pkg", "tiny.gguf", "pip install x")
    monkeypatch.setitem(resolver.ALIASES, "tiny-model", alias)
    calls: list[Path] = []

    def convert(gguf: Path, out: Path) -> None:
        calls.append(gguf)
        time.sleep(0.2)  # long enough for racing callers to pile up on the lock
        out.mkdir(parents=True)
        (out / "config.json").write_text(json.dumps({"model_type": "llama"}))

    monkeypatch.setattr(resolver, "convert_gguf", convert)
    return calls


def test_alias_converted_once_by_parallel_callers(tmp_path: Path, fake_alias: list[Path]) -> None:
    cache = tmp_path / "models"
    got: list[Path] = []
    def resolve() -> None:
        got.append(builtin_resolve("tiny-model", cache))

    threads = [threading.Thread(target=resolve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake_alias) == 1
    assert set(got) == {cache / "tiny-model"}
    assert (cache / "tiny-model" / "config.json").is_file()
    assert builtin_resolve("Tiny-Model", cache) == cache / "tiny-model"  # aliases are case-insensitive
    assert len(fake_alias) == 1
    assert not list(cache.glob(".tiny-model.tmp-*"))


def test_interrupted_conversion_is_redone(tmp_path: Path, fake_alias: list[Path]) -> None:
    cache = tmp_path / "models"
    (cache / "tiny-model").mkdir(parents=True)  # a partial directory without the done marker
    assert builtin_resolve("tiny-model", cache) == cache / "tiny-model"
    assert len(fake_alias) == 1


def test_unknown_alias_suggests_close_names(tmp_path: Path) -> None:
    with pytest.raises(ModelResolutionError, match="did you mean 'smollm2-135m-instruct'"):
        builtin_resolve("smollm2-135-instruct", tmp_path)
    with pytest.raises(ModelResolutionError, match="known aliases: smollm2-135m-instruct"):
        builtin_resolve("gpt5", tmp_path)


def test_missing_alias_package_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alias = GGUFAlias("no_such_pkg_xyz", "g.gguf", "pip install ghost")
    monkeypatch.setitem(resolver.ALIASES, "ghost", alias)
    with pytest.raises(ModelResolutionError, match="pip install ghost"):
        builtin_resolve("ghost", tmp_path)


def test_local_hf_directory_is_used_as_is(tmp_path: Path) -> None:
    d = tmp_path / "my-model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    assert builtin_resolve(str(d), tmp_path / "cache") == d
    assert base_version(str(d), d).startswith("my-model-")


def test_local_directory_without_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelResolutionError, match="no config.json"):
        builtin_resolve(str(tmp_path / "empty"), tmp_path)
    with pytest.raises(ModelResolutionError, match="not a directory"):
        builtin_resolve(str(tmp_path / "nope"), tmp_path)


def test_hub_id_that_cannot_be_fetched_fails_with_a_clear_message(tmp_path: Path) -> None:
    # tests/conftest.py sets HF_HUB_OFFLINE=1; online, the id does not exist: the same message
    with pytest.raises(ModelResolutionError, match="unreachable or the id is wrong.*local HF directory"):
        builtin_resolve("autodidact-test/no-such-model-xyz", tmp_path)


def test_plugin_resolver_answers_before_the_builtin(tmp_path: Path) -> None:
    class Mine:
        @hookimpl
        def resolve_model(self, name: str, cache_dir: Path) -> Path | None:
            return tmp_path / "mine" if name == "mine" else None

    pm = create_plugin_manager(entry_points=False, plugins=[Mine()])
    assert resolve_model_path("mine", tmp_path, pm) == tmp_path / "mine"
    with pytest.raises(ModelResolutionError, match="unknown model alias"):
        resolve_model_path("yours", tmp_path, pm)


def test_cache_dir_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTODIDACT_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "models"


def test_model_version_changes_with_adapter_content(tmp_path: Path) -> None:
    a = tmp_path / "adapter"
    a.mkdir()
    (a / "adapter_config.json").write_text("{}")
    (a / "adapter_model.safetensors").write_bytes(b"one")
    v1 = model_version("smollm2-135m-instruct", str(a))
    assert v1.startswith("smollm2-135m-instruct+lora-")
    assert v1 == model_version("smollm2-135m-instruct", str(a))
    (a / "adapter_model.safetensors").write_bytes(b"two!")
    assert model_version("smollm2-135m-instruct", str(a)) != v1
    assert model_version("smollm2-135m-instruct") == "smollm2-135m-instruct"
    assert adapter_hash("served-name") == adapter_hash("served-name")
