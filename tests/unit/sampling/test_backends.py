"""Sampler backends as plugins: registered, resources declared, light to import, clear when missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.contracts import Resources
from engine.manager import create_plugin_manager
from engine.sampling.errors import BackendMissingError
from plugins.sampler_openai import OpenAISampler
from plugins.sampler_transformers import TransformersSampler
from plugins.sampler_vllm import VLLMCPUSampler, VLLMSampler, cpu_env_defaults


def test_backends_are_registered_with_their_resources() -> None:
    samplers = create_plugin_manager(entry_points=False).stages("sampler")
    for name in ("transformers", "vllm", "vllm-cpu", "openai"):
        assert name in samplers
        assert isinstance(samplers[name].cls.resources, Resources)
    assert VLLMSampler.resources.num_gpus == 1.0
    assert VLLMCPUSampler.resources.num_gpus == 0.0 and VLLMCPUSampler.resources.num_cpus >= 1
    assert TransformersSampler.resources.num_gpus == 0.0


def test_plugins_import_no_heavy_packages() -> None:
    code = ("import sys, plugins.sampler_transformers, plugins.sampler_vllm, plugins.sampler_openai, "
            "engine.sampling.cache, engine.sampling.resolver\n"
            "heavy = ('torch', 'transformers', 'vllm', 'ray', 'httpx', 'peft')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("cls", "extra"), [(VLLMSampler, "vllm"), (VLLMCPUSampler, "vllm-cpu")])
def test_missing_vllm_names_the_extra(cls: type[VLLMSampler], extra: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    monkeypatch.setattr(cls, "_env", lambda self: None)
    with pytest.raises(BackendMissingError, match=rf"pip install 'autodidact\[{extra}\]'"):
        cls().load()


def test_missing_httpx_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(BackendMissingError, match=r"pip install 'autodidact\[openai\]'"):
        OpenAISampler().client()


def test_vllm_cpu_env_defaults_bind_to_loopback() -> None:
    env = cpu_env_defaults()
    assert env["VLLM_HOST_IP"] == "127.0.0.1" and env["VLLM_NO_USAGE_STATS"] == "1"
    assert cpu_env_defaults("0-1")["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"


def test_model_comes_from_options_then_the_run_then_the_default() -> None:
    from engine.contracts import StageContext
    from plugins.sampler_transformers import TransformersOptions

    for cls in (TransformersSampler, VLLMCPUSampler, OpenAISampler):
        assert cls().model_name == "smollm2-135m-instruct"  # type: ignore[attr-defined]
        assert cls(None, StageContext(model_name="my/model")).model_name == "my/model"  # type: ignore[attr-defined]
    assert TransformersSampler(TransformersOptions(model="x"), StageContext(model_name="y")).model_name == "x"


def test_samplers_resolve_the_model_through_the_run_plugins(tmp_path: Path) -> None:
    """A plugin's ``resolve_model`` hook answers for the samplers (through context.resolve_model)."""
    from engine import hookimpl
    from engine.contracts import StageContext
    from plugins.sampler_vllm import VLLMOptions

    class Mine:
        @hookimpl
        def resolve_model(self, name: str, cache_dir: Path) -> Path | None:
            return tmp_path / "mine" if name == "mine" else None

    pm = create_plugin_manager(entry_points=False, plugins=[Mine()])
    context = StageContext(plugins=pm)
    assert VLLMSampler(VLLMOptions(model="mine"), context).model_path() == tmp_path / "mine"
    assert context.resolve_model("mine", tmp_path) == tmp_path / "mine"

    class Asked(Exception):
        pass

    class Recording(StageContext):
        def resolve_model(self, name: str, cache_dir: Path | None = None) -> Path:
            raise Asked(name, cache_dir)

    pytest.importorskip("transformers")
    from plugins.sampler_transformers import TransformersOptions

    with pytest.raises(Asked) as info:
        TransformersSampler(TransformersOptions(model="mine", cache_dir=str(tmp_path)), Recording()).load()
    assert info.value.args == ("mine", tmp_path)
