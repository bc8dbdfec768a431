"""GPU check (issue 13, part 9): the ``vllm`` sampler on GPUs through the engine, against raw vLLM.

What it is: what scripts/gpu-check.sh runs in its venv (vLLM's CUDA build and autodidact) on any
machine with an NVIDIA GPU. Each step starts when the one before has let go of the GPUs:
1. one DPO step with the ``dpo`` trainer, in this process, on GPU 0; a small LoRA adapter comes out;
2. raw ``vllm.LLM.generate`` on one GPU, in a Ray task whose worker exits afterwards: the baseline;
3. the ``vllm`` sampler through the engine's ``ReplicaPool`` with 2 replicas (1 on a one-GPU
   machine) on the same batch (the same prompt token ids, greedy): tokens/s against the baseline,
   per replica, and how many texts equal the baseline's;
4. LoRA hand-off: the same prompts naming the DPO adapter's directory; the pool ships it through
   the object store, every replica serves it (each did part of the batch, every result carries
   the adapter's version).
It prints one markdown table (``--json PATH`` also writes the figures). Exit 2 without a GPU or
without vllm, 1 when a check fails. What it is not: a CI test (CI has no GPU) or a vLLM tuning.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the clone's engine, also when autodidact is not installed

TOPICS = ["tides", "bread", "glaciers", "compilers", "bees", "lighthouses", "chess", "volcanoes",
          "libraries", "trains", "coral", "maps", "clocks", "rivers", "kites", "telescopes"]


@dataclass
class Row:
    check: str
    result: str
    against: str = ""
    ratio: str = ""
    ok: bool | None = None


def prompts(count: int) -> list[str]:
    return [f"Write a short paragraph about {TOPICS[i % len(TOPICS)]} for reader number {i}."
            for i in range(count)]


def gpu_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def dpo_step(model: str, out_dir: Path) -> tuple[Any, dict[str, float]]:
    """One DPO optimizer step (the ``dpo`` trainer, LoRA) in this process; (new version, figures)."""
    import torch

    from engine.contracts import StageContext
    from engine.records import PreferencePair
    from engine.training.protocol import base_version
    from plugins.trainer_dpo import DPOOptions, DPOTrainerStage

    pairs = [PreferencePair(prompt=f"What is {a} plus {a}?", chosen=f"{2 * a}.", rejected=f"{2 * a + 1}.")
             for a in range(4)]
    options = DPOOptions(max_steps=1, batch_size=4, max_length=128, learning_rate=1e-3,
                         lora={"r": 8, "alpha": 16})
    stage = DPOTrainerStage(options, StageContext(seed=0, model_name=model))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    version = stage.train(pairs, base_version(model), str(out_dir))
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0
    if cuda:
        torch.cuda.empty_cache()
    loss = float(version.steps[-1].get("loss", float("nan"))) if version.steps else float("nan")
    return version, {"seconds": seconds, "peak_gpu_mb": peak, "loss": loss, "steps": len(version.steps)}


def token_ids(tokenizer: Any, text: str) -> list[int]:
    """A user turn's prompt token ids, built as the ``vllm`` sampler builds them."""
    chat = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                         tokenize=False)
    return list(tokenizer(chat, add_special_tokens=False)["input_ids"])


