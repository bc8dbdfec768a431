"""Faults in the lineage store mid-run: a full disk under a SQLite store, and a PostgreSQL server
that goes away mid-iteration. Each run stops with one line (exit 1) saying what failed and to
resume; once the cause is fixed, ``resume`` finishes it, and nothing is lost or duplicated: the
funnel (records out per iteration and role) and every record's content equal a run that had no
fault. The disk is a real tmpfs (mounted here; root only); the PostgreSQL server is a second one
that this test starts with initdb and pg_ctl in a temporary directory, not the shared one on 5432.
The loop is SELF on the scripted sampler with Ray off: seconds per run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine import hookimpl
from engine.cli import app

PG_BIN = Path("/usr/lib/postgresql/15/bin")
CONFIG = """loop: self
iterations: 2
sampler:
  name: scripted
  options:
    order: hash
    responses: ["The answer is below.", "Looks fine. Final judgement: Yes",
                "Reflection: be precise. [START]A better answer.[END]"]
stages: {respond: {name: respond, options: {n: 2}}, judge: {name: llm-judge, options: {votes: 3}}}
data: {source: data/self-prompts.jsonl, limit: 6}
runtime: {ray: false}
"""


class FaultAt:
    """A plugin that calls ``action`` once, after the lineage store took its ``after``-th batch of
    records in iteration 1 (mid-iteration: later stages of it have not run)."""

    def __init__(self, action: Callable[[], None], after: int = 4) -> None:
        self.action, self.after, self.seen, self.fired = action, after, 0, False

    @hookimpl
    def on_records_written(self, run_id: str, records: list[Any]) -> None:
        self.seen += 1
        if self.seen == self.after and not self.fired:
            self.fired = True
            self.action()


@pytest.fixture
def with_plugin(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], None]:
    import engine.manager
    import engine.runtime.run

    real = engine.manager.create_plugin_manager

    def use(plugin: Any) -> None:
        def make(*args: Any, **kwargs: Any) -> Any:
            pm = real(*args, **kwargs)
            if plugin is not None:
                pm.register(plugin)
            return pm

        monkeypatch.setattr(engine.manager, "create_plugin_manager", make)
        monkeypatch.setattr(engine.runtime.run, "create_plugin_manager", make)

    return use


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _write_config(path: Path, output_dir: Path, store: str | None = None) -> Path:
    text = CONFIG + f"output_dir: {output_dir}\n" + (f"store: {{url: '{store}'}}\n" if store else "")
    path.write_text(text)
    return path


def _content(store_url: str, run_id: str) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """(funnel: records out per iteration and role, records: their iteration, kind and content)."""
    from engine.lineage import queries
    from engine.lineage.store import LineageStore

    store = LineageStore.open(store_url, create=False)
    try:
        funnel = Counter({(r["iteration"], r["role"]): r["n_out"] for r in queries.funnel(store, run_id)})
        records: Counter[tuple[Any, ...]] = Counter()
        for it in (1, 2):
            for kind in ("task", "response", "critique", "refinement"):
                for row in queries.records_of_kind(store, run_id, it, kind):
                    p = row["payload"] if isinstance(row["payload"], dict) else json.loads(row["payload"])
                    meta = json.dumps(p.get("meta"), sort_keys=True)
                    records[(it, kind, p.get("text"), p.get("prompt"), meta)] += 1
        ids = [r["id"] for it in (1, 2) for k in ("response", "critique")
               for r in queries.records_of_kind(store, run_id, it, k)]
        assert len(ids) == len(set(ids)), "no record is stored twice"
        return funnel, records
    finally:
        store.close()


def _state(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "run.json").read_text()))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Counter[Any], Counter[Any]]:
    tmp = tmp_path_factory.mktemp("reference")
    code, output = _cli("run", str(_write_config(tmp / "cfg.yaml", tmp / "runs")))
    assert code == 0, output
    (run_dir,) = (tmp / "runs").iterdir()
    state = _state(run_dir)
    return _content(state["store_url"], state["run_id"])


def _one_error_line(output: str, *words: str) -> None:
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in output, output
    for w in words:
        assert w in errors[0], errors[0]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_stops_the_run_in_one_line_and_resume_finishes_it(
        tmpfs: Path, tmp_path: Path, with_plugin: Callable[[Any], None],
        reference: tuple[Counter[Any], Counter[Any]]) -> None:
    ballast = tmpfs / "ballast"

    def fill() -> None:
        with open(ballast, "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass

    with_plugin(FaultAt(fill))
    cfg = _write_config(tmp_path / "cfg.yaml", tmpfs / "runs")
    code, output = _cli("run", str(cfg))
    assert code == 1, output
    _one_error_line(output, "resume")
    assert "disk is full" in output or "No space left" in output or "no space left" in output, output
    (run_dir,) = (tmpfs / "runs").iterdir()

    ballast.unlink()  # space returns
    with_plugin(None)
    code, output = _cli("resume", str(run_dir))
    assert code == 0, output
    state = _state(run_dir)
    assert state["status"] == "finished" and state["iterations_done"] == 2
    assert _content(state["store_url"], state["run_id"]) == reference


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def own_postgres() -> Iterator[tuple[str, Callable[[str], None]]]:
    """A PostgreSQL server of this test's own, on a free loopback port; ``ctl("stop"|"start")``."""
    if not (PG_BIN / "initdb").is_file() or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL 15's initdb and runuser (the CI machine has both)")
    root = Path(tempfile.mkdtemp(prefix="autodidact-pg-", dir="/tmp"))
    shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()

    def as_postgres(*argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True,
                       timeout=60)

    as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -k {root}"

    def ctl(what: str) -> None:
        extra = ["-m", "immediate"] if what == "stop" else ["-o", opts, "-l", str(root / "log")]
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", *extra, what)

    ctl("start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", ctl
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data), "-w",
                        "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_a_postgres_server_that_goes_away_mid_iteration(
        own_postgres: tuple[str, Callable[[str], None]], tmp_path: Path, with_plugin: Callable[[Any], None],
        reference: tuple[Counter[Any], Counter[Any]]) -> None:
    url, ctl = own_postgres
    with_plugin(FaultAt(lambda: ctl("stop")))
    cfg = _write_config(tmp_path / "cfg.yaml", tmp_path / "runs", store=url)
    code, output = _cli("run", str(cfg))
    assert code == 1, output
    _one_error_line(output, "the lineage store failed", "resume")
    (run_dir,) = (tmp_path / "runs").iterdir()

    ctl("start")  # the server is back
    with_plugin(None)
    code, output = _cli("resume", str(run_dir))
    assert code == 0, output
    state = _state(run_dir)
    assert state["status"] == "finished" and state["iterations_done"] == 2
    assert _content(url, state["run_id"]) == reference
