"""Every registered sampler and sandbox honours its contract.

Samplers: one result per request, in order, ``n`` completions each, a model version, declared
resources. Sandboxes: one result per job, in input order, a pass only when the tests ran and
passed. Backends that need something this machine may lack (a vLLM install, an OpenAI endpoint)
are checked for their declarations here and exercised in their own integration tests.
"""

from __future__ import annotations

import pytest

from engine.contracts import Resources, StageContext
from engine.manager import create_plugin_manager
from engine.sampling.protocol import SampleRequest, SampleResult
from sandbox.protocol import Job, Limits

PM = create_plugin_manager(entry_points=False)
RUNNABLE_SAMPLERS = {"scripted": [], "transformers": [pytest.mark.model]}


@pytest.mark.parametrize("name", sorted(PM.stages("sampler")))
def test_sampler_declares(name: str) -> None:
    cls = PM.stage("sampler", name).cls
    assert isinstance(cls.resources, Resources)
    cls.Options()  # every sampler has usable defaults


@pytest.mark.parametrize("name", [pytest.param(n, marks=m) for n, m in RUNNABLE_SAMPLERS.items()])
def test_sampler_contract(name: str) -> None:
    info = PM.stage("sampler", name)
    sampler = info.cls(info.cls.Options(), StageContext(model_name="smollm2-135m-instruct"))
    requests = [SampleRequest.chat(f"Say the number {i}.", n=1 + i % 2, max_tokens=4, seed=i)
                for i in range(3)] + [SampleRequest(prompt="One, two,")]
    out = sampler.sample(requests)
    assert len(out) == len(requests)
    for req, res in zip(requests, out, strict=True):
        assert isinstance(res, SampleResult) and len(res.completions) == req.params.n
        assert res.model_version
    assert sampler.sample([]) == []


JOBS = [
    Job(program="def add(a, b):\n    return a + b\n", tests="assert add(1, 2) == 3\n"),
    Job(program="def add(a, b):\n    return a - b\n", tests="assert add(1, 2) == 3\n"),
    Job(program="def add(a, b) return\n", tests="assert add(1, 2) == 3\n"),
    Job(program="import os\nos._exit(0)\n", tests="assert False\n"),
    Job(program="while True: pass\n", tests="assert True\n", limits=Limits(timeout_s=1.0, cpu_s=1.0)),
]
EXPECTED = ["passed", "failed", "error", None, "timeout"]


@pytest.mark.parametrize("name", sorted(n for n in PM.stages("sandbox") if n != "e2b"))
def test_sandbox_contract(name: str) -> None:
    info = PM.stage("sandbox", name)
    sandbox = info.cls(info.cls.Options(), StageContext())
    try:
        results = sandbox.execute(JOBS)
        again = sandbox.execute(list(reversed(JOBS)))
    finally:
        sandbox.close()
    assert len(results) == len(JOBS)
    for res, want in zip(results, EXPECTED, strict=True):
        if want is None:
            assert res.status != "passed"
        else:
            assert res.status == want, (res.status, res.detail, res.stderr)
    assert [r.status for r in reversed(again)] == [r.status for r in results], "input order kept"
