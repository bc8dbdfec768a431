"""The ``extend`` generator (Self-Lengthen's Extender) on a scripted model: rounds, accept/reject
decisions and their reasons, the kept/not-kept verdict, batching, and lineage links."""

from __future__ import annotations

from typing import Any

from engine.contracts import StageContext
from engine.records import Refinement, Response, Task
from engine.sampling.protocol import SampleRequest
from plugins.generator_extend import Extend, ExtendOptions, units


def word(n: int) -> str:
    """A letters-only word unique to n (so no 13-gram repeats and every sentence counts)."""
    return "".join(chr(97 + (n // 26 ** i) % 26) for i in range(3))


def rewrite(tag: str, n: int, sentences: int) -> str:
    return " ".join(f"Expanded opening about {tag} with {word(n * 50 + k)} detail." for k in range(sentences))


def draft(tag: str, text: str | None = None) -> Response:
    task = Task(prompt=f"Write about {tag}.")
    body = text if text is not None else (f"First part on {tag}.\n\nSecond part on {tag}.\n\n"
                                          f"Third part on {tag}.\n\nFourth part on {tag}.")
    return Response(text=body, prompt=task.prompt, parents=[{"id": task.id}])  # type: ignore[list-item]


def script(requests: list[SampleRequest]) -> Any:
    def answer(req: SampleRequest, i: int) -> str:
        requests.append(req)
        user = (req.messages or ())[0][1]
        tag = next(t for t in ("GROW", "SHRINK", "DIRTY") if t in user)
        n = len(requests)
        if "Rewrite this beginning" in user:  # step 1: three paragraphs, two are kept
            if tag == "SHRINK":
                return "Short.\n\nShorter.\n\nLast paragraph, dropped."
            more = 3 + user.count("Expanded")  # a longer part gets a longer rewrite
            return f"{rewrite(tag, n, more)}\n\n{rewrite(tag, n + 100, more)}\n\nLast paragraph, dropped."
        if tag == "SHRINK":
            return ""
        return " And it goes on" if tag == "DIRTY" else f" And {word(n)} goes on and ends well."
    return answer


def extender(scripted_sampler: Any, requests: list[SampleRequest], **options: Any) -> Extend:
    ctx = StageContext(seed=1, sampler=scripted_sampler(script=script(requests)),
                       adapters={"extender": "ad-1"})
    return Extend(ExtendOptions(**options), ctx)


def test_units_fall_back_from_paragraphs_to_lines_to_sentences() -> None:
    assert units("a\n\nb\n\nc") == ["a", "b", "c"]
    assert units("a\nb") == ["a", "b"]
    assert units("One. Two! Three?") == ["One.", "Two!", "Three?"]
    assert units("   ") == []


def test_rounds_accept_longer_texts_and_keep_clean_long_ones(scripted_sampler: Any) -> None:
    requests: list[SampleRequest] = []
    stage = extender(scripted_sampler, requests, rounds=2)
    drafts = [draft("GROW"), draft("SHRINK"), draft("DIRTY"), draft("EMPTY", "")]
    out = stage.generate(drafts)
    assert len(out) == 4 and all(isinstance(r, Refinement) for r in out)
    grow, shrink, dirty, empty = out
    # one sampler call per step per round, across every text still extending (the empty one never is)
    assert stage.context.sampler is not None and stage.context.sampler.calls == 4
    assert len(requests) == 4 * 3
    second = [r for r in requests if "Rewrite this beginning" not in (r.messages or ())[0][1]]
    assert all((r.messages or ())[-1][0] == "assistant" for r in second), "step 2 continues a prefix"
    first_prefix = (second[0].messages or ())[-1][1]
    assert first_prefix.count("Expanded opening") == 6 and "dropped" not in first_prefix, "2/3 of the rewrite"
    assert all(r.adapter == "ad-1" for r in requests), "the extender adapter samples"

    assert grow.meta["kept"] and grow.meta["rounds_accepted"] == 2 and grow.meta["reason"] == ""
    assert grow.meta["words"] > 1.2 * grow.meta["draft_words"] and grow.text.endswith("ends well.")
    assert not shrink.meta["kept"] and shrink.meta["rounds_accepted"] == 0 and shrink.text == drafts[1].text
    assert "not longer than 1.2x the draft" in shrink.meta["reason"]
    assert not dirty.meta["kept"] and "sentence punctuation" in dirty.meta["reason"]
    assert not empty.meta["kept"] and empty.meta["reason"] == "empty draft"

    rounds = [r for r in stage.context.emitted if isinstance(r, Refinement)]
    assert len(rounds) == 3 * 2, "every round of every non-empty draft is in lineage"
    rejected = [r for r in rounds if not r.meta["accepted"]]
    assert len(rejected) == 2 and all(r.meta["reason"].startswith("not longer:") for r in rejected)
    grow_rounds = [r for r in rounds if "GROW" in r.text]
    assert grow_rounds[0].parent_ids("refines") == [drafts[0].id]
    assert grow_rounds[1].parent_ids("refines") == [grow_rounds[0].id], "round 2 extends round 1"
    assert grow.parent_ids("refines") == [grow_rounds[1].id] and grow.parent_ids("input") == [drafts[0].id]
    assert shrink.parent_ids("refines") == [] and shrink.parent_ids("input") == [drafts[1].id]


def test_training_chat_is_the_extend_prompt(scripted_sampler: Any) -> None:
    stage = extender(scripted_sampler, [])
    (msgs,) = stage.messages([draft("GROW")])
    assert msgs[0]["role"] == "user" and "Write about GROW." in msgs[0]["content"]
    assert "Second part on GROW." in msgs[0]["content"] and len(msgs) == 1


def test_a_cut_candidate_is_trimmed_to_its_last_sentence(scripted_sampler: Any) -> None:
    from engine.toolkit.lengthen import trim_to_sentence

    assert trim_to_sentence("One. Two is cut") == "One."
    assert trim_to_sentence('He said "go." Then it') == 'He said "go."'
    assert trim_to_sentence("no end at all") == "no end at all"

    def answer(req: SampleRequest, i: int) -> str:
        user = (req.messages or ())[0][1]
        if "Rewrite this beginning" in user:
            return "\n\n".join(f"Rich opening {word(k)} part." for k in range(3))
        return " " + " ".join(f"Then {word(100 + k)} follows." for k in range(200))  # past max_tokens

    from plugins.sampler_scripted import ScriptedOptions, ScriptedSampler

    def limited() -> ScriptedSampler:
        return ScriptedSampler(ScriptedOptions(max_tokens=True), script=answer)

    stage = Extend(ExtendOptions(rounds=1, max_tokens=60), StageContext(seed=1, sampler=limited()))
    (final,) = stage.generate([draft("GROW")])
    (round1,) = [r for r in stage.context.emitted if isinstance(r, Refinement)]
    assert round1.meta["cut"] and round1.text.endswith("follows."), "trimmed back to a full sentence"
    assert final.meta["kept"], final.meta
    untrimmed = Extend(ExtendOptions(rounds=1, max_tokens=60, trim_cut=False),
                       StageContext(seed=1, sampler=limited()))
    (raw,) = untrimmed.generate([draft("GROW")])
    assert not raw.meta["kept"] and "punctuation" in raw.meta["reason"]
