"""The ``scripted`` sampler: canned completions, no model. For tests, demos and plugin authors.

What it is: a deterministic sampler that answers each request from a script (a list of texts
cycled in order, or a function of the prompt), counting its calls so tests can prove that a
cache avoided them. What it is not: a model; it never looks at weights.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Resources, Stage
from engine.sampling.protocol import Completion, SampleRequest, SampleResult


class ScriptedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    responses: list[str] = Field(default_factory=lambda: ["Yes. The answer is 42."],
                                 description="texts handed out in turn (cycled)")
    echo: bool = Field(False, description="answer with the last user message instead")
    delay_s: float = Field(0.0, ge=0.0, description="sleep this long per batch (latency stand-in)")
    seconds_per_token: float = Field(
        0.0, ge=0.0, description="also sleep this long per generated token (a calibrated decode cost: "
                                 "a replica's throughput without using a core; bench/scale)")
    max_tokens: bool = Field(False, description="honour each request's max_tokens: a longer text is cut "
                             "to that many words, finish_reason 'length' (a stand-in for a real limit)")
    order: Literal["cycle", "hash"] = Field(
        "cycle", description="cycle: texts in turn; hash: picked by (prompt, sample index, seed), "
                             "so the same request always gets the same text, across processes")


class ScriptedSampler(Stage[ScriptedOptions]):
    """Hands out canned texts in turn; ``script`` (a callable) overrides them in tests."""

    kind = "sampler"
    name = "scripted"
    resources: ClassVar[Resources] = Resources(num_cpus=0.1)

    def __init__(self, options: ScriptedOptions | None = None, context: object = None,
                 script: Callable[[SampleRequest, int], str] | None = None) -> None:
        super().__init__(options)
        self.script = script
        self.calls = 0
        self.requests_seen = 0
        self._turn = 0

    @property
    def model_version(self) -> str:
        return "scripted-" + hashlib.sha256("\x00".join(self.options.responses).encode()).hexdigest()[:12]

    def model_version_for(self, adapter: str | None) -> str:
        """The scripted texts ignore weights, but a loop with a trainer hands this sampler its new
        adapters; each adapter gets its own version so that cached samples never cross: the content
        hash of an adapter directory (as the real samplers; a copy elsewhere is the same version),
        a hash of the name otherwise."""
        if adapter is None:
            return self.model_version
        from engine.sampling.resolver import adapter_hash

        return f"{self.model_version}+{adapter_hash(adapter)}"

    def _text(self, request: SampleRequest, i: int) -> str:
        opts = self.options
        if self.script is not None:
            return self.script(request, i)
        if opts.echo:
            return request.messages[-1][1] if request.messages else request.prompt or ""
        if opts.order == "hash":
            key = f"{request.messages or request.prompt}|{i}|{request.params.seed}".encode()
            return opts.responses[int(hashlib.sha256(key).hexdigest(), 16) % len(opts.responses)]
        text = opts.responses[self._turn % len(opts.responses)]
        self._turn += 1
        return text

    def sample(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        self.calls += 1
        self.requests_seen += len(requests)
        if self.options.delay_s:
            time.sleep(self.options.delay_s)
        started = time.perf_counter()
        out = []
        tokens = 0
        for req in requests:
            comps = []
            for i in range(req.params.n):
                text, reason = self._text(req, i), "stop"
                if self.options.max_tokens and len(words := text.split(" ")) > req.params.max_tokens:
                    text, reason = " ".join(words[:req.params.max_tokens]), "length"
                comps.append(Completion(text=text, tokens=len(text.split()), finish_reason=reason))
                tokens += comps[-1].tokens
            out.append(SampleResult(completions=comps, model_version=self.model_version_for(req.adapter)))
        if self.options.seconds_per_token:  # a batch costs its tokens x this (one sleep, less the work done)
            time.sleep(max(0.0, tokens * self.options.seconds_per_token - (time.perf_counter() - started)))
        return out


@hookimpl
def register_samplers() -> list[type]:
    return [ScriptedSampler]
