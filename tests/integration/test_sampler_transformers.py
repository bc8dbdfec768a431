"""The ``transformers`` sampler on the real SmolLM2-135M-Instruct (alias -> GGUF -> HF dir).

The model is loaded once for the module; every test keeps max_tokens small. LoRA adapters are
made here with random (non-zero) weights so that they visibly change the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from engine.sampling.cache import CachedSampler, SampleCache
from engine.sampling.errors import PromptTooLongError
from engine.sampling.protocol import SampleRequest, SampleResult
from plugins.sampler_transformers import TransformersSampler

pytestmark = pytest.mark.model


@pytest.fixture(scope="session")
def sampler() -> TransformersSampler:
    return TransformersSampler().load()


@pytest.fixture(scope="session")
def adapters(sampler: TransformersSampler, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.sampling.resolver import resolve_model_path

    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(resolve_model_path("smollm2-135m-instruct"))
        cfg = LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        out = tmp_path_factory.mktemp(f"lora{seed}")
        get_peft_model(base, cfg).save_pretrained(out)
        paths.append(str(out))
    return paths


def texts(results: Sequence[SampleResult]) -> list[str]:
    return [r.completions[0].text for r in results]


QUESTIONS = ["What is the capital of France?", "Name a primary colour.", "What is 2 + 2?",
             "Say hello in Spanish.", "Write one word that rhymes with cat.", "What colour is the sky?"]


def test_greedy_chat_answer(sampler: TransformersSampler) -> None:
    [res] = sampler.sample([SampleRequest.chat("What is the capital of France?", max_tokens=16)])
    comp = res.completions[0]
    assert "Paris" in comp.text and comp.finish_reason == "stop"
    assert 0 < comp.tokens <= 16 and res.prompt_tokens > 10
    assert res.model_version == "smollm2-135m-instruct" and not res.cached


def test_batch_keeps_input_order_and_is_repeatable(sampler: TransformersSampler) -> None:
    reqs = [SampleRequest.chat(q, max_tokens=8) for q in QUESTIONS]
    reqs.append(SampleRequest(prompt="def add(a, b):\n    return", params={"max_tokens": 6}))
    first = sampler.sample(reqs)
    assert len(first) == len(reqs)
    assert "Paris" in first[0].completions[0].text and "a + b" in first[-1].completions[0].text
    assert texts(sampler.sample(reqs)) == texts(first)


def test_stop_strings_and_length_limits(sampler: TransformersSampler) -> None:
    counted, short = sampler.sample([SampleRequest.chat("Count from 1 to 10, one per line.", max_tokens=40,
                                                        stop=["5"]),
                                     SampleRequest.chat("Tell me a long story.", max_tokens=4)])
    assert "4" in counted.completions[0].text and "5" not in counted.completions[0].text
    assert counted.completions[0].finish_reason == "stop"
    assert short.completions[0].finish_reason == "length" and short.completions[0].tokens == 4


def test_seeded_sampling_is_repeatable(sampler: TransformersSampler) -> None:
    req = SampleRequest.chat("Write a line about the sea.", temperature=1.0, top_p=0.9, seed=7, n=3,
                             max_tokens=10)
    one, two = sampler.sample([req])[0], sampler.sample([req])[0]
    assert [c.text for c in one.completions] == [c.text for c in two.completions]
    assert len({c.text for c in one.completions}) > 1
    other = sampler.sample([req.model_copy(update={"params": req.params.model_copy(update={"seed": 8})})])[0]
    assert [c.text for c in other.completions] != [c.text for c in one.completions]


def test_samples_of_one_prompt_share_one_prefill(sampler: TransformersSampler,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """n samples of a request are prefilled once: the first forward sees one row per distinct prompt."""
    seen: list[tuple[int, int]] = []
    forward = type(sampler.model).forward

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(tuple(kwargs["input_ids"].shape))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(sampler.model), "forward", spy)
    reqs = [SampleRequest.chat(f"Name a colour, {i}.", n=3, temperature=0.8, max_tokens=6, seed=5)
            for i in range(2)]
    shared = sampler.sample(reqs)
    assert seen[0][0] == 2 and all(shape[0] <= 6 and shape[1] == 1 for shape in seen[1:])
    assert [len(r.completions) for r in shared] == [3, 3]
    alone = sampler.sample([SampleRequest.chat("Name a colour, 0.", n=1, temperature=0.8, max_tokens=6,
                                               seed=5 + j) for j in range(3)])
    assert [c.text for c in shared[0].completions] == [r.completions[0].text for r in alone], \
        "sample j of a shared prefill is the same draw as a lone request seeded seed + j"


def test_a_final_assistant_message_is_continued(sampler: TransformersSampler) -> None:
    req = SampleRequest.chat([{"role": "user", "content": "Is the sky blue?"},
                              {"role": "assistant", "content": "Final judgement:"}], max_tokens=3)
    text = sampler.tokenizer.decode(sampler._prompt_ids(req))
    assert text.endswith("<|im_start|>assistant\nFinal judgement:"), text[-60:]
    assert sampler.sample([req])[0].completions[0].tokens >= 1


def test_logprobs_when_asked(sampler: TransformersSampler) -> None:
    res = sampler.sample([SampleRequest.chat("What is 2 + 2?", max_tokens=6, logprobs=True),
                          SampleRequest.chat("What is 2 + 2?", max_tokens=6)])
    lps = res[0].completions[0].logprobs
    assert lps is not None and len(lps) == res[0].completions[0].tokens and all(x <= 0 for x in lps)
    assert res[1].completions[0].logprobs is None


def test_prompt_longer_than_context(sampler: TransformersSampler, monkeypatch: pytest.MonkeyPatch) -> None:
    long = SampleRequest.chat("word " * 120, max_tokens=8)
    monkeypatch.setattr(sampler, "max_context", 64)
    with pytest.raises(PromptTooLongError, match="exceeds the model context of 64 tokens"):
        sampler.sample([long])
    monkeypatch.setattr(sampler, "options", sampler.opts.model_copy(update={"truncation": "left"}))
    [res] = sampler.sample([long])
    assert res.truncated_tokens > 0 and res.prompt_tokens == 64 - 8
    assert res.completions[0].tokens > 0


def test_adapters_per_request_on_one_engine(sampler: TransformersSampler, adapters: list[str]) -> None:
    q = "What is the capital of France?"
    [alone] = sampler.sample([SampleRequest.chat(q, max_tokens=10)])
    mixed = sampler.sample([SampleRequest.chat(q, max_tokens=10, adapter=adapters[0]),
                            SampleRequest.chat(q, max_tokens=10),
                            SampleRequest.chat(q, max_tokens=10, adapter=adapters[1])])
    assert mixed[1].completions[0].text == alone.completions[0].text  # base untouched by adapters
    assert mixed[0].completions[0].text != alone.completions[0].text
    assert mixed[0].completions[0].text != mixed[2].completions[0].text
    versions = [r.model_version or "" for r in mixed]
    assert versions[1] == "smollm2-135m-instruct"
    assert versions[0].startswith("smollm2-135m-instruct+lora-") and versions[0] != versions[2]


class Spy:
    """Counts the calls that reach the real backend."""

    def __init__(self, backend: TransformersSampler) -> None:
        self.backend, self.name, self.calls = backend, backend.name, 0

    def model_version_for(self, adapter: str | None) -> str:
        return self.backend.model_version_for(adapter)

    def sample(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        self.calls += 1
        return self.backend.sample(requests)


def test_cache_repeat_makes_zero_backend_calls(sampler: TransformersSampler, tmp_path: Path) -> None:
    spy = Spy(sampler)
    cached = CachedSampler(spy, SampleCache.in_run_dir(tmp_path))  # type: ignore[arg-type]
    reqs = [SampleRequest.chat(q, max_tokens=6, temperature=0.8, seed=3) for q in QUESTIONS[:3]]
    first = cached.sample(reqs)
    again = CachedSampler(spy, SampleCache.in_run_dir(tmp_path)).sample(reqs)  # type: ignore[arg-type]
    assert spy.calls == 1
    assert all(r.cached for r in again) and texts(again) == texts(first)


def test_least_recently_used_adapters_are_unloaded(adapters: list[str]) -> None:
    from plugins.sampler_transformers import TransformersOptions

    small = TransformersSampler(TransformersOptions(max_adapters=1)).load()
    q = "What is the capital of France?"
    first = small.sample([SampleRequest.chat(q, max_tokens=6, adapter=adapters[0])])
    small.sample([SampleRequest.chat(q, max_tokens=6, adapter=adapters[1])])
    assert len(small._peft.peft_config) == 1, "the first adapter was unloaded"
    again = small.sample([SampleRequest.chat(q, max_tokens=6, adapter=adapters[0])])
    assert texts(again) == texts(first), "an unloaded adapter loads again, the same"


def test_repetition_penalty_matches_transformers_generate() -> None:
    """Greedy decoding with a repetition penalty gives the tokens transformers' own generate gives
    with its RepetitionPenaltyLogitsProcessor (prompt and output tokens penalized), and differs from
    decoding without it; a row without a penalty in the same batch is left as it was.

    In float32: in bfloat16 a batch of two and a batch of one run different kernels whose rounding
    differs by CPU (DESIGN.md), and a near-tie among the penalized logits then flips a greedy token
    on one machine and not on another (seen on an AVX-512 bf16 CPU without AMX)."""
    import torch

    from plugins.sampler_transformers import TransformersOptions

    sampler = TransformersSampler(TransformersOptions(dtype="float32")).load()
    prompt = "List the days of the week, then list them again, and again:"
    plain = SampleRequest.chat(prompt, max_tokens=40)
    penalized = SampleRequest.chat(prompt, max_tokens=40, repetition_penalty=1.5)
    both = sampler.sample([plain, penalized])
    [alone] = sampler.sample([plain])
    [alone_penalized] = sampler.sample([penalized])
    assert both[0].completions[0].text == alone.completions[0].text
    assert both[1].completions[0].text == alone_penalized.completions[0].text
    ids = sampler._prompt_ids(penalized)
    with torch.inference_mode():
        ref = sampler.model.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False,
                                     repetition_penalty=1.5, pad_token_id=sampler.pad_id)
    expected = sampler.tokenizer.decode(ref[0, len(ids):], skip_special_tokens=True)
    assert alone_penalized.completions[0].text == expected
    assert both[1].completions[0].text != both[0].completions[0].text
