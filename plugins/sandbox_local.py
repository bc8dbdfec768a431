"""The local sandboxes as stages: ``bubblewrap`` (the default) and ``rlimit`` (opt-in, weaker).

What it is: thin stage classes over sandbox.bubblewrap.BubblewrapPool and sandbox.rlimit.RlimitPool,
each with a pydantic Options model and the sandbox verb ``execute(jobs) -> list[Result]``. The
pool (warm workers) is built on first use and kept until ``close``. ``bubblewrap`` refuses to run
(SandboxUnavailable) where it cannot create its namespaces, naming the ``rlimit`` opt-in;
``rlimit`` (mount, network and PID namespaces through ``unshare``, read-only host filesystem)
warns loudly whenever it is created and refuses where ``unshare`` cannot contain it, unless
``allow_unsafe: true`` (then rlimits and a wall clock only). What it is not: the isolation
itself (see sandbox/).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import OptionsT, Resources, Stage, StageContext
from sandbox.protocol import Job, Result


class BubblewrapOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    concurrency: int | None = Field(None, ge=1, description="warm workers; default: the cores")
    disk_mb: int = Field(64, ge=1, description="size of each worker's tmpfs work directory")
    extra_ro_binds: list[str] = Field(default_factory=list,
                                      description="host directories bound read-only and put on "
                                                  "sys.path (e.g. a site-packages)")


class RlimitOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    concurrency: int | None = Field(None, ge=1, description="warm workers; default: the cores")
    disk_mb: int = Field(64, ge=1, description="size of each worker's tmpfs /tmp (the job work directories)")
    allow_unsafe: bool = Field(False, description="where unshare cannot give the workers their own mount, "
                                                  "network and PID namespaces, run jobs anyway with rlimits "
                                                  "and a wall clock only (host filesystem, network and "
                                                  "loopback exposed) instead of refusing")


class _PooledSandbox(Stage[OptionsT]):
    kind = "sandbox"
    resources: ClassVar[Resources] = Resources(num_cpus=1.0)

    def __init__(self, options: OptionsT | None = None, context: StageContext | None = None) -> None:
        super().__init__(options, context)
        self._pool: Any = None

    def _make_pool(self) -> Any:
        raise NotImplementedError

    def execute(self, jobs: Sequence[Job]) -> list[Result]:
        """Run the jobs; one Result each, in input order."""
        if self._pool is None:
            self._pool = self._make_pool()
        return list(self._pool.execute(list(jobs)))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> _PooledSandbox[OptionsT]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BubblewrapSandbox(_PooledSandbox[BubblewrapOptions]):
    """Untrusted code in bubblewrap: no network, read-only system, tmpfs work dir, rlimits."""

    name = "bubblewrap"

    @classmethod
    def preflight(cls, options: BubblewrapOptions) -> list[str]:
        from sandbox.bubblewrap import SandboxUnavailable, bwrap_binary

        try:
            bwrap_binary()
        except SandboxUnavailable as exc:
            return [f"the 'bubblewrap' sandbox cannot start: {exc}"]
        return []

    def _make_pool(self) -> Any:
        from sandbox.bubblewrap import BubblewrapPool

        opts = self.options
        return BubblewrapPool(opts.concurrency, opts.disk_mb, opts.extra_ro_binds)


class RlimitSandbox(_PooledSandbox[RlimitOptions]):
    """unshare'd namespaces, read-only host filesystem, rlimits: weaker than bubblewrap, and it says so."""

    name = "rlimit"

    @classmethod
    def preflight(cls, options: RlimitOptions) -> list[str]:
        from sandbox.rlimit import REFUSAL, probe

        why = None if options.allow_unsafe else probe()
        return [] if why is None else [REFUSAL.format(why=" ".join(why.split()))]

    def __init__(self, options: RlimitOptions | None = None, context: StageContext | None = None) -> None:
        super().__init__(options, context)
        import warnings

        from sandbox.rlimit import CONTAINED_WARNING, WARNING, RlimitWarning

        text = WARNING if self.options.allow_unsafe else CONTAINED_WARNING
        warnings.warn(text, RlimitWarning, stacklevel=2)

    def _make_pool(self) -> Any:
        from sandbox.rlimit import RlimitPool

        opts = self.options
        return RlimitPool(opts.concurrency, quiet=True, allow_unsafe=opts.allow_unsafe, disk_mb=opts.disk_mb)


@hookimpl
def register_sandboxes() -> list[type]:
    return [BubblewrapSandbox, RlimitSandbox]
