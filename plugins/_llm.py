"""Helpers for the built-in stages that prompt a model (not a plugin: the name starts with _).

What it is: prompt templates (plain text files with ``{field}`` placeholders, shipped in
plugins/templates/ and swappable by a path in a stage's options), the sampling options those
stages share, and ``sample_texts`` which sends one batch to the run's sampler. What it is not:
a sampler; stages never know which backend answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from engine.contracts import StageContext
from engine.sampling.protocol import SampleRequest

TEMPLATES = Path(__file__).parent / "templates"


class SamplingOptions(BaseModel):
    """Sampling settings of an LLM stage; ``adapter_role`` picks a LoRA adapter by role."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(1, ge=1, le=64)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, le=32768)
    template: str | None = Field(None, description="path of a prompt template file")
    adapter_role: str | None = Field("policy", description="sample from the current adapter of this "
                                     "role (the trainer's default role is 'policy'); null: the base")
    prefix: str = Field("", description="start every answer with this text (the model continues it; "
                                        "the text is kept), e.g. 'Final judgement:' for a small judge")


def load_template(path: str | None, default: str) -> str:
    """Text of the template file ``path`` if given, else of plugins/templates/``default``."""
    return Path(path).read_text() if path else (TEMPLATES / default).read_text()


def chat(prompt: str, start: str = "") -> list[dict[str, str]]:
    """One user message, plus an assistant message that the answer continues when ``start`` is set."""
    said = [{"role": "assistant", "content": start}] if start else []
    return [{"role": "user", "content": prompt}, *said]


def sample_texts(context: StageContext, stage: str, prompts: Sequence[str], opts: SamplingOptions,
                 n: int | None = None, seed_offset: int = 0, prefixes: Sequence[str] | None = None,
                 max_tokens: int | None = None, stop: Sequence[str] = (),
                 ) -> list[tuple[list[str], str | None]]:
    """Sample ``n`` completions for each chat prompt; returns (texts, model_version) per prompt.

    Each answer starts with ``prefixes[i]`` when given (else ``opts.prefix``): the model continues
    that text and the returned texts include it. ``max_tokens`` and ``stop`` override the options'.
    """
    sampler = context.require_sampler(stage)
    adapter = context.adapters.get(opts.adapter_role) if opts.adapter_role else None
    starts = list(prefixes) if prefixes is not None else [opts.prefix] * len(prompts)
    if len(starts) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(starts)} prefixes")
    requests = [
        SampleRequest.chat(
            chat(p, start), n=n or opts.n, temperature=opts.temperature, top_p=opts.top_p,
            max_tokens=max_tokens or opts.max_tokens, stop=tuple(stop), seed=context.seed + seed_offset,
            adapter=adapter)
        for p, start in zip(prompts, starts, strict=True)
    ]
    results = sampler.sample(requests)
    context.progress(len(requests))
    return [([start + c.text for c in r.completions], r.model_version)
            for start, r in zip(starts, results, strict=True)]
