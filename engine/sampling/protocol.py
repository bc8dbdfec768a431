"""The sampler contract: batch generation for chat messages or raw prompts.

What it is: the request and result types every sampler backend speaks, and the ``Sampler``
protocol (one verb, ``sample``, batch-first). What it is not: a backend; the transformers, vLLM
and OpenAI backends are built-in plugins under plugins/.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.contracts import Resources


class SamplingParams(BaseModel):
    """Sampling parameters of one request. ``seed`` makes sampling repeatable where supported."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    n: int = Field(default=1, ge=1, le=1024)
    temperature: float = Field(default=0.0, ge=0.0, le=5.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=10.0, description=(
        "CTRL's penalty, as transformers and vLLM apply it: the logit of every token already in the "
        "prompt or the output is divided by it when positive, multiplied when negative (1: off)"))
    max_tokens: int = Field(default=256, ge=1)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False


class SampleRequest(BaseModel):
    """One prompt: chat ``messages`` (the chat template is applied) or a raw ``prompt``.

    A chat whose last message is the assistant's is continued from that text (the reply starts
    with it; the completion is only what follows), so a stage can put words in the model's mouth.

    ``adapter`` names a LoRA adapter directory so one engine serves several roles.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    messages: tuple[tuple[str, str], ...] | None = None
    prompt: str | None = None
    params: SamplingParams = SamplingParams()
    adapter: str | None = None

    @model_validator(mode="after")
    def _one_input(self) -> SampleRequest:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of 'messages' or 'prompt'")
        return self

    @classmethod
    def chat(cls, messages: Sequence[dict[str, str]] | str, **params: Any) -> SampleRequest:
        """Build a chat request from OpenAI-style message dicts (or one user message)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        msgs = tuple((m["role"], m["content"]) for m in messages)
        adapter = params.pop("adapter", None)
        return cls(messages=msgs, params=SamplingParams(**params), adapter=adapter)

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in (self.messages or ())]

    @property
    def continues(self) -> bool:
        """True when the last message is the assistant's: the reply continues it."""
        return bool(self.messages) and self.messages[-1][0] == "assistant"  # type: ignore[index]

    def chat_template_kwargs(self) -> dict[str, bool]:
        """``apply_chat_template`` flags: a new assistant turn, or continue the final message."""
        if self.continues:
            return {"add_generation_prompt": False, "continue_final_message": True}
        return {"add_generation_prompt": True}


class Completion(BaseModel):
    """One sampled continuation."""

    text: str
    tokens: int = 0
    finish_reason: str | None = None
    logprobs: list[float] | None = None
    token_ids: list[int] | None = None
    """The sampled token ids, where the backend reports them (with ``logprobs`` requested)."""


class SampleResult(BaseModel):
    """The ``n`` completions of one request, and the model version that made them."""

    completions: list[Completion]
    prompt_tokens: int = 0
    model_version: str | None = None
    cached: bool = False
    truncated_tokens: int = 0
    """Prompt tokens dropped from the left to fit the context (sampler option truncation='left')."""


@runtime_checkable
class Sampler(Protocol):
    """Generates completions for a batch of requests, results in input order.

    Backends also expose ``model_version_for(adapter) -> str`` (the version id records link to:
    base model plus adapter hash); engine.sampling.cache.version_of falls back to a plain
    ``model_version`` attribute for samplers without adapters.
    """

    name: ClassVar[str]
    resources: ClassVar[Resources]

    def sample(self, requests: Sequence[SampleRequest]) -> list[SampleResult]: ...
