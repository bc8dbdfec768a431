"""The transformers sampler's token draw: the fast top-p path draws exactly what a full sort and
``torch.multinomial`` draw (same token, generator advanced alike), on peaked and flat distributions."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from plugins.sampler_transformers import NUCLEUS_K, TransformersSampler  # noqa: E402


def reference_choose(logits: Any, rows: list[Any], gens: dict[int, Any]) -> Any:
    """The textbook draw: temperature, a full sort for top-p, then multinomial."""
    chosen = logits.argmax(-1)
    for i, r in enumerate(rows):
        if r.params.temperature <= 0:
            continue
        probs = torch.softmax(logits[i] / r.params.temperature, -1)
        if r.params.top_p < 1.0:
            sp, si = probs.sort(descending=True)
            sp[sp.cumsum(-1) - sp > r.params.top_p] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, si, sp)
        chosen[i] = torch.multinomial(probs, 1, generator=gens[id(r)])[0]
    return chosen


def row(temperature: float, top_p: float) -> Any:
    return SimpleNamespace(params=SimpleNamespace(temperature=temperature, top_p=top_p))


@pytest.mark.parametrize("scale", [8.0, 2.0, 0.05])  # peaked, medium, nearly flat (full-sort fallback)
def test_fast_draw_equals_sort_and_multinomial(scale: float) -> None:
    vocab, steps = 4096, 6
    rows = [row(t, p) for t in (0.0, 0.7, 1.3) for p in (1.0, 0.9, 0.5)]
    fast = {id(r): torch.Generator().manual_seed(i) for i, r in enumerate(rows)}
    slow = {id(r): torch.Generator().manual_seed(i) for i, r in enumerate(rows)}
    data = torch.Generator().manual_seed(int(scale * 100))
    for _ in range(steps):
        logits = torch.randn(len(rows), vocab, generator=data) * scale
        got = TransformersSampler._choose(torch, logits, rows, fast)
        want = reference_choose(logits, rows, slow)
        assert got.tolist() == want.tolist()
    for r in rows:  # each generator consumed the same random numbers
        assert torch.equal(fast[id(r)].get_state(), slow[id(r)].get_state())
    assert vocab > NUCLEUS_K, "the fallback path is exercised only when the vocabulary exceeds the topk"
