"""An OpenAI-compatible HTTP server over any engine ``Sampler`` (``autodidact serve``).

What it is: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models`` and
``GET /health`` on the standard library's ``ThreadingHTTPServer``. Each HTTP request becomes one
``SampleRequest`` (the inverse of the ``openai`` sampler's request body, so openai sampler ->
server -> sampler keeps every field); requests that arrive together are micro-batched by one
thread into a single ``sampler.sample`` call (the only thread that touches the sampler). A bad
body gets a 400 and a sampler failure a 500 for the requests that failed, as OpenAI-style error
JSON; the server goes on. It answers to its own model name, the served names of ``adapters``
(served name -> adapter path) and any existing directory (an adapter path, as the openai sampler
sends one). What it is not: the whole OpenAI API (no streaming, tools, embeddings or auth), a
scheduler beyond the micro-batch, or hardened for untrusted networks.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import ValidationError

from engine.errors import UserError
from engine.sampling.protocol import Completion, Sampler, SampleRequest, SampleResult, SamplingParams

log = logging.getLogger(__name__)
CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"


class ServeError(UserError):
    """The server cannot start: the address is in use or cannot be bound."""


class Refused(Exception):
    """A request the server refuses: its HTTP status and an OpenAI-style error."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.body = status, {"error": {"message": message, "type": kind, "param": None,
                                                    "code": None}}


@dataclass
class _Job:
    request: SampleRequest
    done: threading.Event = field(default_factory=threading.Event)
    result: SampleResult | None = None
    error: str | None = None


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


def _choice(i: int, c: Completion, chat: bool, logprobs: bool) -> dict[str, Any]:
    lps = c.logprobs if logprobs else None
    if chat:
        lp = None if lps is None else {"content": [{"token": "", "logprob": x} for x in lps]}
        return {"index": i, "message": {"role": "assistant", "content": c.text}, "logprobs": lp,
                "finish_reason": c.finish_reason or "stop"}
    return {"index": i, "text": c.text, "logprobs": None if lps is None else {"token_logprobs": lps},
            "finish_reason": c.finish_reason or "stop"}


