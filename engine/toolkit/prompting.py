"""Prompting a sampler from a stage: the toolkit part for stages that talk to a model.

What it is: :class:`SamplingOptions` (the options every LLM stage shares: n, temperature, top_p,
repetition penalty, max_tokens, template, adapter by role, assistant prefix), :func:`load_template`
(a text file with ``{field}`` placeholders, swappable by a path in a stage's options), :func:`chat`
(one user turn, optionally continued by an assistant prefix), :func:`sample_chats` (whole message
lists, multi-turn, one batched sampler call; :func:`chat_requests` builds its requests) and
:func:`sample_texts` (one user prompt each, on top of it).
What it is not: a sampler; stages never know which backend answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from engine.contracts import POLICY_SAMPLER, Messages, StageContext
from engine.sampling.protocol import SampleRequest, SampleResult


class SamplingOptions(BaseModel):
    """Sampling settings of an LLM stage; ``adapter_role`` picks a LoRA adapter by role."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(1, ge=1, le=64, description="completions sampled per prompt")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature (0: greedy)")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="nucleus sampling mass")
    max_tokens: int = Field(256, ge=1, le=32768, description="new tokens per completion")
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0, description="penalty on tokens already in "
                                      "the prompt or answer (1: off; 1.1-1.3 stops a small model looping)")
    template: str | None = Field(None, description="path of a prompt template file")
    adapter_role: str | None = Field("policy", description="sample from the current adapter of this "
                                     "role (the trainer's default role is 'policy'); null: the base")
    sampler: str | None = Field(None, description="the named sampler (config `samplers`) this stage "
                                "asks, e.g. teacher; null: the policy's. Adapters apply to the policy's only")
    prefix: str = Field("", description="start every answer with this text (the model continues it; "
                                        "the text is kept), e.g. 'Final judgement:' for a small judge")


def load_template(path: str | None, default: Path) -> str:
    """Text of the template file ``path`` if given (a user's override, found by
    :func:`find_template`), else of ``default`` (the stage's template)."""
    return (find_template(path) if path else default).read_text()


def find_template(path: str) -> Path:
    """The template file ``path``, looked up from the working directory, then from configs/ like
    data files; UserError when neither has it."""
    from engine.data import CONFIGS
    from engine.errors import UserError

    for candidate in (Path(path), CONFIGS / path):
        if candidate.is_file():
            return candidate
    raise UserError(f"template file not found: {path} (looked in . and {CONFIGS})")


def chat(prompt: str, start: str = "") -> Messages:
    """One user message, plus an assistant message that the answer continues when ``start`` is set."""
    said = [{"role": "assistant", "content": start}] if start else []
    return [{"role": "user", "content": prompt}, *said]


def sample_chats(context: StageContext, stage: str, chats: Sequence[Messages], opts: SamplingOptions,
                 n: int | None = None, seed_offset: int = 0, max_tokens: int | None = None,
                 stop: Sequence[str] = (),
                 ) -> list[tuple[list[str], str | None]]:
    """Sample ``n`` (default ``opts.n``) completions for each whole chat, in ONE sampler call.

    A chat may hold any number of turns; when its last message is the assistant's, the model
    continues that text and the returned texts include it. The adapter is that of
    ``opts.adapter_role`` in the run's current model version (None: the base model). Returns
    (texts, model version) per chat, in input order.
    """
    sampler = context.require_sampler(stage, opts.sampler)
    requests = chat_requests(context, chats, opts, n=n, seed_offset=seed_offset, max_tokens=max_tokens,
                             stop=stop)
    results = sampler.sample(requests)
    context.progress(len(requests))
    return [(continued(msgs, r), r.model_version) for msgs, r in zip(chats, results, strict=True)]


def continued(chat: Messages, result: SampleResult) -> list[str]:
    """The texts of ``result``'s completions of ``chat``, each including the assistant text the chat
    ended with (the answer's start the model continued), if any."""
    start = chat[-1]["content"] if chat and chat[-1]["role"] == "assistant" else ""
    return [start + c.text for c in result.completions]


def chat_requests(context: StageContext, chats: Sequence[Messages], opts: SamplingOptions,
                  n: int | None = None, seed_offset: int = 0, max_tokens: int | None = None,
                  stop: Sequence[str] = (), logprobs: bool = False) -> list[SampleRequest]:
    """The sampler requests :func:`sample_chats` sends: one per chat, with ``opts``' settings, the
    run's seed and the adapter of ``opts.adapter_role`` (for code that needs the raw results:
    token ids and log-probabilities with ``logprobs``)."""
    policy = opts.sampler in (None, POLICY_SAMPLER)  # a teacher serves its own model, untrained here
    adapter = context.adapters.get(opts.adapter_role) if opts.adapter_role and policy else None
    return [SampleRequest.chat(list(msgs), n=n or opts.n, temperature=opts.temperature, top_p=opts.top_p,
                               repetition_penalty=opts.repetition_penalty,
                               max_tokens=max_tokens or opts.max_tokens, stop=tuple(stop),
                               seed=context.seed + seed_offset, adapter=adapter, logprobs=logprobs)
            for msgs in chats]


def sample_texts(context: StageContext, stage: str, prompts: Sequence[str], opts: SamplingOptions,
                 n: int | None = None, seed_offset: int = 0, prefixes: Sequence[str] | None = None,
                 max_tokens: int | None = None, stop: Sequence[str] = (),
                 ) -> list[tuple[list[str], str | None]]:
    """:func:`sample_chats` for one user prompt each; each answer starts with ``prefixes[i]`` when
    given (else ``opts.prefix``)."""
    starts = list(prefixes) if prefixes is not None else [opts.prefix] * len(prompts)
    if len(starts) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(starts)} prefixes")
    return sample_chats(context, stage, [chat(p, s) for p, s in zip(prompts, starts, strict=True)], opts,
                        n=n, seed_offset=seed_offset, max_tokens=max_tokens, stop=stop)
