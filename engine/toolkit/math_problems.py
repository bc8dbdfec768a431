"""Procedural math problems with difficulty levels 1..5: training data and a held-out evaluation set.

What it is: :func:`generate` (``n`` problems of one level, deterministic for a seed) and
:func:`held_out` (an evaluation set spread evenly over the levels). Levels, by operations per problem
(every number in a question is used exactly once, so a question with k numbers takes k - 1 steps):

| level | problems | operations |
| --- | --- | --- |
| 1 | single-digit addition or subtraction (``What is 7 - 3?``) | 1 |
| 2 | two-digit addition or subtraction, single-digit * or exact /, or a chain of three small numbers | 1-2 |
| 3 | arithmetic mixing * or / with + or -, parentheses included | 2 |
| 4 | word problems (people, items, prices, shares) | 2-3 |
| 5 | word problems, every one with a * and an exact / | 3 |

Answers are non-negative integers computed by the generator from the numbers it drew (divisions are
exact by construction) and stored as digits in :class:`~engine.toolkit.math.MathProblem`.
Disjointness: each problem has a canonical key (the expression, or the template and its numbers;
names, objects and phrasing left out) and a stable hash of it puts about one in five keys in the
held-out share. :func:`generate` keeps only the rest and :func:`held_out` only that share, drawing
from its own seed namespace, so no held-out problem appears in training data under any seed, in any
wording. Level 1 has 155 expressions (26 of them held out), so its draws repeat. What it is not: a
GSM8K substitute; the GSM8K sample is :func:`engine.toolkit.math.gsm8k_cases`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from engine.toolkit.math import MathProblem

LEVELS = (1, 2, 3, 4, 5)
HELD_OUT_SHARE = 5  # one key in five is held out
SOURCE = "procedural"

NAMES = ("Ava", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hiro", "Isla", "Jamal", "Kofi",
         "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor",
         "Wen", "Yara", "Zoe")
ITEMS = ("apples", "marbles", "stickers", "cookies", "pencils", "cards", "books", "eggs", "shells",
         "beads", "stamps", "oranges", "balloons", "muffins", "coins")
GOODS = ("notebooks", "pens", "mugs", "tickets", "plants", "candles", "puzzles", "scarves", "lamps",
         "kites")
BAKED = ("cookies", "muffins", "cupcakes", "rolls", "brownies", "tarts")
THINGS = ("backpack", "board game", "umbrella", "water bottle", "calendar", "poster")
PHRASES = ("What is {e}?", "Compute {e}.", "Calculate {e}.", "Find the value of {e}.", "{e} = ?")

Drawn = tuple[str, int, tuple[object, ...]]  # question, answer, canonical key


def _arith(rng: random.Random, expr: str, answer: int) -> Drawn:
    return rng.choice(PHRASES).format(e=expr), answer, ("arith", expr)


def _level1(rng: random.Random) -> Drawn:
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    if rng.random() < 0.5:
        return _arith(rng, f"{a} + {b}", a + b)
    a, b = max(a, b), min(a, b)
    return _arith(rng, f"{a} - {b}", a - b)


def _level2(rng: random.Random) -> Drawn:
    kind = rng.randrange(6)
    if kind < 3:  # a chain of three numbers, half the time
        a, b, c = rng.randint(2, 20), rng.randint(2, 20), rng.randint(1, 9)
        if a + b - c >= 0 and rng.random() < 0.5:
            return _arith(rng, f"{a} + {b} - {c}", a + b - c)
        return _arith(rng, f"{a} + {b} + {c}", a + b + c)
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    if kind == 3:
        return _arith(rng, f"{a} + {b}", a + b)
    if kind == 4:
        return _arith(rng, f"{max(a, b)} - {min(a, b)}", abs(a - b))
    x, y = rng.randint(2, 9), rng.randint(2, 9)
    return _arith(rng, f"{x} * {y}", x * y) if rng.random() < 0.5 else _arith(rng, f"{x * y} / {x}", y)


def _level3(rng: random.Random) -> Drawn:
    a, b, c = rng.randint(2, 30), rng.randint(2, 30), rng.randint(2, 9)
    q = rng.randint(2, 12)
    forms: list[tuple[str, int]] = [
        (f"({a} + {b}) * {c}", (a + b) * c),
        (f"{a} * {c} + {b}", a * c + b),
        (f"{q * c} / {c} + {a}", q + a),
        (f"{a} + {b} * {c}", a + b * c),
        (f"({q * c + b} - {b}) / {c}", q),
    ]
    if a * c >= b:
        forms.append((f"{a} * {c} - {b}", a * c - b))
    if a > b:
        forms.append((f"({a} - {b}) * {c}", (a - b) * c))
    return _arith(rng, *rng.choice(forms))


# -- word problems: each template draws its numbers, computes the answer, and writes the story --

def _shop_total(rng: random.Random, who: list[str], item: str) -> Drawn:
    a, p, c = rng.randint(2, 12), rng.randint(2, 25), rng.randint(5, 60)
    thing = rng.choice(THINGS)
    return (f"{who[0]} buys {a} {rng.choice(GOODS)} at ${p} each and a {thing} for ${c}. "
            f"How many dollars does {who[0]} spend in all?", a * p + c, ("shop_total", a, p, c))


def _boxes_left(rng: random.Random, who: list[str], item: str) -> Drawn:
    per, b = rng.randint(4, 24), rng.randint(2, 12)
    g = rng.randint(1, per * b - 1)
    return (f"A box holds {per} {item}. {who[0]} fills {b} boxes and then gives away {g} {item}. "
            f"How many {item} does {who[0]} have left?", per * b - g, ("boxes_left", per, b, g))


def _shares_plus(rng: random.Random, who: list[str], item: str) -> Drawn:
    k, q, g = rng.randint(2, 9), rng.randint(2, 15), rng.randint(1, 20)
    return (f"{who[0]} has {k * q} {item} and shares them equally among {k} friends. Each friend then "
            f"finds {g} more. How many {item} does each friend have now?", q + g, ("shares_plus", k, q, g))


def _more_fewer(rng: random.Random, who: list[str], item: str) -> Drawn:
    a, b = rng.randint(5, 60), rng.randint(2, 40)
    c = rng.randint(1, a + b - 1)
    return (f"{who[0]} has {a} {item}. {who[1]} has {b} more {item} than {who[0]}, and {who[2]} has "
            f"{c} fewer than {who[1]}. How many {item} does {who[2]} have?", a + b - c,
            ("more_fewer", a, b, c))


def _change(rng: random.Random, who: list[str], item: str) -> Drawn:
    a, p = rng.randint(2, 9), rng.randint(2, 15)
    bill = rng.choice([b for b in (5, 10, 20, 50, 100) if a * p < 4 * b][:2])  # a few bills, not dozens
    bills = (a * p) // bill + rng.randint(1, 2)
    return (f"{who[0]} buys {a} {rng.choice(GOODS)} at ${p} each and pays with {bills} ${bill} bills. "
            f"How many dollars of change does {who[0]} get?", bills * bill - a * p,
            ("change", a, p, bills, bill))


def _savings(rng: random.Random, who: list[str], item: str) -> Drawn:
    w, n = rng.randint(5, 40), rng.randint(2, 10)
    s, g = rng.randint(1, w * n - 1), rng.randint(5, 50)
    return (f"{who[0]} saves ${w} a week for {n} weeks, then spends ${s} and gets ${g} as a gift. "
            f"How many dollars does {who[0]} have now?", w * n - s + g, ("savings", w, n, s, g))


def _trays(rng: random.Random, who: list[str], item: str) -> Drawn:
    x, y, k = rng.randint(2, 9), rng.randint(6, 24), rng.randint(2, 9)
    total, rest = x * y, x * y % k
    low = 0 if rest else 1  # keeps at least one; each friend gets at least one
    g = rest + k * rng.randint(low, min(low + 2, (total - rest) // k - 1))
    item = rng.choice(BAKED)
    return (f"{who[0]} bakes {x} trays of {item} with {y} on each tray. {who[0]} keeps {g} and splits the "
            f"rest equally among {k} friends. How many {item} does each friend get?", (total - g) // k,
            ("trays", x, y, g, k))


def _wages(rng: random.Random, who: list[str], item: str) -> Drawn:
    w, h, d = rng.randint(8, 30), rng.randint(2, 8), rng.randint(2, 7)
    k = rng.choice([k for k in range(2, 10) if (w * h * d) % k == 0])
    return (f"{who[0]} earns ${w} an hour, works {h} hours a day for {d} days, and splits the money "
            f"equally among {k} people. How many dollars does each person get?", w * h * d // k,
            ("wages", w, h, d, k))


def _group_cost(rng: random.Random, who: list[str], item: str) -> Drawn:
    k, a, p = rng.randint(2, 8), rng.randint(2, 12), rng.randint(3, 30)
    c = rng.randint(1, 60)
    c += (-(a * p + c)) % k  # the total splits exactly
    return (f"{k} friends buy {a} {rng.choice(GOODS)} at ${p} each and a {rng.choice(THINGS)} for ${c}. "
            f"They share the cost equally. How many dollars does each friend pay?", (a * p + c) // k,
            ("group_cost", k, a, p, c))


def _reading(rng: random.Random, who: list[str], item: str) -> Drawn:
    r, d, k, q = rng.randint(5, 40), rng.randint(2, 9), rng.randint(2, 9), rng.randint(3, 30)
    pages = r * d + k * q
    return (f"A book has {pages} pages. {who[0]} reads {r} pages a day for {d} days, then reads the rest "
            f"in equal parts over {k} more days. How many pages a day is that?", q,
            ("reading", pages, r, d, k))


Template = Callable[[random.Random, list[str], str], Drawn]
WORD_TEMPLATES: dict[int, tuple[Template, ...]] = {
    4: (_shop_total, _boxes_left, _shares_plus, _more_fewer, _change, _savings),
    5: (_trays, _wages, _group_cost, _reading),
}


def _word(level: int) -> Callable[[random.Random], Drawn]:
    def draw(rng: random.Random) -> Drawn:
        template = rng.choice(WORD_TEMPLATES[level])
        return template(rng, rng.sample(NAMES, 3), rng.choice(ITEMS))
    return draw


DRAWS: dict[int, Callable[[random.Random], Drawn]] = {
    1: _level1, 2: _level2, 3: _level3, 4: _word(4), 5: _word(5)}


def is_held_out(key: tuple[object, ...]) -> bool:
    """Whether a problem's canonical key is in the held-out share (stable across runs and machines)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % HELD_OUT_SHARE == 0


