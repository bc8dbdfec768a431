"""The OpenAI wire format as the sampling server speaks it: request bodies in, reply bodies out.

What it is: pure translation for ``engine.sampling.serve``. ``request_from_body`` turns a
``/v1/chat/completions`` or ``/v1/completions`` body into one ``SampleRequest`` (the inverse of the
``openai`` sampler's body, so every field survives a round trip) or raises ``Refused`` (an HTTP
status and OpenAI-style error JSON); ``adapter_for`` resolves a body's ``model`` to an adapter;
``reply_body`` turns a ``SampleResult`` into the reply JSON; ``error_body`` is the error JSON. The
endpoint paths live here too, shared with the ``openai`` sampler. What it is not: HTTP (no sockets,
threads or batching; that is serve.py), a client, or the whole OpenAI API (no streaming or tools).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from engine.sampling.protocol import Completion, SampleRequest, SampleResult, SamplingParams

# the endpoints, relative to a base_url that ends in /v1 (as the openai sampler posts them), and
# the full paths the server routes
CHAT_PATH, COMPLETIONS_PATH = "/chat/completions", "/completions"
CHAT, COMPLETIONS = f"/v1{CHAT_PATH}", f"/v1{COMPLETIONS_PATH}"


def error_body(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


class Refused(Exception):
    """A request the server refuses: its HTTP status and an OpenAI-style error."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.body = status, error_body(message, kind)


def _get(body: dict[str, Any], key: str, types: tuple[type, ...], default: Any = None) -> Any:
    """``body[key]`` if one of ``types`` (bool only where named), ``default`` if absent or null."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise Refused(400, f"{key!r} has the wrong type ({type(value).__name__})")
    return value


def _message(msg: Any, i: int) -> tuple[str, str]:
    if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
        raise Refused(400, f"messages[{i}] must be an object with a string 'role'")
    content = msg.get("content")
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        content = "".join(p["text"] for p in content)  # text content parts
    if not isinstance(content, str):
        raise Refused(400, f"messages[{i}].content must be a string (or a list of text parts)")
    return msg["role"], content


def adapter_for(name: Any, model: str, adapters: Mapping[str, str]) -> str | None:
    """The adapter a body's ``model`` (``name``) names on a server serving ``model`` with
    ``adapters`` (served name -> path); None: the base model. Any existing directory is an adapter
    path. Not a string: 400; unknown: 404."""
    if name is None or name == "" or name == model:
        return None
    if not isinstance(name, str):
        raise Refused(400, "'model' must be a string")
    if name in adapters or os.path.isdir(name):
        return adapters.get(name, name)
    raise Refused(404, f"the model {name!r} does not exist; this server serves {model!r}",
                  "not_found_error")


def request_from_body(path: str, body: Any, model: str, adapters: Mapping[str, str]) -> SampleRequest:
    """The SampleRequest of a request body to ``path`` (CHAT, else a completion) on a server
    serving ``model`` and ``adapters`` (see ``adapter_for``), or Refused (400/404)."""
    if not isinstance(body, dict):
        raise Refused(400, "the request body must be a JSON object")
    if body.get("stream"):
        raise Refused(400, "streaming is not supported by this server")
    num, stop = (int, float), _get(body, "stop", (str, list), ())
    if not isinstance(stop, str) and not all(isinstance(s, str) for s in stop):
        raise Refused(400, "'stop' must be a string or a list of strings")
    max_tokens = _get(body, "max_tokens", (int,), _get(body, "max_completion_tokens", (int,)))
    params: dict[str, Any] = {
        "n": _get(body, "n", (int,), 1), "temperature": _get(body, "temperature", num, 1.0),
        "top_p": _get(body, "top_p", num, 1.0), "seed": _get(body, "seed", (int,)),
        "repetition_penalty": _get(body, "repetition_penalty", num, 1.0),
        "stop": (stop,) if isinstance(stop, str) else tuple(stop)}
    if max_tokens is not None:  # else SamplingParams' default
        params["max_tokens"] = max_tokens
    adapter = adapter_for(body.get("model"), model, adapters)
    try:
        if path == CHAT:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise Refused(400, "'messages' must be a non-empty list")
            params["logprobs"] = _get(body, "logprobs", (bool,), False)
            msgs = tuple(_message(m, i) for i, m in enumerate(messages))
            return SampleRequest(messages=msgs, params=SamplingParams(**params), adapter=adapter)
        prompt = body.get("prompt")
        prompt = prompt[0] if isinstance(prompt, list) and len(prompt) == 1 else prompt
        if not isinstance(prompt, str):
            raise Refused(400, "'prompt' must be a string")
        params["logprobs"] = _get(body, "logprobs", (int,)) is not None  # the number of top tokens
        return SampleRequest(prompt=prompt, params=SamplingParams(**params), adapter=adapter)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "params")
        raise Refused(400, f"{where}: {first['msg']}" if where else first["msg"]) from None


def _choice(i: int, c: Completion, chat: bool, logprobs: bool) -> dict[str, Any]:
    lps = c.logprobs if logprobs else None
    if chat:
        lp = None if lps is None else {"content": [{"token": "", "logprob": x} for x in lps]}
        return {"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": lp,
                "finish_reason": c.finish_reason or "stop"}
    return {"index": i, "text": c.text, "logprobs": None if lps is None else {"token_logprobs": lps},
            "finish_reason": c.finish_reason or "stop"}


def reply_body(path: str, request: SampleRequest, result: SampleResult, model: str) -> dict[str, Any]:
    """The reply JSON to ``request`` (posted to ``path``) from ``result``; ``model``: the served
    model name, reported unless the request named an adapter."""
    chat = path == CHAT
    choices = [_choice(i, c, chat, request.params.logprobs) for i, c in enumerate(result.completions)]
    produced = sum(c.tokens for c in result.completions)
    usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": produced,
             "total_tokens": result.prompt_tokens + produced}
    return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", "choices": choices,
            "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": model if request.adapter is None else request.adapter, "usage": usage}
