"""An OpenAI-compatible HTTP server over any engine ``Sampler`` (``autodidact serve``).

What it is: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models`` and
``GET /health`` on the standard library's ``ThreadingHTTPServer``. Each HTTP request becomes one
``SampleRequest`` (the inverse of the ``openai`` sampler's request body, so openai sampler ->
server -> sampler keeps every field); requests that arrive together are micro-batched by one
thread into a single ``sampler.sample`` call (the only thread that touches the sampler). A bad
body gets a 400 and a sampler failure a 500 for the requests that failed, as OpenAI-style error
JSON; the server goes on. It answers to its own model name, the served names of ``adapters``
(served name -> adapter path) and any existing directory (an adapter path, as the openai sampler
sends one). The body <-> SampleRequest/SampleResult translation is engine.sampling.wire's. What it
is not: the whole OpenAI API (no streaming, tools, embeddings or auth), a scheduler beyond the
micro-batch, or hardened for untrusted networks.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from engine.errors import UserError
from engine.sampling import wire
from engine.sampling.protocol import Sampler, SampleRequest, SampleResult
from engine.sampling.wire import CHAT, COMPLETIONS, Refused, error_body

__all__ = ["CHAT", "COMPLETIONS", "Refused", "SamplerServer", "ServeError", "serve"]
log = logging.getLogger(__name__)


class ServeError(UserError):
    """The server cannot start: the address is in use or cannot be bound."""


@dataclass
class _Job:
    request: SampleRequest
    done: threading.Event = field(default_factory=threading.Event)
    result: SampleResult | None = None
    error: str | None = None


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

    # -- translation (engine.sampling.wire) ----------------------------------------------------
    def adapter_for(self, model: Any) -> str | None:
        """The adapter a body's ``model`` names (None: the base model); unknown names: 404."""
        return wire.adapter_for(model, self.model, self.adapters)

    def to_request(self, path: str, body: Any) -> SampleRequest:
        """The SampleRequest of a request body, or Refused (400/404)."""
        return wire.request_from_body(path, body, self.model, self.adapters)

    def to_reply(self, path: str, req: SampleRequest, result: SampleResult) -> dict[str, Any]:
        return wire.reply_body(path, req, result, self.model)

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
        self._send(404, error_body(f"no route GET {path}", "not_found_error"))

    def do_POST(self) -> None:
        path, length = self.path.split("?", 1)[0].rstrip("/"), self.headers.get("Content-Length", "")
        if not length.isdigit():
            self.close_connection = True  # the body is not read: the connection cannot go on
            return self._send(411, error_body("a request needs a Content-Length"))
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
            return self._send(500, error_body(f"{type(exc).__name__}: {exc}", "server_error"))
        job = self.server.submit(req)
        job.done.wait()
        if job.result is None:
            status = 503 if self.server._closed else 500
            return self._send(status, error_body(job.error or "no result", "server_error"))
        self._send(200, self.server.to_reply(path, req, job.result))


def serve(sampler: Sampler, host: str = "127.0.0.1", port: int = 0, *, model: str | None = None,
          adapters: Mapping[str, str] | None = None, max_batch: int = 64,
          window_s: float = 0.02) -> SamplerServer:
    """Serve ``sampler`` from a background thread; the returned server's ``url`` is the base_url
    (ends in /v1). Use it as a context manager or call ``close()``. ServeError: cannot bind."""
    return SamplerServer(sampler, host, port, model=model, adapters=adapters, max_batch=max_batch,
                         window_s=window_s).start()
