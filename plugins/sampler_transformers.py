"""The ``transformers`` sampler: the CPU default, batched decoding with a KV cache and left padding.

What it is: one decoding loop over a whole batch of requests (chat or raw prompts, ``n`` copies
each), with per-row temperature, top-p, repetition penalty, max_tokens, stop strings and seeds,
finish reasons, optional log-probs (of the raw model distribution), LoRA adapters per request
through peft (requests grouped by adapter, one engine), finished rows dropped from the batch, and
prompts longer than the context refused or left-truncated (``truncation``). It also carries the built-in
``resolve_model`` hook. What it is not: a server, or fast on GPUs (use ``vllm`` there); greedy
outputs depend on batch composition and dtype (see DESIGN.md), so fix both within a run.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Resources, Stage, StageContext
from engine.sampling.errors import BackendMissingError, PromptTooLongError
from engine.sampling.protocol import Completion, SampleRequest, SampleResult, SamplingParams
from engine.sampling.resolver import DEFAULT_MODEL, adapter_hash, base_version, model_version
from engine.sampling.resolver import resolve_model as resolve_model  # the built-in policy hook

NUCLEUS_K = 512  # top-p candidates taken with topk before falling back to a full sort


class TransformersOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="alias, local HF directory or hub id; default: the run's "
                              "model (config model.name), else smollm2-135m-instruct")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="auto: bfloat16 where the CPU has native bf16 (or on GPU), else float32")
    batch_size: int = Field(32, ge=1, description="rows (requests x n) decoded together")
    max_context: int | None = Field(None, description="context length; default: the model's")
    truncation: Literal["error", "left"] = Field(
        "error", description="a prompt that does not fit: error, or drop its oldest tokens")
    num_threads: int | None = Field(None, description="torch CPU threads; default: torch's")
    max_adapters: int = Field(8, ge=1, le=1024, description="LoRA adapters kept loaded; the least "
                              "recently used one is unloaded past this (an RL run makes one per step)")
    cache_dir: str | None = Field(None, description="where converted models live")


@dataclass
class _Row:
    """One completion being decoded: the prompt's tokens, its parameters, and what came out."""

    req: int
    ids: list[int]
    params: SamplingParams
    seed: int
    out: list[int] = field(default_factory=list)
    logps: list[float] = field(default_factory=list)
    finish: str | None = None


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise BackendMissingError("transformers", "torch", "transformers") from exc
    return torch