def _draw(rng: random.Random, level: int, *, held: bool) -> tuple[str, int]:
    while True:
        question, answer, key = DRAWS[level](rng)
        if is_held_out(key) == held:
            assert answer >= 0, (question, answer)
            return question, answer


def _check_level(level: int) -> None:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")


def generate(n: int, level: int, seed: int = 0) -> list[MathProblem]:
    """``n`` training problems of ``level`` (1..5), the same for the same seed; none held out."""
    _check_level(level)
    rng = random.Random(f"autodidact-math/train/{level}/{seed}")
    problems = []
    for i in range(n):
        question, answer = _draw(rng, level, held=False)
        problems.append(MathProblem(question=question, answer=str(answer), level=level, source=SOURCE,
                                    id=f"train-L{level}-s{seed}-{i}"))
    return problems


def held_out(n: int = 300, seed: int = 0) -> list[MathProblem]:
    """``n`` evaluation problems, the levels in turn (1, 2, ..., 5, 1, ...), distinct questions as
    far as a level's held-out share allows (level 1 repeats past its 130 texts); never in
    :func:`generate`'s output for any seed."""
    rngs = {level: random.Random(f"autodidact-math/held-out/{level}/{seed}") for level in LEVELS}
    seen: set[str] = set()
    problems = []
    for i in range(n):
        level = LEVELS[i % len(LEVELS)]
        for _ in range(200):
            question, answer = _draw(rngs[level], level, held=True)
            if question not in seen:
                break
        seen.add(question)
        problems.append(MathProblem(question=question, answer=str(answer), level=level,
                                    source=f"{SOURCE}-held-out", id=f"held-out-L{level}-s{seed}-{i}"))
    return problems