class SamplerServer(ThreadingHTTPServer):
    """The server: ``url`` (the base_url, ending in /v1), ``close()``, a context manager.
    ``start()`` serves from a background thread, ``serve_forever()`` blocks (the CLI)."""

    daemon_threads = True

    def __init__(self, sampler: Sampler, host: str = "127.0.0.1", port: int = 0, *, model: str | None = None,
                 adapters: Mapping[str, str] | None = None, max_batch: int = 64, window_s: float = 0.02,
                 ) -> None:
        try:
            super().__init__((host, port), _Handler)
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.sampler, self.adapters = sampler, dict(adapters or {})
        self.model = model or str(getattr(sampler, "model_name", None) or getattr(sampler, "name", "sampler"))
        self.max_batch, self.window_s = max(1, max_batch), window_s
        self.batches: list[int] = []  # the size of each sampler call, for tests and logs
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._serving = self._closed = False
        self._batcher = threading.Thread(target=self._batch_loop, name="serve-batcher", daemon=True)
        self._batcher.start()

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]!s}:{self.server_address[1]}/v1"

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until ``close()`` (from another thread) or Ctrl-C; blocks."""
        self._serving = True
        super().serve_forever(poll_interval)

    def start(self) -> SamplerServer:
        """Serve from a background daemon thread; returns self."""
        if not self._serving:
            self._serving = True  # before the thread runs, so that close() always waits for it
            threading.Thread(target=self.serve_forever, args=(0.05,), name="serve-http", daemon=True).start()
        return self

    def close(self) -> None:
        """Stop serving and release the port; queued requests are still answered (within 5 s)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
        if self._serving:
            self.shutdown()
        self.server_close()
        self._batcher.join(timeout=5)

    def __enter__(self) -> SamplerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- translation ----------------------------------------------------------------------------
    def adapter_for(self, model: Any) -> str | None:
        """The adapter a body's ``model`` names (None: the base model); unknown names: 404."""
        if model is None or model == "" or model == self.model:
            return None
        if not isinstance(model, str):
            raise Refused(400, "'model' must be a string")
        if model in self.adapters or os.path.isdir(model):
            return self.adapters.get(model, model)
        raise Refused(404, f"the model {model!r} does not exist; this server serves {self.model!r}",
                      "not_found_error")

    def to_request(self, path: str, body: Any) -> SampleRequest:
        """The SampleRequest of a request body, or Refused (400/404)."""
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
        adapter = self.adapter_for(body.get("model"))
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

    def to_reply(self, path: str, req: SampleRequest, result: SampleResult) -> dict[str, Any]:
        chat = path == CHAT
        choices = [_choice(i, c, chat, req.params.logprobs) for i, c in enumerate(result.completions)]
        produced = sum(c.tokens for c in result.completions)
        usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": produced,
                 "total_tokens": result.prompt_tokens + produced}
        return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", "choices": choices,
                "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
                "model": self.model if req.adapter is None else req.adapter, "usage": usage}

    # -- micro-batching -------------------------------------------------------------------------
    def submit(self, request: SampleRequest) -> _Job:
        """Queue one request for the next batch; its job's ``done`` is set when answered."""
        job = _Job(request)
        with self._lock:
            if self._closed:
                job.error = "the server is shutting down"
                job.done.set()
            else:
                self._jobs.put(job)
        return job

    def _batch_loop(self) -> None:
        """Take what arrives within ``window_s`` of the first request (at most ``max_batch``), run
        it as one sampler call; requests arriving meanwhile wait for the next call. None: stop."""
        while (first := self._jobs.get()) is not None:
            batch, deadline = [first], time.monotonic() + self.window_s
            while len(batch) < self.max_batch:
                try:
                    job = self._jobs.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:  # closing: nothing comes after it (submit refuses); end after this batch
                    self._jobs.put(None)
                    break
                batch.append(job)
            self._run(batch)

    def _run(self, batch: list[_Job]) -> None:
        """One sampler call; when it fails, each request alone, so that only failing ones get a 500."""
        try:
            self.batches.append(len(batch))
            results = self.sampler.sample([j.request for j in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"the sampler returned {len(results)} results for {len(batch)} requests")
        except Exception as exc:
            if len(batch) > 1:
                for job in batch:
                    self._run([job])
                return
            log.exception("sampler failed")
            text = str(exc).strip().splitlines()
            batch[0].error = f"sampler failed: {type(exc).__name__}" + (f": {text[0]}" if text else "")
            batch[0].done.set()
            return
        for job, result in zip(batch, results, strict=True):
            job.result = result
            job.done.set()


class _Handler(BaseHTTPRequestHandler):
    server: SamplerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/health":
            return self._send(200, {"status": "ok"})
        if path == "/v1/models":
            card = {"id": self.server.model, "object": "model", "created": 0, "owned_by": "autodidact"}
            more = [{**card, "id": name, "parent": self.server.model} for name in self.server.adapters]
            return self._send(200, {"object": "list", "data": [card, *more]})
        self._send(404, Refused(404, f"no route GET {path}", "not_found_error").body)

    def do_POST(self) -> None:
        path, length = self.path.split("?", 1)[0].rstrip("/"), self.headers.get("Content-Length", "")
        if not length.isdigit():
            self.close_connection = True  # the body is not read: the connection cannot go on
            return self._send(411, Refused(411, "a request needs a Content-Length").body)
        raw = self.rfile.read(int(length))
        try:
            if path not in (CHAT, COMPLETIONS):
                raise Refused(404, f"no route POST {path}", "not_found_error")
            try:
                body = json.loads(raw)
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
                raise Refused(400, f"invalid JSON: {exc}") from None
            req = self.server.to_request(path, body)
        except Refused as exc:
            return self._send(exc.status, exc.body)
        except Exception as exc:  # a bug here: this request fails, the server goes on
            log.exception("could not read a request")
            return self._send(500, Refused(500, f"{type(exc).__name__}: {exc}", "server_error").body)
        job = self.server.submit(req)
        job.done.wait()
        if job.result is None:
            status = 503 if self.server._closed else 500
            return self._send(status, Refused(status, job.error or "no result", "server_error").body)
        self._send(200, self.server.to_reply(path, req, job.result))


def serve(sampler: Sampler, host: str = "127.0.0.1", port: int = 0, *, model: str | None = None,
          adapters: Mapping[str, str] | None = None, max_batch: int = 64,
          window_s: float = 0.02) -> SamplerServer:
    """Serve ``sampler`` from a background thread; the returned server's ``url`` is the base_url
    (ends in /v1). Use it as a context manager or call ``close()``. ServeError: cannot bind."""
    return SamplerServer(sampler, host, port, model=model, adapters=adapters, max_batch=max_batch,
                         window_s=window_s).start()
