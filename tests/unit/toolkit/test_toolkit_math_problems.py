"""engine.toolkit.math_problems: determinism, computed answers, difficulty by level, held-out disjointness."""

from __future__ import annotations

import ast
import re
import statistics
from fractions import Fraction

import pytest

from engine.toolkit.math import is_correct
from engine.toolkit.math_problems import LEVELS, generate, held_out

EXPR = re.compile(r"[\d(][\d\s+\-*/()]*[\d)]")


def evaluate(expr: str) -> Fraction:
    """An arithmetic expression (numbers, + - * /, parentheses) evaluated exactly."""
    ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(ast.dump(node))

    return ev(ast.parse(expr, mode="eval").body)


def expression(question: str) -> str:
    match = EXPR.search(question)
    assert match, question
    return match.group(0)


def numbers(question: str) -> int:
    return len(re.findall(r"\d+", question))


@pytest.mark.parametrize("level", LEVELS)
def test_generate_is_deterministic(level: int) -> None:
    first = generate(200, level, seed=7)
    assert first == generate(200, level, seed=7)
    assert first != generate(200, level, seed=8)
    assert len(first) == 200 and {p.level for p in first} == {level}
    assert len({p.id for p in first}) == 200


@pytest.mark.parametrize("level", LEVELS)
def test_answers_are_computed_integers(level: int) -> None:
    for p in generate(300, level, seed=3):
        assert p.answer == str(int(p.answer)) and int(p.answer) >= 0, p
        assert is_correct(f"The answer is {p.answer}.", p.answer)


@pytest.mark.parametrize("level", [1, 2, 3])
def test_arithmetic_answers_recomputed_from_the_question(level: int) -> None:
    for p in generate(500, level, seed=11) + [h for h in held_out(100) if h.level == level]:
        value = evaluate(expression(p.question))
        assert value.denominator == 1 and value == int(p.answer), p


def test_levels_rise_in_operations() -> None:
    """Every number in a question is used once, so numbers - 1 is the number of operations."""
    ops = {level: statistics.mean(numbers(p.question) - 1 for p in generate(2000, level, seed=0))
           for level in LEVELS}
    assert ops[1] == 1 and ops[3] == 2 and ops[5] == 3
    assert all(ops[a] < ops[b] for a, b in zip(LEVELS, LEVELS[1:], strict=False)), ops
    assert {numbers(p.question) for p in generate(500, 4, seed=0)} == {3, 4}
    assert {numbers(p.question) for p in generate(500, 5, seed=0)} == {4}


def test_level_1_is_single_digit_addition_or_subtraction() -> None:
    for p in generate(300, 1, seed=0):
        a, op, b = expression(p.question).split()
        assert op in "+-" and 0 <= int(a) <= 9 and 0 <= int(b) <= 9


def test_word_problems_use_varied_names_and_templates() -> None:
    problems = generate(500, 4, seed=0) + generate(500, 5, seed=0)
    assert len({p.question.split()[0] for p in problems}) >= 15
    assert len({p.question for p in problems}) >= 990


def test_held_out_is_deterministic_balanced_and_distinct() -> None:
    problems = held_out(300)
    assert problems == held_out(300) and problems != held_out(300, seed=1)
    assert len({p.question for p in problems}) == 300
    assert [sum(p.level == level for p in problems) for level in LEVELS] == [60] * 5
    assert all(p.source == "procedural-held-out" for p in problems)


@pytest.mark.parametrize("level", LEVELS)
def test_held_out_never_in_training(level: int) -> None:
    held = held_out(300)
    for seed in (0, 1):
        train = generate(2000, level, seed=seed)
        assert not {p.question for p in held} & {p.question for p in train}
        if level <= 3:  # not even in other words: the expressions themselves are disjoint
            held_exprs = {expression(p.question) for p in held if p.level is not None and p.level <= 3}
            assert not held_exprs & {expression(p.question) for p in train}


def test_bad_level() -> None:
    with pytest.raises(ValueError, match="level"):
        generate(1, 6)
