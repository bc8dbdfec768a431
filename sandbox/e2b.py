"""The E2B backend: one remote E2B sandbox per batch, the same harness inside it, killed at the end.

What it is: ``E2BPool.execute(jobs)`` creates one sandbox with ``e2b-code-interpreter`` (API key
read from the environment variable named in the options, passed to the SDK and nowhere else:
never logged, never put in a Result or a record, redacted from error messages), sends one
``run_code`` that writes sandbox/harness.py and forkserver.py into the sandbox and runs fork servers (one per
remote core, no PID namespace: the E2B VM is the isolation) over the batch, then judges every
answer locally exactly as the bubblewrap backend does (nonce check included), and kills the
sandbox in a ``finally``. What it does not cover: E2B's own isolation and billing; network
access inside the sandbox is whatever the template allows; a batch that outlives
``sandbox_timeout_s`` is lost (its jobs come back as ``error``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Sequence
from typing import Any

from sandbox.bubblewrap import FORKSERVER, HARNESS, SandboxUnavailable
from sandbox.harness import count_tests
from sandbox.protocol import Job, Result, job_message, judge_answer

log = logging.getLogger(__name__)
MARK = "@@autodidact-sandbox@@"

DRIVER = """
import json, os, shutil, subprocess, sys, tempfile, threading
sources, jobs, budget = {sources!r}, {jobs!r}, {budget!r}
d = tempfile.mkdtemp(prefix="autodidact-")
for name, src in sources.items():
    with open(os.path.join(d, name), "w") as f:
        f.write(src)
path = os.path.join(d, "forkserver.py")
roots = [tempfile.mkdtemp(prefix="work-", dir=d) for _ in range(len(jobs))]
n = max(1, min(os.cpu_count() or 1, {concurrency}, len(jobs)))
out = [None] * len(jobs)
def work(k):
    idx = list(range(k, len(jobs), n))
    try:
        feed = "\\n".join(jobs[i] for i in idx) + "\\n"
        p = subprocess.run([sys.executable, "-I", "-S", "-B", path, "--root", roots[k]], input=feed,
                           capture_output=True,
                           text=True, timeout=sum(budget[i] for i in idx) + 10, env={{}})
        lines = p.stdout.splitlines()
    except subprocess.TimeoutExpired:
        lines = []
    for i, line in zip(idx, lines):
        out[i] = line
threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for i, line in enumerate(out):
    print({mark!r}, i, line if line else "null", flush=True)
shutil.rmtree(d, ignore_errors=True)
"""


class E2BPool:
    """A ``Sandbox`` backed by E2B; ``api_key_env`` names the variable that holds the key."""

    def __init__(self, api_key_env: str = "E2B_API_KEY", template: str | None = None,
                 sandbox_timeout_s: int = 600, request_timeout_s: float = 60.0, concurrency: int = 8) -> None:
        self.api_key_env = api_key_env
        self.template = template
        self.sandbox_timeout_s = sandbox_timeout_s
        self.request_timeout_s = request_timeout_s
        self.concurrency = concurrency
        self.sandboxes_created = 0

    def _key(self) -> str:
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise SandboxUnavailable(f"the E2B backend needs an API key in ${self.api_key_env}")
        return key

    def _redact(self, text: str, key: str) -> str:
        return text.replace(key, "[redacted]") if key else text

    def execute(self, jobs: Sequence[Job]) -> list[Result]:
        if not jobs:
            return []
        from e2b_code_interpreter import Sandbox

        key = self._key()
        nonces = [secrets.token_hex(16) for _ in jobs]
        messages = [json.dumps(job_message(job, nonce, None, i)) for i, (job, nonce) in
                    enumerate(zip(jobs, nonces, strict=True))]
        budget = [job.limits.timeout_s + 5 for job in jobs]
        sources = {"harness.py": HARNESS.read_text(), "forkserver.py": FORKSERVER.read_text()}
        code = DRIVER.format(sources=sources, jobs=messages, budget=budget, mark=MARK,
                             concurrency=self.concurrency)
        answers: dict[int, Any] = {}
        failure = ""
        sbx = None
        try:
            opts: dict[str, Any] = {"api_key": key, "timeout": self.sandbox_timeout_s,
                                    "request_timeout": self.request_timeout_s}
            if self.template:
                opts["template"] = self.template
            sbx = Sandbox.create(**opts)
            self.sandboxes_created += 1
            execution = sbx.run_code(code, timeout=sum(budget) + 30, request_timeout=self.request_timeout_s)
            if execution.error is not None:
                failure = f"driver failed: {execution.error.name}: {execution.error.value}"
            for line in "".join(execution.logs.stdout).splitlines():
                if line.startswith(MARK + " "):
                    _, idx, payload = line.split(" ", 2)
                    answers[int(idx)] = json.loads(payload)
        except Exception as exc:  # any SDK or transport failure: the jobs fail, the engine goes on
            failure = self._redact(f"e2b: {type(exc).__name__}: {exc}", key)
            log.warning("E2B batch failed: %s", failure)
        finally:
            if sbx is not None:
                try:
                    sbx.kill()
                except Exception as exc:
                    log.warning("E2B kill failed: %s", self._redact(f"{type(exc).__name__}: {exc}", key))
        results = []
        for i, job in enumerate(jobs):
            try:
                expected = count_tests(job.tests)
            except (SyntaxError, ValueError):
                expected = 0
            answer = answers.get(i)
            if answer is None:
                results.append(Result(status="error", detail=failure or "no answer from the E2B sandbox"))
            else:
                results.append(judge_answer(answer, nonces[i], expected, job.limits))
        return results

    def close(self) -> None:
        """Nothing to close: each batch's sandbox is killed when the batch ends."""
