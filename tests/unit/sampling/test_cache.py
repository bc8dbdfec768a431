"""The request cache: repeats cost zero backend calls; every key part makes a miss when it changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.sampling.cache import CACHE_FILE, CachedSampler, SampleCache, request_key, version_of
from engine.sampling.protocol import SampleRequest
from plugins.sampler_scripted import ScriptedOptions, ScriptedSampler


def _reqs() -> list[SampleRequest]:
    return [SampleRequest.chat("a", temperature=0.7, seed=1), SampleRequest.chat("b", n=3),
            SampleRequest(prompt="raw", params={"max_tokens": 5})]


def test_repeat_costs_zero_backend_calls_and_marks_hits(tmp_path: Path) -> None:
    backend = ScriptedSampler(script=lambda req, i: f"{req.prompt or req.messages}-{i}")
    sampler = CachedSampler(backend, SampleCache.in_run_dir(tmp_path))
    first = sampler.sample(_reqs())
    assert backend.calls == 1 and backend.requests_seen == 3
    assert not any(r.cached for r in first)
    again = sampler.sample(_reqs())
    assert backend.calls == 1 and backend.requests_seen == 3  # zero backend calls on the repeat
    assert all(r.cached for r in again)
    assert [r.completions for r in again] == [r.completions for r in first]
    assert (tmp_path / CACHE_FILE).is_file()


def test_cache_survives_a_restart(tmp_path: Path) -> None:
    CachedSampler(ScriptedSampler(), SampleCache(tmp_path / "c.sqlite")).sample(_reqs())
    backend = ScriptedSampler()
    resumed = CachedSampler(backend, SampleCache(tmp_path / "c.sqlite"))
    assert all(r.cached for r in resumed.sample(_reqs()))
    assert backend.calls == 0


def test_only_misses_go_to_the_backend_once_each(tmp_path: Path) -> None:
    backend = ScriptedSampler()
    sampler = CachedSampler(backend, SampleCache(tmp_path / "c.sqlite"))
    sampler.sample(_reqs()[:1])
    out = sampler.sample([_reqs()[0], _reqs()[1], _reqs()[1]])
    assert backend.requests_seen == 2  # the hit is skipped, the duplicate is sent once
    assert [r.cached for r in out] == [True, False, False]
    assert out[1] == out[2]
    assert (sampler.hits, sampler.misses) == (1, 2)


@pytest.mark.parametrize("change", [
    {"seed": 2}, {"n": 2}, {"temperature": 0.8}, {"max_tokens": 7}, {"stop": ("x",)}, {"top_p": 0.5},
])
def test_every_parameter_is_part_of_the_key(change: dict[str, object]) -> None:
    base = SampleRequest.chat("a", temperature=0.7, seed=1)
    other = base.model_copy(update={"params": base.params.model_copy(update=change)})
    assert request_key("v", base) != request_key("v", other)


def test_model_version_and_input_are_part_of_the_key() -> None:
    req = SampleRequest.chat("a")
    assert request_key("v1", req) != request_key("v2", req)
    assert request_key("v", req) != request_key("v", SampleRequest(prompt="a"))
    assert request_key("v", req) == request_key("v", SampleRequest.chat([{"role": "user", "content": "a"}]))


def test_a_new_model_version_resamples(tmp_path: Path) -> None:
    cache = SampleCache(tmp_path / "c.sqlite")
    CachedSampler(ScriptedSampler(ScriptedOptions(responses=["x"])), cache).sample(_reqs())
    backend = ScriptedSampler(ScriptedOptions(responses=["y"]))  # another model version
    out = CachedSampler(backend, cache).sample(_reqs())
    assert backend.requests_seen == 3 and not any(r.cached for r in out)
    assert len(cache) == 6


def test_wrapper_forwards_backend_attributes(tmp_path: Path) -> None:
    backend = ScriptedSampler()
    sampler = CachedSampler(backend, SampleCache(tmp_path / "c.sqlite"))
    assert sampler.name == "scripted" and sampler.resources == backend.resources
    assert sampler.model_version_for(None) == backend.model_version


class Unversioned:
    model_version = "fixed"  # a sampler with one version and no model_version_for(adapter)


def test_samplers_without_versions_or_adapters_are_refused() -> None:
    with pytest.raises(TypeError, match="does not serve adapters"):
        version_of(Unversioned(), "some-adapter")
    with pytest.raises(TypeError, match="cannot be cached"):
        version_of(object(), None)


def test_greedy_requests_ignore_the_seed_sampled_ones_do_not(tmp_path: Path) -> None:
    greedy = [SampleRequest.chat("a", temperature=0.0, seed=s) for s in (1, 2, None)]
    assert len({request_key("v", r) for r in greedy}) == 1
    sampled = [SampleRequest.chat("a", temperature=0.7, seed=s) for s in (1, 2)]
    assert request_key("v", sampled[0]) != request_key("v", sampled[1])
    backend = ScriptedSampler(script=lambda req, i: f"{req.params.seed}-{i}")
    sampler = CachedSampler(backend, SampleCache.in_run_dir(tmp_path))
    sampler.sample(greedy[:1])
    assert [r.cached for r in sampler.sample(greedy[1:])] == [True, True]  # one shared entry
    assert backend.requests_seen == 1
    assert [r.cached for r in sampler.sample(sampled)] == [False, False]  # each seed its own entry
    assert backend.requests_seen == 3
