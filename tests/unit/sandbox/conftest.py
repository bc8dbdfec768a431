"""Fixtures for the sandbox unit tests: a loopback fake of E2B's wire protocol for the real SDK.

It serves the control plane (``POST /v2/sandboxes``, ``DELETE /sandboxes/{id}``) and the sandbox
plane (``GET /health``, ``POST /execute`` streaming NDJSON: stdout / stderr / error /
number_of_executions). ``/execute`` runs the code with this machine's Python in a subprocess (a
stand-in for the remote kernel). Every request is recorded, headers included, so tests can check
what the SDK sent. Not covered: files, commands, contexts, pause/resume, metrics.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class FakeE2B:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.alive: set[str] = set()
        self.created = 0
        self.fail_execute = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _send(self, code: int, payload: Any = None) -> None:
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: bytes) -> None:
                fake.requests.append({"method": self.command, "path": self.path,
                                      "headers": dict(self.headers.items()),
                                      "body": body.decode("utf-8", "replace")})

            def do_GET(self) -> None:  # noqa: N802
                self._record(b"")
                if self.path.startswith("/health"):
                    self._send(204)
                else:
                    self._send(404, {"code": 404, "message": "not found"})

            def do_DELETE(self) -> None:  # noqa: N802
                self._record(b"")
                sid = self.path.rstrip("/").rsplit("/", 1)[-1]
                fake.alive.discard(sid)
                self._send(204)

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                self._record(body)
                if self.path.startswith("/v2/sandboxes"):
                    fake.created += 1
                    sid = f"sbx{fake.created}"
                    fake.alive.add(sid)
                    self._send(201, {"templateID": "code-interpreter-v1", "sandboxID": sid, "clientID": "c1",
                                     "envdVersion": "0.2.0", "envdAccessToken": None, "domain": None})
                elif self.path.startswith("/execute"):
                    self._execute(json.loads(body or b"{}"))
                else:
                    self._send(404, {"code": 404, "message": "not found"})

            def _execute(self, req: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def emit(obj: dict[str, Any]) -> None:
                    line = json.dumps(obj).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()

                emit({"type": "number_of_executions", "execution_count": 1})
                if fake.fail_execute:
                    emit({"type": "error", "name": "KernelDied", "value": "boom", "traceback": ""})
                else:
                    done = subprocess.run([sys.executable, "-c", req.get("code", "")], capture_output=True,
                                          text=True, timeout=120)
                    stamp = int(time.time() * 1e9)
                    for line in done.stdout.splitlines(keepends=True):
                        emit({"type": "stdout", "text": line, "timestamp": stamp})
                    for line in done.stderr.splitlines(keepends=True):
                        emit({"type": "stderr", "text": line, "timestamp": stamp})
                    if done.returncode:
                        emit({"type": "error", "name": "Error", "value": done.stderr[-500:], "traceback": ""})
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeE2B:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def e2b_fake(monkeypatch):
    """A running FakeE2B with the SDK pointed at it (``E2B_API_URL``, ``E2B_SANDBOX_URL``)."""
    with FakeE2B() as server:
        monkeypatch.setenv("E2B_API_URL", server.url)
        monkeypatch.setenv("E2B_SANDBOX_URL", server.url)
        yield server
