"""sandbox-exec + passed, and the humaneval evaluator, in the real bubblewrap sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from engine.contracts import StageContext
from engine.records import Execution, Link, Response
from engine.toolkit.humaneval import candidate_program, load_problems
from plugins.evaluator_humaneval import HumanEval, HumanEvalOptions, pass_at_k
from plugins.filter_execution import Passed, PassedOptions, SandboxExec
from plugins.sampler_scripted import ScriptedSampler
from plugins.sandbox_local import BubblewrapSandbox
from sandbox.protocol import Result


@pytest.fixture(scope="module")
def sandbox(bubblewrap_sandbox: Any) -> Any:
    return bubblewrap_sandbox


class Counting:
    """A sandbox double that counts batches and jobs and passes everything."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def execute(self, jobs):
        self.batches.append(len(jobs))
        return [Result(status="passed", n_tests=1) for _ in jobs]


def resp(text: str, tests: str, i: int = 0) -> Response:
    return Response(text=text, tests=tests, prompt="p", sample_index=i, parents=[Link(id="task-1")])


def test_one_batch_and_cache_by_code() -> None:
    box = Counting()
    same = [resp("def f():\n    return 1", "assert f() == 1", i) for i in range(3)]
    stage = SandboxExec(context=StageContext(sandbox=box))
    out = stage.generate(same + [resp("", "assert 1"), resp("x = 1", "")])
    assert box.batches == [1], "one sandbox call; identical code and tests run once"
    assert [e.status for e in out] == ["passed"] * 3 + ["error", "error"]
    assert [e.parent_ids("tests") for e in out] == [[r.id] for r in same] + [[out[3].parents[0].id],
                                                                            [out[4].parents[0].id]]
    assert len({e.id for e in out[:3]}) == 3, "each execution is linked to its own response"


def test_executions_in_bubblewrap_and_passed_filter(sandbox: BubblewrapSandbox) -> None:
    good = resp("def add(a, b):\n    return a + b", "assert add(1, 2) == 3\nassert add(2, 2) == 4")
    wrong = resp("def add(a, b):\n    return a - b", "assert add(1, 2) == 3")
    crash = resp("import no_such_module\ndef add(a, b):\n    return a + b", "assert add(1, 2) == 3")
    loops = resp("def add(a, b):\n    while True:\n        pass", "assert add(1, 2) == 3")
    opts = SandboxExec.Options(limits={"timeout_s": 2, "cpu_s": 1})
    stage = SandboxExec(opts, StageContext(sandbox=sandbox))
    out = stage.generate([good, wrong, crash, loops])
    assert all(isinstance(e, Execution) for e in out)
    assert [e.status for e in out] == ["passed", "failed", "error", "timeout"]
    assert Passed().filter(out) == [out[0]]
    assert Passed(PassedOptions(min_tests=3)).filter(out) == []


def test_pass_at_k() -> None:
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 1, 2) == pytest.approx(1 - (4 * 3) / (5 * 4))


def test_candidate_program_takes_a_function_or_a_body() -> None:
    problem = load_problems()[2]
    whole = f"```python\n{problem['prompt']}{problem['canonical_solution']}```"
    assert candidate_program(problem, whole).count(f"def {problem['entry_point']}") == 2
    body = candidate_program(problem, "return number % 1.0")
    assert body.endswith("    return number % 1.0\n")


def test_humaneval_canonical_passes_and_wrong_fails(sandbox: BubblewrapSandbox) -> None:
    problems = load_problems(subset=3, seed=5)
    assert problems == load_problems(subset=3, seed=5) and len(problems) == 3
    by_prompt = {p["prompt"]: p for p in problems}

    def problem_of(request):
        assert request.messages[-1] == ("assistant", "```python\n") and request.params.stop == ("```",)
        return next(p for prompt, p in by_prompt.items() if prompt in request.messages[0][1])

    def canonical(request, i):  # the answer continues the opened block; the sampler stops at its fence
        p = problem_of(request)
        return f"{p['prompt']}{p['canonical_solution']}"

    def wrong(request, i):
        return f"def {problem_of(request)['entry_point']}(*args):\n    return None\n"

    ctx = StageContext(seed=0, sandbox=sandbox)
    good = HumanEval(HumanEvalOptions(subset=3, subset_seed=5, n=2, k=[1, 2, 5]), ctx).evaluate(
        ScriptedSampler(script=canonical), None)
    assert [(r.metric, r.value, r.n) for r in good] == [("pass@1", 1.0, 3), ("pass@1-n2", 1.0, 3),
                                                         ("pass@2-n2", 1.0, 3)]
    assert good[0].evaluator == "humaneval" and good[0].model_version.startswith("scripted-")
    assert sorted(good[0].details["passed"]) == sorted(p["task_id"] for p in problems)
    stage = HumanEval(HumanEvalOptions(subset=3, subset_seed=5), ctx)
    bad = stage.evaluate(ScriptedSampler(script=wrong), "v1")
    assert [(r.metric, r.value, r.model_version) for r in bad] == [("pass@1", 0.0, "v1")]


def test_humaneval_without_a_run_sandbox_builds_bubblewrap(sandbox: BubblewrapSandbox) -> None:
    (problem,) = load_problems(subset=1)

    def canonical(request, i):  # no prefix: the model opens (and closes) the block itself
        assert request.messages[-1][0] == "user" and request.params.stop == ()
        return f"Sure:\n```python\n{problem['prompt']}{problem['canonical_solution']}```"

    stage = HumanEval(HumanEvalOptions(subset=1, prefix=""), StageContext())
    out = stage.evaluate(ScriptedSampler(script=canonical), None)
    assert out[0].value == 1.0
