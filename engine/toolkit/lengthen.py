"""Length of long-form writing: word counts, the length-following score, and clean texts.

What it is: the measures Self-Lengthen and the LongBench-Write evaluation share.
:func:`count_words` counts English words and CJK characters (LongWriter's convention);
:func:`length_score` is LongWriter's S_l for one output (100 when the output has the requested
length, falling linearly to 0 at 4x too long or at 1/3 of it); :func:`is_clean` is Self-Lengthen's
filter (ends in sentence punctuation, no repeated 13-gram); :func:`trim_to_sentence` cuts a
text back to its last full sentence; :func:`drop_lines` drops a seeded
share of a text's lines (the extender's training input).
What it is not: a tokenizer (token limits are the sampler's) or a quality judge.
"""

from __future__ import annotations

import random
import re

_WORD = re.compile(r"\b[a-zA-Z]+\b")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_END = tuple(".!?。！？…\"'”’)")


def count_words(text: str) -> int:
    """English words plus CJK characters in ``text``."""
    return len(_WORD.findall(text)) + len(_CJK.findall(text))


def length_score(requested: int, written: int) -> float:
    """LongWriter's S_l of one output: 100 * max(0, 1 - (w/r - 1)/3) when longer than requested,
    else 100 * max(0, 1 - (r/w - 1)/2); an empty output scores 0."""
    if written <= 0 or requested <= 0:
        return 0.0
    if written > requested:
        return 100.0 * max(0.0, 1.0 - (written / requested - 1.0) / 3.0)
    return 100.0 * max(0.0, 1.0 - (requested / written - 1.0) / 2.0)


def repeated_ngram(text: str, n: int = 13) -> str | None:
    """The first word n-gram that occurs twice in ``text``, or None."""
    words = text.split()
    seen: set[tuple[str, ...]] = set()
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        if gram in seen:
            return " ".join(gram)
        seen.add(gram)
    return None


def is_clean(text: str, n: int = 13) -> tuple[bool, str]:
    """(clean, reason): Self-Lengthen keeps a text that ends in sentence punctuation and repeats
    no word ``n``-gram; the reason names what failed ("" when clean)."""
    stripped = text.rstrip()
    if not stripped:
        return False, "empty"
    if not stripped.endswith(_END):
        return False, f"does not end in sentence punctuation (ends {stripped[-20:]!r})"
    if (gram := repeated_ngram(stripped, n)) is not None:
        return False, f"repeats a {n}-gram: {gram[:80]!r}"
    return True, ""


def trim_to_sentence(text: str) -> str:
    """``text`` up to the end of its last complete sentence (for a text cut by a token limit);
    the text itself when it has no sentence end."""
    ends = [m.end() for m in re.finditer(r"[.!?。！？…][\"'”’)]*(?=\s|$)", text)]
    return text[:ends[-1]] if ends else text


def drop_lines(text: str, share: float, seed: int) -> str:
    """``text`` with a seeded ``share`` of its non-blank lines dropped (at least one kept)."""
    lines = text.splitlines()
    filled = [i for i, line in enumerate(lines) if line.strip()]
    k = min(int(round(share * len(filled))), max(len(filled) - 1, 0))
    gone = set(random.Random(seed).sample(filled, k))
    return "\n".join(line for i, line in enumerate(lines) if i not in gone)
