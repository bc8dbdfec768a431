"""The ``openai`` sampler against a loopback server speaking the OpenAI wire format.

The server here is a small fake (chat and completions endpoints, n choices, usage, logprobs,
injected 429/503 failures, a concurrency gauge); a real ``vllm serve`` test lives in
test_sampler_vllm.py (marked vllm and slow).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from engine.sampling.cache import CachedSampler, SampleCache
from engine.sampling.errors import SamplerRequestError
from engine.sampling.protocol import SampleRequest
from plugins.sampler_openai import OpenAIOptions, OpenAISampler

pytest.importorskip("httpx")


class FakeOpenAI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.fail: list[int] = []  # status codes to answer with, in turn, before succeeding
        self.bodies: list[dict[str, Any]] = []
        self.headers_seen: list[str] = []
        self.in_flight = self.max_in_flight = 0
        self.delay = 0.0


class Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.bodies.append(body)
            srv.headers_seen.append(self.headers.get("Authorization", ""))
            status = srv.fail.pop(0) if srv.fail else 200
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        time.sleep(srv.delay)
        with srv.lock:
            srv.in_flight -= 1
        if status != 200:
            return self._send(status, {"error": {"message": "injected"}}, {"Retry-After": "0"})
        if self.path not in ("/v1/chat/completions", "/v1/completions"):
            return self._send(404, {"error": {"message": "no route"}})
        chat = self.path == "/v1/chat/completions"
        source = body["messages"][-1]["content"] if chat else body["prompt"]
        choices = []
        for i in range(body.get("n", 1)):
            text = f"{source[::-1]}#{i}"[: body["max_tokens"]]
            choice: dict[str, Any] = {"index": i, "finish_reason": "length" if len(text) == body["max_tokens"]
                                      else "stop"}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
                if body.get("logprobs"):
                    choice["logprobs"] = {"content": [{"token": c, "logprob": -0.5} for c in text]}
            else:
                choice["text"] = text
                if body.get("logprobs"):
                    choice["logprobs"] = {"token_logprobs": [-0.25] * len(text)}
            choices.append(choice)
        produced = sum(len(c.get("text") or c["message"]["content"]) for c in choices)
        usage = {"prompt_tokens": len(source), "completion_tokens": produced}
        self._send(200, {"id": "x", "model": body["model"], "choices": choices, "usage": usage})

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    srv = FakeOpenAI()
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _sampler(srv: FakeOpenAI, **opts: Any) -> OpenAISampler:
    port = srv.server_address[1]
    return OpenAISampler(OpenAIOptions(base_url=f"http://127.0.0.1:{port}/v1", model="smol", backoff_s=0.01,
                                       **opts))


def test_chat_and_raw_prompts_in_input_order(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    sampler = _sampler(server)
    reqs = [SampleRequest.chat(f"hello {i}", max_tokens=50, n=2, seed=i, stop=["\n"]) for i in range(5)]
    reqs.append(SampleRequest(prompt="raw", params={"max_tokens": 50, "logprobs": True}))
    out = sampler.sample(reqs)
    assert [r.completions[0].text for r in out[:5]] == [f"{i} olleh#0" for i in range(5)]
    assert [c.text for c in out[0].completions] == ["0 olleh#0", "0 olleh#1"]
    assert out[0].completions[0].finish_reason == "stop" and out[0].prompt_tokens == 7
    assert out[5].completions[0].text == "war#0" and out[5].completions[0].logprobs == [-0.25] * 5
    assert out[0].model_version == "openai:smol"
    chat_body = next(b for b in server.bodies if "messages" in b and b["seed"] == 3)
    assert chat_body["n"] == 2 and chat_body["stop"] == ["\n"] and chat_body["model"] == "smol"
    assert server.headers_seen[0] == "Bearer sk-test"


def test_concurrency_is_bounded(server: FakeOpenAI) -> None:
    server.delay = 0.05
    _sampler(server, max_concurrency=3).sample([SampleRequest.chat(str(i)) for i in range(12)])
    assert 2 <= server.max_in_flight <= 3


def test_transient_failures_are_retried(server: FakeOpenAI) -> None:
    server.fail = [503, 429, 502]
    sampler = _sampler(server, retries=3)
    out = sampler.sample([SampleRequest.chat("again", max_tokens=20)])
    assert out[0].completions[0].text == "niaga#0"
    assert sampler.calls == 4


def test_failures_beyond_retries_or_not_transient_raise(server: FakeOpenAI) -> None:
    server.fail = [503, 503]
    with pytest.raises(SamplerRequestError, match="HTTP 503"):
        _sampler(server, retries=1).sample([SampleRequest.chat("x")])
    server.fail = [400]
    sampler = _sampler(server, retries=5)
    with pytest.raises(SamplerRequestError, match="HTTP 400"):
        sampler.sample([SampleRequest.chat("x")])
    assert sampler.calls == 1


def test_dead_server_raises_after_retries() -> None:
    sampler = OpenAISampler(OpenAIOptions(base_url="http://127.0.0.1:9/v1", retries=1, backoff_s=0.01))
    with pytest.raises(SamplerRequestError, match="ConnectError"):
        sampler.sample([SampleRequest.chat("x")])


def test_adapters_go_as_served_model_names(server: FakeOpenAI) -> None:
    sampler = _sampler(server, adapters={"/runs/a/judge": "judge-lora"})
    reqs = [SampleRequest.chat("x", adapter="/runs/a/judge"), SampleRequest.chat("y", adapter="ext")]
    out = sampler.sample(reqs)
    assert sorted(b["model"] for b in server.bodies) == ["ext", "judge-lora"]
    assert out[0].model_version is not None and out[0].model_version.startswith("openai:smol+lora-")


def test_cache_repeat_makes_zero_http_calls(server: FakeOpenAI, tmp_path: Any) -> None:
    sampler = CachedSampler(_sampler(server), SampleCache.in_run_dir(tmp_path))
    reqs = [SampleRequest.chat(f"q{i}", temperature=0.7, seed=1) for i in range(4)]
    first = sampler.sample(reqs)
    assert len(server.bodies) == 4
    again = sampler.sample(reqs)
    assert len(server.bodies) == 4 and all(r.cached for r in again)
    assert [r.completions for r in again] == [r.completions for r in first]