class TransformersSampler(Stage[TransformersOptions]):
    """Batched generation with transformers; loads the model on first use (or ``load()``). The
    model is resolved through the run's ``resolve_model`` hooks (``context.resolve_model``)."""

    kind = "sampler"
    name = "transformers"
    resources: ClassVar[Resources] = Resources(num_cpus=2.0)
    loads_model: ClassVar[bool] = True  # validate checks that the run's model resolves

    def __init__(self, options: TransformersOptions | None = None, context: StageContext | None = None,
                 ) -> None:
        super().__init__(options, context)
        self.model: Any = None
        self.tokenizer: Any = None
        self._peft: Any = None
        self._recent: list[str] = []  # loaded adapters, least recently used first
        self.base_version = ""

    @property
    def opts(self) -> TransformersOptions:
        """The options (an older name of ``options``)."""
        return self.options

    @property
    def model_name(self) -> str:
        return self.options.model or self.context.model_name or DEFAULT_MODEL

    # -- loading --------------------------------------------------------------------------------
    def load(self) -> TransformersSampler:
        if self.model is not None:
            return self
        torch = _torch()
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise BackendMissingError("transformers", "transformers", "transformers") from exc
        from pathlib import Path

        path = self.context.resolve_model(self.model_name,
                                          Path(self.options.cache_dir) if self.options.cache_dir else None)
        if self.options.num_threads:
            torch.set_num_threads(self.options.num_threads)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self._dtype(torch))
        self.model.eval()
        self.base_version = base_version(self.model_name, path)
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen is not None else None
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(self.tokenizer.eos_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)
        ctx = getattr(self.model.config, "max_position_embeddings", 2048)
        self.max_context = self.options.max_context or int(ctx)
        return self

    def _dtype(self, torch: Any) -> Any:
        if self.options.dtype != "auto":
            return getattr(torch, self.options.dtype)
        cpu = torch.cpu
        if torch.cuda.is_available() or cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported():
            return torch.bfloat16
        return torch.float32

    def model_version_for(self, adapter: str | None) -> str:
        self.load()
        return model_version(self.base_version, adapter)

    def _model_for(self, adapter: str | None) -> tuple[Any, Any]:
        """The module to run and a context for it: peft with ``adapter`` active, or adapters off."""
        if adapter is None:
            if self._peft is None:
                return self.model, nullcontext()
            return self._peft, self._peft.disable_adapter()
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise BackendMissingError("transformers", "peft", "transformers") from exc
        key = "a" + adapter_hash(adapter)
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self.model, adapter, adapter_name=key).eval()
        elif key not in self._peft.peft_config:
            self._peft.load_adapter(adapter, adapter_name=key)
        self._peft.set_adapter(key)
        if key in self._recent:
            self._recent.remove(key)
        self._recent.append(key)
        while len(self._recent) > self.options.max_adapters:  # on-policy RL makes one per step
            self._peft.delete_adapter(self._recent.pop(0))
        return self._peft, nullcontext()

    # -- sampling -------------------------------------------------------------------------------
    def _prompt_ids(self, req: SampleRequest) -> list[int]:
        if req.messages is not None:
            text = self.tokenizer.apply_chat_template(req.message_dicts(), **req.chat_template_kwargs(),
                                                      tokenize=False)
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(self.tokenizer(req.prompt, add_special_tokens=False)["input_ids"])

    def sample(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        self.load()
        rows: dict[str | None, list[_Row]] = {}
        prompt_len, dropped = [], []
        for i, req in enumerate(requests):
            ids = self._prompt_ids(req)
            room = self.max_context - req.params.max_tokens
            cut = max(0, len(ids) - room)
            if cut and (self.options.truncation == "error" or room < 1):
                raise PromptTooLongError(i, len(ids), req.params.max_tokens, self.max_context)
            ids = ids[cut:]
            prompt_len.append(len(ids))
            dropped.append(cut)
            base_seed = req.params.seed if req.params.seed is not None else secrets.randbits(62)
            for j in range(req.params.n):
                rows.setdefault(req.adapter, []).append(_Row(i, ids, req.params, base_seed + j))
        for adapter, group in rows.items():
            module, ctx = self._model_for(adapter)
            group.sort(key=lambda r: -len(r.ids))
            with ctx:
                for k in range(0, len(group), self.options.batch_size):
                    self._decode(module, group[k:k + self.options.batch_size])
        results = [SampleResult(completions=[], prompt_tokens=prompt_len[i], truncated_tokens=dropped[i],
                                model_version=self.model_version_for(r.adapter))
                   for i, r in enumerate(requests)]
        for group in rows.values():
            for row in sorted(group, key=lambda r: r.seed):
                results[row.req].completions.append(self._completion(row))
        return results

    def _completion(self, row: _Row) -> Completion:
        text = self.tokenizer.decode(row.out, skip_special_tokens=True)
        cuts = [text.find(s) for s in row.params.stop if s in text]
        if cuts:
            text = text[:min(cuts)]
        return Completion(text=text, tokens=len(row.out), finish_reason=row.finish,
                          logprobs=row.logps if row.params.logprobs else None,
                          token_ids=list(row.out) if row.params.logprobs else None)

    def _decode(self, module: Any, rows: list[_Row]) -> None:
        """Decode ``rows`` together until each hits EOS, a stop string or its max_tokens."""
        torch = _torch()
        from transformers import DynamicCache

        # Rows with the same prompt (a request's n samples) share one prefill: the prompt is run
        # once and its KV cache, mask and positions are copied to each of its rows afterwards.
        first: dict[tuple[int, ...], int] = {}
        src = [first.setdefault(tuple(r.ids), len(first)) for r in rows]
        unique = list(first)  # distinct prompts, in the order of their first row
        width = max(len(x) for x in unique)
        ids = torch.full((len(unique), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(unique), width), dtype=torch.long)
        for i, x in enumerate(unique):
            ids[i, width - len(x):] = torch.tensor(x)
            mask[i, width - len(x):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        expand = torch.tensor(src) if len(unique) < len(rows) else None
        gens = {id(r): torch.Generator().manual_seed(r.seed) for r in rows if r.params.temperature > 0}
        tail = {id(r): max((len(s) for s in r.params.stop), default=0) + 2 for r in rows}
        active = list(rows)
        cache = DynamicCache()
        seen: Any = None  # rows x vocab: tokens already in a penalized row's prompt or output
        with torch.inference_mode():
            while active:
                out = module(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                             use_cache=True, logits_to_keep=1)
                logits = out.logits[:, -1, :].float()
                if expand is not None:  # after the shared prefill: one row per sample again
                    cache.batch_select_indices(expand)
                    logits, mask, pos, expand = logits[expand], mask[expand], pos[expand], None
                if seen is None and any(r.params.repetition_penalty != 1.0 for r in active):
                    seen, penalty = self._seen(torch, active, logits.shape[-1])
                raw = logits
                if seen is not None:  # CTRL's repetition penalty, as transformers and vLLM apply it
                    hit = torch.where(logits > 0, logits / penalty[:, None], logits * penalty[:, None])
                    logits = torch.where(seen, hit, logits)
                chosen = self._choose(torch, logits, active, gens)
                if seen is not None:
                    seen[torch.arange(len(active)), chosen] = True
                want_lp = any(r.params.logprobs for r in active)
                lps = (torch.log_softmax(raw, -1).gather(1, chosen[:, None])[:, 0].tolist()
                       if want_lp else None)
                keep = []
                for i, (r, tok) in enumerate(zip(active, chosen.tolist(), strict=True)):
                    r.out.append(tok)
                    if lps is not None:
                        r.logps.append(lps[i])
                    if tok in self.eos_ids:
                        r.finish = "stop"
                    elif r.params.stop and any(
                            s in self.tokenizer.decode(r.out[-tail[id(r)]:]) for s in r.params.stop):
                        r.finish = "stop"
                    elif len(r.out) >= r.params.max_tokens:
                        r.finish = "length"
                    else:
                        keep.append(i)
                if len(keep) < len(active):
                    if not keep:
                        break
                    idx = torch.tensor(keep)
                    cache.batch_select_indices(idx)
                    chosen, mask, pos = chosen[idx], mask[idx], pos[idx]
                    if seen is not None:
                        seen, penalty = seen[idx], penalty[idx]
                    active = [active[i] for i in keep]
                ids = chosen[:, None]
                mask = torch.cat([mask, torch.ones((len(active), 1), dtype=torch.long)], dim=1)
                pos = pos[:, -1:] + 1

    @staticmethod
    def _seen(torch: Any, rows: list[_Row], vocab: int) -> tuple[Any, Any]:
        """The tokens each row has seen (its prompt), as a rows x vocab mask, and each row's
        repetition penalty (1.0 where a row has none: its logits are left as they are)."""
        seen = torch.zeros((len(rows), vocab), dtype=torch.bool)
        for i, r in enumerate(rows):
            if r.params.repetition_penalty != 1.0:
                seen[i, torch.tensor([t for t in r.ids + r.out if t < vocab], dtype=torch.long)] = True
        return seen, torch.tensor([r.params.repetition_penalty for r in rows], dtype=torch.float32)

    @staticmethod
    def _choose(torch: Any, logits: Any, rows: list[_Row], gens: dict[int, Any]) -> Any:
        """Greedy rows take the argmax; sampled rows draw from temperature/top-p with their own seed.

        A draw is ``torch.multinomial(probs, 1, generator)`` computed the way torch computes it for one
        sample (the argmax of probs over exponential noise from the row's generator): the same token,
        the generator advanced alike, without multinomial's checks. The top-p nucleus comes from the
        top ``NUCLEUS_K`` probabilities when they already pass ``top_p`` (nearly always), which is the
        same set a full sort gives; otherwise from a full sort. Per row this is ~4 ms instead of
        ~15 ms (a sort and a multinomial over a 49k vocabulary), once per decoded token.
        """
        chosen = logits.argmax(-1)
        hot = [i for i, r in enumerate(rows) if r.params.temperature > 0]
        if not hot:
            return chosen
        temps = torch.tensor([rows[i].params.temperature for i in hot], dtype=logits.dtype)
        probs = torch.softmax(logits[hot] / temps[:, None], -1)  # one batched op for every sampled row
        vocab = probs.shape[-1]
        tops = (probs.topk(min(NUCLEUS_K, vocab), -1)
                if any(rows[i].params.top_p < 1.0 for i in hot) else None)
        for j, i in enumerate(hot):
            r, p = rows[i], probs[j]
            if r.params.top_p < 1.0:
                assert tops is not None
                sp, si = tops.values[j], tops.indices[j]
                cum = sp.cumsum(-1)
                if len(sp) < vocab and float(cum[-1]) <= r.params.top_p:
                    sp, si = p.sort(descending=True)
                    cum = sp.cumsum(-1)
                keep = cum - sp <= r.params.top_p
                p = torch.zeros_like(p).index_put_((si[keep],), sp[keep])
            noise = torch.empty_like(p).exponential_(1, generator=gens[id(r)])
            chosen[i] = (p / noise).argmax()
        return chosen


@hookimpl
def register_samplers() -> list[type]:
    return [TransformersSampler]
