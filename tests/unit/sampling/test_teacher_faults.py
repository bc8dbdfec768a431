"""Bad teacher input: the ``openai`` sampler against a dead port, a server slower than its
timeout, and a server answering 200 with a reply that breaks the wire format. Each ends in one
SamplerRequestError, after bounded retries (transport failures) or at once (malformed replies),
with a one-line message naming the problem."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from engine.sampling.errors import SamplerRequestError
from engine.sampling.protocol import SampleRequest
from plugins.sampler_openai import OpenAIOptions, OpenAISampler

pytest.importorskip("httpx")


class Faulty(ThreadingHTTPServer):
    """Answers every POST with ``reply`` (raw bytes, status 200) after ``delay`` seconds."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply = b"{}"
        self.delay = 0.0
        self.posts = 0


class _Handler(BaseHTTPRequestHandler):
    server: Faulty

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts += 1
        time.sleep(self.server.delay)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(self.server.reply)))
            self.end_headers()
            self.wfile.write(self.server.reply)
        except OSError:  # the client gave up (timed out) first
            pass


@pytest.fixture
def faulty() -> Iterator[Faulty]:
    srv = Faulty()
    threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _sampler(base_url: str, **opts: Any) -> OpenAISampler:
    return OpenAISampler(OpenAIOptions(base_url=base_url, model="teacher", **opts))


def _url(srv: Faulty) -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}/v1"


def _one_line(exc: pytest.ExceptionInfo[SamplerRequestError]) -> str:
    text = str(exc.value)
    assert "\n" not in text, text
    return text


def test_unreachable_port_raises_after_bounded_retries() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    retries, backoff = 2, 0.05
    sampler = _sampler(f"http://127.0.0.1:{port}/v1", retries=retries, backoff_s=backoff, timeout_s=2.0)
    start = time.monotonic()
    with pytest.raises(SamplerRequestError, match="ConnectError") as exc:
        sampler.sample([SampleRequest.chat("hello")])
    elapsed = time.monotonic() - start
    expected = sum(backoff * 2**i for i in range(retries))  # 0.05 + 0.1: the sleeps between attempts
    assert sampler.calls == retries + 1
    assert expected <= elapsed < 10 * expected, elapsed
    assert str(port) in _one_line(exc)


def test_slow_server_times_out_after_bounded_retries(faulty: Faulty) -> None:
    faulty.delay = 1.5
    retries, backoff, timeout = 1, 0.05, 0.2
    sampler = _sampler(_url(faulty), retries=retries, backoff_s=backoff, timeout_s=timeout)
    start = time.monotonic()
    with pytest.raises(SamplerRequestError, match="Timeout") as exc:
        sampler.sample([SampleRequest.chat("hello")])
    elapsed = time.monotonic() - start
    expected = (retries + 1) * timeout + backoff  # every attempt waits out its timeout
    assert sampler.calls == retries + 1
    assert elapsed < 10 * expected, elapsed
    _one_line(exc)


@pytest.mark.parametrize(("reply", "problem"), [
    (b"<html>502 from a proxy</html>\n", "not JSON"),
    (b'{"choices": [{"message": {"content": "cut', "not JSON"),
    (b"[1, 2, 3]", "not an object"),
    (json.dumps({"id": "x", "usage": {}}).encode(), "no 'choices'"),
    (json.dumps({"choices": None}).encode(), "'choices' is not a list"),
    (json.dumps({"choices": "hello"}).encode(), "'choices' is not a list"),
    (json.dumps({"choices": []}).encode(), "no choices"),
    (json.dumps({"choices": [{"message": {"content": 42}}]}).encode(), "content is not a string (int)"),
    (json.dumps({"choices": [{"message": {"content": {}}}]}).encode(), "content is not a string (dict)"),
    (json.dumps({"choices": [{"message": "hello"}]}).encode(), "'message' is not an object"),
    (json.dumps({"choices": [{"message": {"content": "x"}, "logprobs": {"content": [7]}}]}).encode(),
     "TypeError"),
    (json.dumps({"choices": [{"text": ["a"]}]}).encode(), "text is not a string (list)"),
    (json.dumps({"choices": [{"message": {"content": "ok"}}], "usage": {"prompt_tokens": "many"}}).encode(),
     "ValueError"),
])
def test_malformed_replies_raise_naming_the_problem(faulty: Faulty, reply: bytes, problem: str) -> None:
    faulty.reply = reply
    sampler = _sampler(_url(faulty), retries=3, backoff_s=0.01)
    req = SampleRequest(prompt="p") if b'"text"' in reply else SampleRequest.chat("hello")
    with pytest.raises(SamplerRequestError, match="malformed reply") as exc:
        sampler.sample([req])
    assert problem in _one_line(exc)
    assert sampler.calls == 1  # a malformed reply is not retried


def test_a_well_formed_reply_still_parses(faulty: Faulty) -> None:
    choices = [{"index": 1, "message": {"content": None}, "finish_reason": "stop"},
               {"index": 0, "message": {"content": "first"}}]
    usage = {"prompt_tokens": 3, "completion_tokens": 8}
    faulty.reply = json.dumps({"choices": choices, "usage": usage}).encode()
    out = _sampler(_url(faulty)).sample([SampleRequest.chat("hello", n=2)])
    assert [c.text for c in out[0].completions] == ["first", ""]
    assert out[0].prompt_tokens == 3 and out[0].completions[0].tokens == 4
