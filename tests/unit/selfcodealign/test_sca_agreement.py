"""CodeT-style dual agreement (``sandbox-agreement`` + ``agreed``): scores, decisions and their
reasons in the real bubblewrap sandbox, one sandbox batch per chunk, and the loop's two funnel counts."""

from __future__ import annotations

from typing import Any

import pytest

from engine.contracts import StageContext
from engine.records import Execution, Link, Response, TrainingExample
from engine.toolkit.code import single_tests
from plugins.filter_agreement import Agreed, AgreementOptions, SandboxAgreement, consensus
from plugins.filter_execution import Passed
from sandbox.protocol import Result

GOOD_A = ("def largest_even_integer(xs):\n    evens = [x for x in xs if x % 2 == 0]\n"
          "    return max(evens) if evens else None")
GOOD_B = ("def largest_even_integer(xs):\n    best = None\n    for x in xs:\n"
          "        if x % 2 == 0 and (best is None or x > best):\n            best = x\n    return best")
WRONG = "def largest_even_integer(xs):\n    return max(xs)"
TESTS_A = "assert largest_even_integer([1, 2, 3]) == 2\nassert largest_even_integer([1, 3]) is None"
TESTS_B = "assert largest_even_integer([4, 7, 10]) == 10\nassert largest_even_integer([1, 2, 3]) == 2"
TESTS_WRONG = "assert largest_even_integer([1, 2, 3]) == 3"  # agrees with its own wrong code


def resp(code: str, tests: str, i: int, task: str = "task-even") -> Response:
    return Response(text=code, tests=tests, prompt="Largest even integer of a list, or None.",
                    sample_index=i, parents=[Link(id=task)])


@pytest.fixture(scope="module")
def sandbox(bubblewrap_sandbox: Any) -> Any:
    return bubblewrap_sandbox


def agreement(ex: Execution) -> dict[str, Any]:
    return dict(ex.meta["agreement"])


def test_consensus_scores_by_hand() -> None:
    s12, s1 = frozenset({1, 2}), frozenset({1})
    # sets: {A, B, C} pass {1, 2}: 3 x 2 = 6; D passes {1}: 1 x 1; E passes nothing: 0
    assert consensus([s12, s12, s1, s12, frozenset()]) == [(3, 2, 6), (3, 2, 6), (1, 1, 1), (3, 2, 6),
                                                           (1, 0, 0)]
    assert consensus([]) == []


def test_single_tests_split_asserts_and_replay_setup() -> None:
    assert single_tests("assert f(1) == 2\nassert f([1,2]) == 3") == ["assert f(1) == 2",
                                                                     "assert f([1, 2]) == 3"]
    units = single_tests("s = Stack()\ns.push(1)\nassert s.pop() == 1\nassert s.size() == 0")
    assert units[0] == "s = Stack()\ns.push(1)\nassert s.pop() == 1"
    assert units[1].startswith("s = Stack()\ns.push(1)\ntry:\n    s.pop() == 1\n") and units[1].endswith(
        "assert s.size() == 0"), "the earlier assert's side effect is replayed, its failure ignored"
    assert single_tests("def test_x():\n    assert f()") == ["def test_x():\n    assert f()\ntest_x()"]
    assert single_tests("assert (") == []


def test_wrong_self_consistent_sample_is_dropped(sandbox: Any) -> None:
    samples = [resp(GOOD_A, TESTS_A, 0), resp(GOOD_B, TESTS_B, 1), resp(WRONG, TESTS_WRONG, 2)]
    out = SandboxAgreement(context=StageContext(sandbox=sandbox)).generate(samples)
    assert [e.status for e in out] == ["passed"] * 3, "each passes its own tests"
    assert [e.parent_ids("tests") for e in out] == [[r.id] for r in samples]
    assert Passed().filter(out) == out, "own-tests mode keeps the wrong one"
    assert Agreed().filter(out) == out[:2], "dual agreement drops it"
    # pool: u0 [1,2,3]==2 (A and B), u1 [1,3] is None (A), u2 [4,7,10]==10 (B), u3 [1,2,3]==3 (wrong)
    # A and B pass {u0, u1, u2}: 2 x 3 = 6; the wrong one passes {u2, u3}: 1 x 2 = 2
    a, b, w = (agreement(e) for e in out)
    assert (a["score"], a["consensus_size"], a["consensus_tests"], a["top_score"]) == (6, 2, 3, 6)
    # A's tests from others: u0 and u2 (B), u3 (the wrong one, which A fails)
    assert (a["own_passed"], a["own_tests"], a["other_passed"], a["other_tests"]) == (2, 2, 2, 3)
    assert (b["own_passed"], b["own_tests"], b["other_passed"], b["other_tests"]) == (2, 2, 2, 3)
    assert a["pooled_tests"] == 4 and a["kept"] and b["kept"] and a["reason"] == "kept"
    assert (w["score"], w["own_passed"], w["own_tests"]) == (2, 1, 1)
    assert (w["other_passed"], w["other_tests"]) == (1, 3), "of A's and B's tests it passes only u2"
    assert not w["kept"] and w["reason"] == "outside the top consensus set (score 2 < 6)"
    strict = SandboxAgreement(AgreementOptions(min_other_tests=2), StageContext(sandbox=sandbox))
    w2 = agreement(strict.generate(samples)[2])
    assert w2["reason"] == "passes 1 of 3 tests of other samples (needs 2)"


