"""The ``e2b`` sandbox stage: batches run in a remote E2B sandbox (one per batch, killed at its end).

What it is: a thin stage over sandbox.e2b.E2BPool with a pydantic Options model. The options
hold the *name* of the environment variable with the API key, never the key, so the key cannot
reach a config dump or the lineage store. The SDK (``e2b-code-interpreter``, the ``e2b`` extra)
is imported only when a batch runs. What it is not: E2B itself, or a local fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Resources, Stage
from sandbox.protocol import Job, Result


class E2BOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key_env: str = Field("E2B_API_KEY", description="environment variable holding the API key")
    template: str | None = Field(None, description="E2B template id (default: the SDK's code interpreter)")
    sandbox_timeout_s: int = Field(600, ge=10, description="lifetime of the batch's sandbox")
    request_timeout_s: float = Field(60.0, gt=0, description="timeout of each API request")
    concurrency: int = Field(8, ge=1, description="harness servers run in parallel inside the sandbox")


class E2BSandbox(Stage[E2BOptions]):
    """Runs each batch in a fresh E2B sandbox; the API key comes from the environment."""

    kind = "sandbox"
    name = "e2b"
    resources: ClassVar[Resources] = Resources(num_cpus=0.1)

    @classmethod
    def preflight(cls, options: E2BOptions) -> list[str]:
        import importlib.util
        import os

        problems = [] if importlib.util.find_spec("e2b_code_interpreter") else [
            "the 'e2b' sandbox needs the 'e2b-code-interpreter' package: pip install 'autodidact[e2b]'"]
        if not os.environ.get(options.api_key_env):
            problems.append(f"the 'e2b' sandbox reads its API key from ${options.api_key_env}, "
                            "which is not set")
        return problems

    def execute(self, jobs: Sequence[Job]) -> list[Result]:
        """Run the jobs remotely; one Result each, in input order."""
        from sandbox.e2b import E2BPool

        opts = self.options
        pool = E2BPool(opts.api_key_env, opts.template, opts.sandbox_timeout_s, opts.request_timeout_s,
                       opts.concurrency)
        return pool.execute(list(jobs))


@hookimpl
def register_sandboxes() -> list[type]:
    return [E2BSandbox]
