"""Helpers for the whole-loop integration tests: run a shipped config to the end."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine.config import load_config
from engine.manager import create_plugin_manager
from engine.runtime.run import start_run

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture
def finished_run(tmp_path: Path) -> Callable[[str, list[str]], tuple[Path, str]]:
    """Run ``configs/NAME`` with overrides into tmp_path; assert it finished every iteration and
    return (run directory, run id)."""

    def go(name: str, overrides: list[str]) -> tuple[Path, str]:
        pm = create_plugin_manager()
        resolved = load_config(CONFIGS / name, [f"output_dir={tmp_path}", *overrides], pm)
        run_dir = start_run(resolved, pm)
        state = json.loads((run_dir / "run.json").read_text())
        assert state["status"] == "finished"
        assert state["iterations_done"] == resolved.config.iterations
        return run_dir, str(state["run_id"])

    return go


ROOT = CONFIGS.parent


def readme_blocks(section: str) -> dict[str, str]:
    """Code blocks of README's ``## <section>`` whose first line is a file name (``# name.py``),
    keyed by it; other blocks (an example with a longer first comment) are left out."""
    import re

    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = {}
    for block in re.findall(r"```(?:toml|python)\n(.*?)```", body, re.S):
        first, rest = block.split("\n", 1)
        if re.fullmatch(r"# [\w.-]+", first.strip()):
            blocks[first.lstrip("# ").strip()] = rest
    return blocks


@pytest.fixture(scope="session")
def readme_section() -> Callable[[str], dict[str, str]]:
    """``readme_section("Write a plugin")``: that section's files by name."""
    return readme_blocks


@pytest.fixture(scope="session")
def readme_package(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Any]:
    """``with readme_package(section, dist) as pkg:`` README's files for ``section`` written to a
    folder, pip-installed (``--no-deps``) into this interpreter, uninstalled afterwards."""
    import subprocess
    import sys
    from contextlib import contextmanager

    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]

    @contextmanager
    def install(section: str, dist: str) -> Iterator[Path]:
        pkg = tmp_path_factory.mktemp(dist)
        for name, body in readme_blocks(section).items():
            (pkg / name).write_text(body)
        subprocess.run(pip + ["install", "--no-deps", "--no-build-isolation", str(pkg)], check=True, cwd=pkg)
        try:
            yield pkg
        finally:
            subprocess.run(pip + ["uninstall", "-y", dist], check=True)

    return install


@pytest.fixture(scope="session")
def autodidact_cli() -> Callable[..., Any]:
    """``autodidact_cli("plugins", "list")``: the CLI in a subprocess (sees installed entry points)."""
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                              cwd=ROOT)

    return run


@pytest.fixture(scope="session")
def package_tests_pass() -> Callable[[Path, str], None]:
    """``package_tests_pass(pkg, "test_x.py")``: a package's own test file passes (one test) in a
    pytest subprocess, with the fixtures the engine ships."""
    import subprocess
    import sys

    def check(pkg: Path, test_file: str) -> None:
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                 str(pkg / test_file)], capture_output=True, text=True, cwd=pkg)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 passed" in result.stdout

    return check


class RayProcesses:
    """For tests that start their own ``ray start`` processes: free loopback ports, and killing a
    process session (each ``ray start --block`` runs in its own, with its raylet, GCS and workers),
    so a test never needs ``ray stop``, which would kill every Ray on the machine."""

    @staticmethod
    def free_ports(n: int) -> list[int]:
        import socket

        socks = [socket.socket() for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        ports = [s.getsockname()[1] for s in socks]
        for s in socks:
            s.close()
        return ports

    @staticmethod
    def kill_session(sid: int) -> None:
        """SIGKILL every process of session ``sid``."""
        import os
        import signal

        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            try:
                if os.getsid(pid) == sid:
                    os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture(scope="session")
def ray_procs() -> type[RayProcesses]:
    return RayProcesses


@contextmanager
def simulated_cluster(head: dict[str, Any], nodes: list[dict[str, Any]], module: Any) -> Iterator[Any]:
    """A ``ray.cluster_utils.Cluster`` (head node ``head``, one worker node per ``nodes`` entry) on
    this machine, this process connected to it and ``module``'s test stages pickled by value; the
    environment it changes is restored and everything is shut down afterwards."""
    import ray
    from ray.cluster_utils import Cluster

    from engine.runtime.ray_services import start_ray

    saved = {k: os.environ.get(k) for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED")}
    os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1", RAY_USAGE_STATS_ENABLED="0")
    ray.shutdown()
    made = Cluster(initialize_head=True, head_node_args=head)
    try:
        for node in nodes:
            made.add_node(**node)
        made.wait_for_nodes()
        start_ray(made.address, None, 0)
        ray.cloudpickle.register_pickle_by_value(module)
        yield made
    finally:
        ray.shutdown()
        made.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def make_cluster() -> Callable[..., Any]:
    """:func:`simulated_cluster` for a test module's own cluster fixture."""
    return simulated_cluster


def run_bench_quick(package: str) -> str:
    """``python -m bench.<package> --quick`` from the repository root: asserts it exits 0 and leaves
    bench/<package>/RESULTS.md as it was (only full runs write it); returns what it printed."""
    import subprocess
    import sys

    results = ROOT / "bench" / package / "RESULTS.md"
    before = results.stat().st_mtime_ns if results.exists() else None
    result = subprocess.run([sys.executable, "-m", f"bench.{package}", "--quick"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (results.stat().st_mtime_ns if results.exists() else None) == before, "--quick wrote RESULTS.md"
    print(result.stdout)
    return result.stdout


@pytest.fixture
def bench_quick() -> Callable[[str], str]:
    """:func:`run_bench_quick` for a test."""
    return run_bench_quick
