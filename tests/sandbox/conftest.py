"""Fixtures for the attack suite: one warm bubblewrap pool per module, and a survival check."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from sandbox.bubblewrap import BubblewrapPool, probe
from sandbox.protocol import Job, Limits

SMALL = Limits(timeout_s=3.0, cpu_s=2.0, memory_mb=256, file_mb=4, max_processes=16, output_bytes=4096)


@pytest.fixture(scope="module")
def pool():
    why = probe()
    if why is not None:
        pytest.skip(f"bubblewrap unavailable here: {why}")
    p = BubblewrapPool(concurrency=2, disk_mb=16)
    yield p
    p.close()


@pytest.fixture
def run(pool):
    """Run one job with small limits; afterwards prove the engine survived (a pass still passes)."""

    def go(program: str, tests: str = "assert True", **limits):
        job = Job(program=program, tests=tests, limits=SMALL.model_copy(update=limits))
        result = pool.execute([job])[0]
        after = pool.execute([Job(program="def f():\n    return 1", tests="assert f() == 1")])[0]
        assert after.status == "passed", f"engine did not survive: {after}"
        return result

    return go


@pytest.fixture
def listener() -> Iterator[tuple[int, Callable[[], None]]]:
    """A TCP listener on 127.0.0.1: (its port, ``assert_untouched()``, which checks that no
    connection reached it)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)

    def assert_untouched() -> None:
        with pytest.raises(TimeoutError):
            server.accept()

    try:
        yield server.getsockname()[1], assert_untouched
    finally:
        server.close()
