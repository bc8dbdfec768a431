"""The ``openai`` sampler: any OpenAI-compatible endpoint (``vllm serve``, llama.cpp, hosted APIs).

What it is: one HTTP request per sample request (``n`` completions each) to ``/chat/completions``
(chat messages) or ``/completions`` (raw prompts), at most ``max_concurrency`` in flight, retried
with exponential backoff on connection errors, 408/409/429 and 5xx (honouring ``Retry-After``).
An adapter is sent as the served model name (``adapters`` maps adapter paths to served names).
What it is not: a server or a client for anything beyond those two endpoints; the server's own
batching does the heavy lifting. Per-completion token counts for n > 1 come from log-probs when
asked for them, else from the usage total split evenly. A reply that breaks the wire format (not
JSON, no ``choices``, a content that is not a string) raises SamplerRequestError naming what was
wrong, without retrying.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Resources, Stage, StageContext
from engine.sampling.errors import BackendMissingError, SamplerRequestError
from engine.sampling.protocol import Completion, SampleRequest, SampleResult
from engine.sampling.resolver import DEFAULT_MODEL, model_version
from engine.sampling.wire import CHAT_PATH, COMPLETIONS_PATH

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: str = Field("http://127.0.0.1:8000/v1", description="endpoint root, ending in /v1")
    model: str | None = Field(None, description="the served model name; default: the run's model")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key")
    max_concurrency: int = Field(8, ge=1, description="requests in flight at once")
    retries: int = Field(4, ge=0, description="retries of one request on transient failures")
    backoff_s: float = Field(0.5, ge=0.0, description="first retry delay, doubled each retry")
    timeout_s: float = Field(300.0, gt=0.0)
    adapters: dict[str, str] = Field(default_factory=dict, description="adapter path -> served name")
    version: str | None = Field(None, description="base model version id; default openai:<model>")


class OpenAISampler(Stage[OpenAIOptions]):
    """Sends each request to an OpenAI-compatible server; results in input order."""

    kind = "sampler"
    name = "openai"
    resources: ClassVar[Resources] = Resources(num_cpus=0.5)

    @classmethod
    def preflight(cls, options: OpenAIOptions) -> list[str]:
        import importlib.util

        missing = importlib.util.find_spec("httpx") is None
        return [str(BackendMissingError("openai", "httpx", "openai"))] if missing else []

    def __init__(self, options: OpenAIOptions | None = None, context: StageContext | None = None) -> None:
        super().__init__(options, context)
        self._client: Any = None
        self.calls = 0

    @property
    def opts(self) -> OpenAIOptions:
        """The options (an older name of ``options``)."""
        return self.options

    @property
    def model_name(self) -> str:
        return self.options.model or self.context.model_name or DEFAULT_MODEL

    def client(self) -> Any:
        if self._client is None:
            try:
                import httpx
            except ImportError as exc:
                raise BackendMissingError("openai", "httpx", "openai") from exc
            key = os.environ.get(self.options.api_key_env, "")
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            n = self.options.max_concurrency
            self._client = httpx.Client(base_url=self.options.base_url.rstrip("/"), headers=headers,
                                        timeout=self.options.timeout_s,
                                        limits=httpx.Limits(max_connections=n, max_keepalive_connections=n))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def model_version_for(self, adapter: str | None) -> str:
        return model_version(self.options.version or f"openai:{self.model_name}", adapter)

    def sample(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        self.client()
        with ThreadPoolExecutor(max_workers=self.options.max_concurrency) as pool:
            return list(pool.map(self._one, requests))

    def _body(self, req: SampleRequest) -> tuple[str, dict[str, Any]]:
        p = req.params
        adapters = self.options.adapters
        model = self.model_name if req.adapter is None else adapters.get(req.adapter, req.adapter)
        body: dict[str, Any] = {"model": model, "n": p.n, "temperature": p.temperature, "top_p": p.top_p,
                                "max_tokens": p.max_tokens}
        if p.stop:
            body["stop"] = list(p.stop)
        if p.seed is not None:
            body["seed"] = p.seed
        if p.repetition_penalty != 1.0:  # vLLM's and TGI's servers take it; OpenAI's own API does not
            body["repetition_penalty"] = p.repetition_penalty
        if req.messages is not None:
            body["messages"] = req.message_dicts()
            if req.continues:  # vLLM's OpenAI server: continue the assistant's message
                body.update(req.chat_template_kwargs())
            if p.logprobs:
                body["logprobs"] = True
            return CHAT_PATH, body
        body["prompt"] = req.prompt
        if p.logprobs:
            body["logprobs"] = 1
        return COMPLETIONS_PATH, body

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        delay = self.options.backoff_s
        for attempt in range(self.options.retries + 1):
            self.calls += 1
            last = attempt == self.options.retries
            try:
                resp = self._client.post(path, json=body)
            except httpx.TransportError as exc:
                if last:
                    msg = f"{self.options.base_url}{path}: {type(exc).__name__}: {exc}"
                    raise SamplerRequestError(msg) from exc
            else:
                if resp.status_code < 300:
                    try:
                        out = resp.json()
                    except ValueError:  # not JSON (or not UTF-8): not worth a retry
                        raise self._malformed(path, f"not JSON: {resp.text[:80]!r}") from None
                    if not isinstance(out, dict):
                        raise self._malformed(path, f"a JSON {type(out).__name__}, not an object")
                    return out
                if resp.status_code not in RETRY_STATUS or last:
                    raise SamplerRequestError(f"{self.options.base_url}{path}: HTTP {resp.status_code}: "
                                              f"{resp.text[:300]}")
                after = resp.headers.get("retry-after", "")
                if after.replace(".", "", 1).isdigit():
                    delay = max(delay, min(float(after), 60.0))
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _malformed(self, path: str, problem: str) -> SamplerRequestError:
        return SamplerRequestError(f"{self.options.base_url}{path}: malformed reply: {problem}")

    def _one(self, req: SampleRequest) -> SampleResult:
        path, body = self._body(req)
        data = self._post(path, body)
        try:
            return self._parse(req, data)
        except SamplerRequestError as exc:
            raise self._malformed(path, str(exc)) from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # ValueError: pydantic's too
            first = (str(exc).strip().splitlines() or [""])[0]
            raise self._malformed(path, f"{type(exc).__name__}: {first}") from None

    def _parse(self, req: SampleRequest, data: dict[str, Any]) -> SampleResult:
        """The result of one reply; a reply that breaks the wire format raises (``_one`` names it)."""
        choices = data.get("choices")
        if "choices" not in data:
            raise SamplerRequestError(f"no 'choices' in the reply: {str(data)[:80]}")
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise SamplerRequestError(f"'choices' is not a list of objects: {str(choices)[:80]}")
        if not choices:
            raise SamplerRequestError(f"no choices (n={req.params.n})")
        choices = sorted(choices, key=lambda c: c.get("index", 0))
        usage = data.get("usage") or {}
        each = int(usage.get("completion_tokens", 0)) // max(1, len(choices))
        comps = []
        for ch in choices:
            if "message" in ch:
                if not isinstance(ch["message"] or {}, dict):
                    raise SamplerRequestError(f"choice {ch.get('index', 0)}: 'message' is not an object")
                text = (ch["message"] or {}).get("content")
                lp_items = ((ch.get("logprobs") or {}).get("content")) or []
                lps = [float(x["logprob"]) for x in lp_items] if lp_items else None
            else:
                text = ch.get("text")
                raw = (ch.get("logprobs") or {}).get("token_logprobs")
                lps = [float(x) for x in raw if x is not None] if raw else None
            text = "" if text is None else text  # null content (e.g. a tool call): no text
            if not isinstance(text, str):
                where = "message.content" if "message" in ch else "text"
                raise SamplerRequestError(f"choice {ch.get('index', 0)}: {where} is not a string "
                                          f"({type(text).__name__})")
            tokens = len(lps) if lps is not None and len(choices) > 1 else each
            comps.append(Completion(text=text, tokens=tokens, finish_reason=ch.get("finish_reason"),
                                    logprobs=lps if req.params.logprobs else None))
        return SampleResult(completions=comps, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                            model_version=self.model_version_for(req.adapter))


@hookimpl
def register_samplers() -> list[type]:
    return [OpenAISampler]
