"""engine.sampling.serve: any Sampler behind an OpenAI-compatible endpoint, driven by the real
``openai`` sampler plugin (the round trip keeps every request field), micro-batching, bad bodies
(400, the server goes on), sampler failures (500 for the failing requests only), and the
``autodidact serve`` command's one-line errors."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from engine.contracts import Resources
from engine.sampling.errors import SamplerRequestError
from engine.sampling.protocol import Completion, SampleRequest, SampleResult
from engine.sampling.serve import SamplerServer, ServeError, serve
from plugins.sampler_openai import OpenAIOptions, OpenAISampler

pytest.importorskip("httpx")


class Echo:
    """A fake sampler: echoes the last message (or the prompt) per sample; records every call."""

    name: ClassVar[str] = "echo"
    resources: ClassVar[Resources] = Resources()
    model_name = "fake"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen: list[SampleRequest] = []
        self.batches: list[int] = []
        self.threads: set[int] = set()

    def sample(self, requests: Sequence[SampleRequest]) -> list[SampleResult]:
        self.threads.add(threading.get_ident())
        self.batches.append(len(requests))
        self.seen.extend(requests)
        time.sleep(self.delay)
        out = []
        for r in requests:
            src = r.messages[-1][1] if r.messages else r.prompt or ""
            if src == "boom":
                raise RuntimeError("boom\nwith a second line")
            lps = [-0.5, -0.25] if r.params.logprobs else None
            comps = [Completion(text=f"{src}#{i}", tokens=2, finish_reason="stop", logprobs=lps)
                     for i in range(r.params.n)]
            out.append(SampleResult(completions=comps, prompt_tokens=len(src)))
        return out


@pytest.fixture
def fake() -> Echo:
    return Echo()


@pytest.fixture
def server(fake: Echo) -> Iterator[SamplerServer]:
    with serve(fake) as srv:
        yield srv


def client(srv: SamplerServer, **opts: Any) -> OpenAISampler:
    return OpenAISampler(OpenAIOptions(base_url=srv.url, model="fake", backoff_s=0.01, **opts))


def raw(srv: SamplerServer, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(str(srv.server_address[0]), srv.server_address[1], timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_texts_come_back_in_order_with_n_choices(server: SamplerServer) -> None:
    assert server.url.endswith("/v1")
    reqs = [SampleRequest.chat(f"hello {i}", n=2, max_tokens=10) for i in range(5)]
    reqs.append(SampleRequest(prompt="raw", params={"n": 3}))
    out = client(server).sample(reqs)
    assert [[c.text for c in r.completions] for r in out[:5]] == [[f"hello {i}#0", f"hello {i}#1"]
                                                                  for i in range(5)]
    assert [c.text for c in out[5].completions] == ["raw#0", "raw#1", "raw#2"]
    assert out[0].completions[0].finish_reason == "stop" and out[0].completions[0].tokens == 2
    assert out[0].prompt_tokens == len("hello 0")


def test_request_fields_arrive_unchanged(server: SamplerServer, fake: Echo, tmp_path: Path) -> None:
    adapter = tmp_path / "judge-adapter"
    adapter.mkdir()
    sent = [SampleRequest.chat("a", temperature=0.7, top_p=0.9, max_tokens=33, stop=["\n", "END"], seed=5,
                               repetition_penalty=1.3),
            SampleRequest.chat("plain"),
            SampleRequest.chat([{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"},
                                {"role": "assistant", "content": "The answer"}], n=2, logprobs=True),
            SampleRequest.chat("with adapter", adapter=str(adapter), seed=0),
            SampleRequest(prompt="raw", params={"max_tokens": 7, "logprobs": True, "stop": ("x",)})]
    out = client(server).sample(sent)
    assert sorted(fake.seen, key=repr) == sorted(sent, key=repr)
    assert out[2].completions[0].logprobs == [-0.5, -0.25] and out[4].completions[0].logprobs == [-0.5, -0.25]
    assert out[1].completions[0].logprobs is None


def test_served_adapter_names_map_back_to_paths(fake: Echo) -> None:
    with serve(fake, adapters={"judge": "/runs/a/judge"}) as srv:
        sampler = client(srv, adapters={"/runs/a/judge": "judge"})
        sampler.sample([SampleRequest.chat("x", adapter="/runs/a/judge")])
        assert fake.seen[-1].adapter == "/runs/a/judge"
        status, models = raw(srv, "GET", "/v1/models")
        assert status == 200 and [m["id"] for m in models["data"]] == ["fake", "judge"]


def test_concurrent_requests_are_micro_batched(fake: Echo) -> None:
    fake.delay = 0.05
    with serve(fake) as srv:
        out = client(srv, max_concurrency=16).sample([SampleRequest.chat(str(i)) for i in range(16)])
        assert [r.completions[0].text for r in out] == [f"{i}#0" for i in range(16)]
        assert sum(fake.batches) == 16 and len(fake.batches) < 16, fake.batches
        assert len(fake.threads) == 1  # the sampler is called from one thread only
        assert srv.batches == fake.batches


def test_bad_bodies_get_400_and_the_server_goes_on(server: SamplerServer, fake: Echo) -> None:
    status, body = raw(server, "POST", "/v1/chat/completions", b"{not json")
    assert status == 400 and "invalid JSON" in body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"
    cases = [({"model": "fake"}, "messages"), ({"messages": "hi"}, "messages"),
             ({"messages": [{"role": "user", "content": 3}]}, "content"),
             ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
             ({"messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
             ({"messages": [{"role": "user", "content": "x"}], "stop": [1]}, "stop"),
             ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "stream"),
             ([1, 2], "object")]
    for payload, word in cases:
        status, body = raw(server, "POST", "/v1/chat/completions", json.dumps(payload).encode())
        assert status == 400 and word in body["error"]["message"], (payload, body)
    status, body = raw(server, "POST", "/v1/completions", json.dumps({"prompt": None}).encode())
    assert status == 400 and "prompt" in body["error"]["message"]
    unknown = json.dumps({"prompt": "x", "model": "gpt-9"}).encode()
    status, body = raw(server, "POST", "/v1/completions", unknown)
    assert status == 404 and "gpt-9" in body["error"]["message"]
    assert raw(server, "POST", "/v1/embeddings", b"{}")[0] == 404
    assert raw(server, "GET", "/health") == (200, {"status": "ok"})
    assert fake.seen == []  # nothing bad reached the sampler
    assert client(server).sample([SampleRequest.chat("still here")])[0].completions[0].text == "still here#0"


def test_sampler_failure_is_500_for_the_failing_request_only(fake: Echo) -> None:
    with serve(fake, window_s=0.5) as srv:
        jobs = [srv.submit(SampleRequest.chat(t)) for t in ("a", "boom", "b")]
        for job in jobs:
            assert job.done.wait(10)
        assert fake.batches[0] == 3  # one batch, which failed; then each request alone
        assert [j.result is not None for j in jobs] == [True, False, True]
        assert jobs[1].error == "sampler failed: RuntimeError: boom"
    with serve(fake) as srv:
        sampler = client(srv, retries=1)
        with pytest.raises(SamplerRequestError, match="HTTP 500.*sampler failed: RuntimeError: boom"):
            sampler.sample([SampleRequest.chat("boom")])
        assert sampler.calls == 2  # retried once, then gave up
        assert sampler.sample([SampleRequest.chat("ok")])[0].completions[0].text == "ok#0"


def test_a_port_in_use_is_a_serve_error(fake: Echo) -> None:
    with serve(fake) as srv, pytest.raises(ServeError, match="cannot listen"):
        serve(fake, port=srv.server_address[1])


# -- autodidact serve -------------------------------------------------------------------------------
def _cli(*args: str) -> Any:
    from engine.cli import app

    return CliRunner().invoke(app, ["serve", *args])


def test_cli_unknown_sampler_is_one_line_exit_2() -> None:
    result = _cli("--sampler", "nope", "--port", "0")
    assert result.exit_code == 2 and "nope" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_bad_option_is_one_line_exit_2() -> None:
    result = _cli("--sampler", "scripted", "--port", "0", "--option", "colour=blue")
    assert result.exit_code == 2 and "colour" in result.output


def test_cli_port_in_use_is_one_line_exit_2() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        result = _cli("--sampler", "scripted", "--port", str(sock.getsockname()[1]))
    assert result.exit_code == 2 and "cannot listen" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_serves_and_prints_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SamplerServer] = []

    def fake_forever(self: SamplerServer, poll_interval: float = 0.5) -> None:
        seen.append(self)
        raise KeyboardInterrupt  # Ctrl-C at once

    monkeypatch.setattr(SamplerServer, "serve_forever", fake_forever)
    result = _cli("--sampler", "scripted", "--model", "tiny", "--port", "0", "-o", "echo=true")
    assert result.exit_code == 0, result.output
    assert "serving the scripted sampler (tiny) at http://127.0.0.1:" in result.output
    assert seen and seen[0].model == "tiny" and seen[0].sampler.options.echo is True  # type: ignore[attr-defined]
