"""The Self-Lengthen loop's mechanics with a scripted model (no training here; the real model runs
in tests/integration/test_self_lengthen_model.py): self-instruct -> own verdict -> tasks with a
length -> drafts -> extension rounds -> training examples for both adapters, all in lineage."""

from __future__ import annotations

import itertools
import re
from typing import Any

from engine.records import Refinement, Response, Task, TrainingExample
from engine.sampling.protocol import SampleRequest

COUNT = itertools.count()


def word(n: int) -> str:
    return "".join(chr(97 + (n // 26 ** i) % 26) for i in range(3))


def policy(req: SampleRequest, i: int) -> str:
    user = (req.messages or ())[0][1]
    n = next(COUNT)
    if user.startswith("Here are some writing instructions"):
        return f"1. Write a long essay about topic {n}."
    if user.startswith("Here is a writing instruction"):
        topic = int(re.search(r"topic (\d+)", user).group(1))  # type: ignore[union-attr]
        return "Final judgement: " + ("Yes" if topic % 3 else "No")
    if "Rewrite this beginning" in user:
        return "\n\n".join(" ".join(f"Detail {word(n * 40 + 10 * p + k)} here." for k in range(6))
                           for p in range(3))
    if "Here is an answer to it" in user:
        return f" And {word(n)} closes it well."
    assert "Write about" in user, user
    return f"Opening {word(n)} line.\n\nMiddle {word(n + 1)} line.\n\nClosing {word(n + 2)} line."


def test_self_lengthen_iteration(run_loop: Any) -> None:
    stages = {"instruct": {"name": "self-instruct", "options": {"count": 6}}}
    result = run_loop({"loop": "self-lengthen", "iterations": 1, "stages": stages}, script=policy)
    funnel = result.funnel(1)
    assert funnel["instruct"] == 6 and funnel["suitable"] == 6
    kept = funnel["keep"]
    assert 0 < kept < 6 and funnel["tasks"] == kept == funnel["draft"] == funnel["extend"]
    tasks = [t for t in result.records("task", 1) if isinstance(t, Task) and "words" in t.meta]
    assert all(re.search(rf"Write about {t.meta['words']} words\.$", t.prompt) for t in tasks)
    assert all(t.parent_ids("judged") and t.parent_ids("input") for t in tasks)
    finals = [r for r in result.records("refinement", 1) if isinstance(r, Refinement) and "kept" in r.meta]
    rounds = [r for r in result.records("refinement", 1) if isinstance(r, Refinement) and "round" in r.meta]
    assert len(finals) == kept and len(rounds) == 3 * kept, "3 rounds per draft, each in lineage"
    # the scripted rewrite has a fixed length: round 1 lengthens the draft, rounds 2 and 3 cannot
    assert all(f.meta["kept"] and f.meta["rounds_accepted"] == 1 for f in finals), [f.meta for f in finals]
    rejected = [r for r in rounds if not r.meta["accepted"]]
    assert len(rejected) == 2 * kept and all(r.meta["reason"].startswith("not longer") for r in rejected)
    examples = [e for e in result.records("training_example", 1) if isinstance(e, TrainingExample)]
    gen = [e for e in examples if e.target_role == "generator"]
    ext = [e for e in examples if e.target_role == "extender"]
    assert len(gen) == len(ext) == kept
    drafts = {d.id: d for d in result.records("response", 1)
              if isinstance(d, Response) and d.text.startswith("Opening")}
    for e in ext:
        draft = drafts[e.parent_ids("draft")[0]]
        shown = e.messages[0]["content"]
        assert "Here is an answer to it" in shown and draft.prompt in shown
        assert sum(line in shown for line in draft.text.split("\n\n")) == 2, "a fifth of the lines dropped"
        assert e.messages[-1]["content"] in {f.text for f in finals}
    assert {e.messages[0]["content"] for e in gen} == {t.prompt for t in tasks}


def test_lineage_tree_of_a_kept_text_reads_round_by_round(run_loop: Any) -> None:
    from typer.testing import CliRunner

    from engine.cli.lineage import app

    stages = {"instruct": {"name": "self-instruct", "options": {"count": 3}}}
    result = run_loop({"loop": "self-lengthen", "iterations": 1, "stages": stages}, script=policy)
    final = next(r for r in result.records("refinement", 1)
                 if isinstance(r, Refinement) and r.meta.get("kept"))
    out = CliRunner().invoke(app, ["tree", final.id, "--store", str(result.run_dir)], terminal_width=240)
    assert out.exit_code == 0, out.output
    text = out.output
    assert "kept" in text and "round 1: accepted" in text, text
    assert "response resp-" in text and "task task-" in text, "the draft and the instruction"
    assert "'Opening" in text and "'Write a long" in text
    assert "critique" in text, "the suitability verdict that kept the instruction"