def test_single_sample_has_no_other_tests(sandbox: Any) -> None:
    alone = resp(GOOD_A, TESTS_A, 0, task="task-alone")
    (ex,) = SandboxAgreement(context=StageContext(sandbox=sandbox)).generate([alone])
    info = agreement(ex)
    assert ex.status == "passed" and not info["kept"] and Agreed().filter([ex]) == []
    assert info["reason"] == "no tests written by other samples of the task" and info["other_tests"] == 0
    lax = SandboxAgreement(AgreementOptions(min_other_tests=0), StageContext(sandbox=sandbox))
    info = agreement(lax.generate([alone])[0])
    assert info["kept"] and info["score"] == 2, "1 solution x its 2 tests"


def test_duplicates_are_one_author() -> None:
    box = Counting()
    same = [resp(GOOD_A, TESTS_A, i) for i in range(2)]
    out = SandboxAgreement(context=StageContext(sandbox=box)).generate(same)
    assert [agreement(e)["other_tests"] for e in out] == [0, 0], "identical code: no independent tests"
    loose = SandboxAgreement(AgreementOptions(distinct_authors=False), StageContext(sandbox=box))
    out = loose.generate(same)
    assert [agreement(e)["other_passed"] for e in out] == [2, 2] and all(agreement(e)["kept"] for e in out)


def test_a_test_that_cannot_be_a_function_body_is_left_out() -> None:
    box = Counting()
    star = resp(GOOD_A, "from math import *\nassert largest_even_integer([2]) == 2", 0)
    out = SandboxAgreement(context=StageContext(sandbox=box)).generate([star, resp(GOOD_B, TESTS_B, 1)])
    assert [(agreement(e)["own_tests"], agreement(e)["pooled_tests"]) for e in out] == [(0, 2), (2, 2)]


class Counting:
    """A sandbox double that counts batches and jobs and passes everything."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def execute(self, jobs: list[Any]) -> list[Result]:
        self.batches.append(len(jobs))
        return [Result(status="passed", n_tests=1) for _ in jobs]


def test_one_sandbox_batch_per_chunk() -> None:
    box = Counting()
    chunk = [resp(GOOD_A, TESTS_A, 0), resp(GOOD_B, TESTS_B, 1), resp(WRONG, TESTS_WRONG, 2),
             resp(GOOD_A, TESTS_A, 0, task="task-2"), resp("", TESTS_A, 1, task="task-2")]
    out = SandboxAgreement(context=StageContext(sandbox=box)).generate(chunk)
    # 4 own-tests jobs (two identical: run once) and 4 pooled jobs, one per solution, in one call
    assert box.batches == [7]
    assert out[4].status == "error" and agreement(out[4])["reason"] == "no code"


SCRIPT_ANSWERS = [  # sample 0 is wrong but agrees with its own test; 1 and 2 are right
    "string reversal, slicing\n```python\ndef rev(s):\n    return s\n```\n"
    "```python\nassert rev('ab') == 'ab'\n```",
    "string reversal, slicing\n```python\ndef rev(s):\n    return s[::-1]\n```\n"
    "```python\nassert rev('ab') == 'ba'\nassert rev('') == ''\n```",
    "string reversal, slicing\n```python\ndef rev(s):\n    return ''.join(reversed(s))\n```\n"
    "```python\nassert rev('abc') == 'cba'\n```",
]


@pytest.mark.parametrize("mode", ["dual-agreement", "own-tests"])
def test_loop_funnel_shows_both_counts(run_loop: Any, mode: str) -> None:
    from sandbox.bubblewrap import probe

    if (why := probe()) is not None:
        pytest.skip(f"bubblewrap unavailable here: {why}")
    config = {"loop": {"name": "selfcodealign", "options": {"mode": mode}}, "iterations": 1,
              "sandbox": {"name": "bubblewrap", "options": {"concurrency": 1, "disk_mb": 16}},
              "stages": {"seeds": {"options": {"count": 2}}, "responses": {"options": {"n": 3}}}}
    result = run_loop(config, script=lambda request, i: SCRIPT_ANSWERS[i % 3])
    funnel = result.funnel(1)
    assert (funnel["responses"], funnel["execute"], funnel["passed"], funnel["agreed"]) == (6, 6, 6, 4)
    executions = [e for e in result.records("execution", 1) if isinstance(e, Execution)]
    kept = sorted(e.meta["agreement"]["kept"] for e in executions)
    assert kept == [False] * 2 + [True] * 4
    (example,) = [e for e in result.records("training_example", 1) if isinstance(e, TrainingExample)]
    trained = example.messages[1]["content"]
    assert ("return s\n" in trained) == (mode == "own-tests"), trained
