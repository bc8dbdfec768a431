"""engine.toolkit.sandboxing.feedback_of: what a model is told about its code's run."""

from __future__ import annotations

from engine.toolkit.sandboxing import feedback_of
from sandbox.protocol import Result


def test_feedback_names_the_failing_test_and_the_exception() -> None:
    r = Result(status="failed", failed_tests=["line 20: check(f)"],
               detail="line 20: check(f): IndexError: list index out of range", stderr="")
    text = feedback_of(r)
    assert text.startswith("Status: failed.") and "Failing test: line 20: check(f)" in text
    assert "Error: line 20: check(f): IndexError: list index out of range" in text


def test_feedback_of_a_program_that_does_not_run() -> None:
    text = feedback_of(Result(status="error", detail="program: NameError: name 'List' is not defined"))
    assert "NameError: name 'List' is not defined" in text and "Failing test" not in text


def test_feedback_is_trimmed_and_passing_is_short() -> None:
    assert feedback_of(Result(status="passed")) == "All tests passed."
    long = feedback_of(Result(status="failed", stderr="x" * 5000, detail="boom"), limit=100)
    assert len(long) == 100 and long.endswith("...")