def raw_generate(cls: type[Any], options: Any, model: str, texts: list[str],
                 max_tokens: int) -> dict[str, Any]:
    """``vllm.LLM.generate`` on the whole batch at once, with the engine the sampler would start
    (the same ``vllm.LLM`` arguments), after a warm-up call; tokens, seconds, texts."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from engine.contracts import StageContext

    llm = cls(options, StageContext(model_name=model)).load().llm
    tokenizer = llm.get_tokenizer()
    batch = [TokensPrompt(prompt_token_ids=token_ids(tokenizer, t)) for t in texts]
    params = SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=max_tokens)
    llm.generate(batch[:8], params, use_tqdm=False)
    t0 = time.perf_counter()
    outs = llm.generate(batch, params, use_tqdm=False)
    seconds = time.perf_counter() - t0
    return {"tokens": sum(len(o.outputs[0].token_ids) for o in outs), "seconds": seconds,
            "texts": [o.outputs[0].text for o in outs]}


def measure(cls: type[Any], options: Any, model: str, replicas: int, count: int, max_tokens: int,
            work: Path) -> tuple[list[Row], dict[str, Any]]:
    """Steps 1-4 (module docstring) with sampler class ``cls``; the table's rows and the figures."""
    import ray

    from engine.contracts import StageContext, resources_of
    from engine.runtime.pool import ReplicaPool
    from engine.runtime.ray_services import start_ray
    from engine.sampling.protocol import SampleRequest

    rows: list[Row] = []
    version, dpo = dpo_step(model, work / "dpo-adapter")
    on_gpu = dpo["peak_gpu_mb"] > 0
    trained = on_gpu and dpo["steps"] == 1 and math.isfinite(dpo["loss"])
    rows.append(Row("DPO step (`dpo` trainer, LoRA r 8, batch 4, model load included)",
                    f"{dpo['seconds']:.1f} s, loss {dpo['loss']:.4f}, peak {dpo['peak_gpu_mb']:.0f} MiB on "
                    f"{'GPU' if on_gpu else 'CPU'}", ok=trained))

    res = resources_of(cls, options)
    start_ray(None, None, res.num_cpus * (replicas + 1))
    texts = prompts(count)
    task = ray.remote(num_cpus=res.num_cpus, num_gpus=res.num_gpus, max_calls=1)(raw_generate)
    raw = ray.get(task.remote(cls, options, model, texts, max_tokens))
    raw_rate = raw["tokens"] / raw["seconds"]
    per = f"{res.num_gpus:g} GPU" if res.num_gpus else f"{res.num_cpus:g} CPU"
    rows.append(Row(f"raw `vllm.LLM.generate`, one engine ({per}), {count} prompts x {max_tokens} tokens",
                    f"{raw_rate:,.0f} tok/s", "baseline", "1.00x"))

    pool = ReplicaPool.create(cls, options, StageContext(model_name=model), replicas)
    try:
        warm = [SampleRequest.chat(t, max_tokens=max_tokens) for t in texts[:8]]
        ray.get([a.run.remote("sample", warm, {}) for a in pool.actors])  # each engine starts, warms up
        requests = [SampleRequest.chat(t, max_tokens=max_tokens) for t in texts]
        t0 = time.perf_counter()
        base = pool.sample(requests)
        seconds = time.perf_counter() - t0
        tokens = sum(c.tokens for r in base for c in r.completions)
        rate = tokens / seconds
        same = sum(r.completions[0].text == t for r, t in zip(base, raw["texts"], strict=True))
        rows.append(Row(f"`vllm` sampler, engine pool of {replicas} replica(s), same batch",
                        f"{rate:,.0f} tok/s", "raw",
                        f"{rate / raw_rate:.2f}x ({rate / raw_rate / replicas:.2f}x per replica)"))
        rows.append(Row("greedy texts equal to raw's", f"{same}/{count}"))

        adapter = str(version.adapter_path)
        expected = pool.model_version_for(adapter)  # shipped once through the object store
        before = list(pool.work_done)
        lora = [r.model_copy(update={"adapter": adapter}) for r in requests]
        t0 = time.perf_counter()
        tuned = pool.sample(lora)
        lora_seconds = time.perf_counter() - t0
        served = [after - b for after, b in zip(pool.work_done, before, strict=True)]
        versions = {r.model_version for r in tuned}
        changed = sum(a.completions[0].text != b.completions[0].text
                      for a, b in zip(tuned, base, strict=True))
        lora_rate = sum(c.tokens for r in tuned for c in r.completions) / lora_seconds
        handed = all(s > 0 for s in served) and versions == {expected} == {version.id}
        rows.append(Row("LoRA hand-off: the DPO adapter served by every replica",
                        f"work per replica {served}, version {expected}, {changed}/{count} texts changed",
                        ok=handed))
        rows.append(Row("`vllm` sampler with the adapter", f"{lora_rate:,.0f} tok/s", "without",
                        f"{lora_rate / rate:.2f}x"))
    finally:
        pool.close()
        ray.shutdown()
    figures = {"dpo": dpo, "raw": {k: raw[k] for k in ("tokens", "seconds")},
               "pool": {"replicas": replicas, "tokens": tokens, "seconds": seconds, "same_as_raw": same},
               "lora": {"served": served, "version": expected, "changed": changed, "seconds": lora_seconds}}
    return rows, figures


def table(rows: list[Row]) -> str:
    lines = ["| check | result | against | ratio | met |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        met = "" if r.ok is None else ("yes" if r.ok else "**no**")
        lines.append(f"| {r.check} | {r.result} | {r.against} | {r.ratio} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="alias, local HF directory or hub id")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--replicas", type=int, default=None, help="default: 2, or 1 on a one-GPU machine")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    parser.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs (faster start)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    gpus = gpu_count()
    if gpus == 0:
        print("error: no NVIDIA GPU is visible here (torch.cuda finds none); the GPU check measures the "
              "vllm sampler on GPUs: run scripts/gpu-check.sh on a machine with one", file=sys.stderr)
        return 2
    try:
        import vllm  # noqa: F401
    except ImportError:
        print("error: vllm is not installed in this interpreter; run scripts/gpu-check.sh, which "
              "builds a venv with it", file=sys.stderr)
        return 2
    from plugins.sampler_vllm import VLLMOptions, VLLMSampler

    replicas = args.replicas or min(2, gpus)
    options = VLLMOptions(model=args.model, dtype="bfloat16", max_loras=1, max_lora_rank=8,
                          gpu_memory_utilization=args.gpu_memory_utilization,
                          enforce_eager=args.enforce_eager)
    with tempfile.TemporaryDirectory(prefix="autodidact-gpu-check-") as work:
        rows, figures = measure(VLLMSampler, options, args.model, replicas, args.prompts, args.max_tokens,
                                Path(work))
    import torch

    names = sorted({torch.cuda.get_device_name(i) for i in range(gpus)})
    print(f"\nGPU check: {gpus} x {', '.join(names)}, model {args.model}, {time.strftime('%Y-%m-%d')}\n")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"gpus": gpus, "names": names, "model": args.model,
                                         "rows": [asdict(r) for r in rows], "figures": figures}, indent=2))
    return 1 if any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
