"""Episodes on the real model: batched episode stepping, the adapter hand-off, reinforce against GRPO.

What it is: one command, ``python -m bench.episodes [--quick]``, on SmolLM2-135M-Instruct with the
``transformers`` sampler (built with ``build_stage`` and a ``StageContext``, so the model resolves
the way a run resolves it), that prints one markdown table of measures against baselines measured
in the same run, and writes it to bench/episodes/RESULTS.md in full mode:
  1. Batched episode stepping: ``self-correct`` episodes (two attempts, math verifier, held-out
     procedural problems, greedy) driven by ``Environment.rollout``, which advances every live
     episode one turn per ONE batched sampler call. Batched is one ``rollout(all tasks)``; the
     baseline is ``rollout([task])`` once per task: same environment options, same sampler
     instance, both after a warm-up. Episodes/s and their ratio (target >= 5x). Greedy decoding
     depends on the batch's composition (the sampler's docstring), so the trajectories are compared,
     not asserted equal: the table says how many are identical.
  2. Adapter hand-off per policy step: a fresh LoRA directory per step, saved the way the trainers
     save theirs (peft, ``engine.training.lora.save_version``, the trainer's default LoRA shape), then
     one request with it: the time of that request minus the time of the same request once the
     sampler holds the adapter (the least of 3 tries: on a shared machine noise only adds time).
     The median over the steps, in milliseconds. The first adapter (which also wraps the model in
     peft) is reported apart, and so is the same request on the base model before any adapter
     (what an unmerged LoRA adapter costs every request). In process, not via Ray.
  3. One ``reinforce`` optimizer step against one step of TRL's ``GRPOTrainer``: P prompts x G
     completions of at most T tokens, temperature 1.0, the same LoRA shape (the trainer's
     default), learning rate, KL coefficient (both score a reference with the adapter disabled),
     dtype and torch threads, a trivial reward (1.0 when the completion contains the gold answer).
     GRPO samples its own completions inside ``train()``, so the rows say exactly what each side
     includes: the step alone (reinforce's ``fit()``; GRPO's ``train()`` minus the time in its
     generate call), rollout + step (the engine's sampler samples the P x G completions, then
     ``fit()``; GRPO's whole ``train()``), and end to end with model loading (the sampler's rollout +
     ``ReinforceTrainerStage.train()``, which loads the model, steps and saves the adapter;
     ``GRPOTrainer(...)`` + ``train()``, which saves nothing). Target: reinforce not slower (>= 1x).
The sampler decodes up to max(32, episodes) rows together (the engine's default is 32), so the
batched rollout is one decode batch per turn. The parts run in the order 1, 3, 2, so the sampler
holds no adapter in 1 and 3; libraries are imported before anything is timed.
What it is not: a quality benchmark, a GPU or vLLM measurement, or one of the engine's Ray path
(everything runs in this process). Torch runs on ``--threads`` threads (default 1): on this 2-core
machine shared with other jobs, 2 threads made a decode step ~25x slower (OpenMP threads waiting
on each other), and 1 thread keeps every row comparable.

    python -m bench.episodes            # 64 episodes x 64 tokens; 4 x 4 completions of 64 tokens
    python -m bench.episodes --quick    # 8 episodes x 16 tokens; 2 x 2 completions of 16 tokens
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL = "smollm2-135m-instruct"
LEARNING_RATE = 1e-5
KL_BETA = 0.05


@dataclass(frozen=True)
class Sizes:
    episodes: int  # self-correct episodes (two turns each)
    max_tokens: int  # per turn
    handoffs: int  # fresh adapters timed after the first
    handoff_tokens: int  # new tokens of the hand-off request
    prompts: int  # P: prompts of the RL batch
    generations: int  # G: completions per prompt
    completion_tokens: int  # T: at most, per completion


SIZES = {"full": Sizes(64, 64, 3, 16, 4, 4, 64), "quick": Sizes(8, 16, 3, 4, 2, 2, 16)}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(fn: Callable[..., Any], into: dict[str, float], key: str) -> Callable[..., Any]:
    """``fn``, adding the seconds of each call to ``into[key]``."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into[key] = into.get(key, 0.0) + time.perf_counter() - t0
    return wrapper


def build_sampler(threads: int, batch_size: int) -> Any:
    """The ``transformers`` sampler as a run builds it (options validated, model via the context)."""
    from engine.contracts import StageContext, build_stage
    from plugins.sampler_transformers import TransformersSampler

    opts = {"batch_size": batch_size, "num_threads": threads or None}
    sampler: Any = build_stage(TransformersSampler, opts, StageContext(model_name=MODEL))
    return sampler.load()


# -- 1. batched episode stepping -----------------------------------------------------------------


def episodes(sampler: Any, n: int, max_tokens: int) -> dict[str, Any]:
    """``n`` self-correct episodes: one ``rollout`` of all, then ``rollout([task])`` per task."""
    from engine.contracts import StageContext, build_stage
    from engine.records import Task
    from engine.toolkit.math_problems import held_out
    from plugins.environment_selfcorrect import SelfCorrect

    tasks = [Task(prompt=p.question, meta={"answer": p.answer}) for p in held_out(n + 2)]
    warm, tasks = tasks[n:], tasks[:n]
    env: Any = build_stage(SelfCorrect, {"temperature": 0.0, "max_tokens": max_tokens},
                      StageContext(model_name=MODEL, sampler=sampler))
    env.rollout(warm)  # model, verifier and both code paths warm before timing
    env.rollout(warm[:1])
    env.context.emitted.clear()
    t0 = time.perf_counter()
    batched = env.rollout(tasks)
    t_batched = time.perf_counter() - t0
    env.context.emitted.clear()
    log(f"  batched rollout of {n}: {t_batched:.1f} s")
    t0 = time.perf_counter()
    single = [env.rollout([task])[0] for task in tasks]
    t_single = time.perf_counter() - t0
    env.context.emitted.clear()
    log(f"  {n} rollouts of one: {t_single:.1f} s")

    def tokens(trajs: list[Any]) -> int:
        return sum(len(ids) for t in trajs for ids in (t.token_ids or []))

    def correct(trajs: list[Any], turn: int) -> int:
        rewards = [t.rewards.get("reward", []) for t in trajs]
        return sum(1 for r in rewards if isinstance(r, list) and len(r) > turn and r[turn] > 0)

    return {"n": n, "batched_s": t_batched, "single_s": t_single,
            "same": sum(a.messages == b.messages for a, b in zip(batched, single, strict=True)),
            "tokens": (tokens(batched), tokens(single)),
            "correct": ((correct(batched, 0), correct(batched, 1)), (correct(single, 0), correct(single, 1)))}


# -- 2. adapter hand-off ---------------------------------------------------------------------------


def handoff(sampler: Any, reps: int, max_tokens: int, tmp: Path) -> dict[str, Any]:
    """Per policy step a fresh adapter directory, then one request with it, against the same
    request once it is loaded (see the module doc)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from engine.sampling.protocol import SampleRequest
    from engine.training.lora import LoraOptions, save_version
    from engine.training.protocol import base_version

    lo = LoraOptions()  # the trainers' default adapter shape
    cfg = LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, task_type="CAUSAL_LM",
                     target_modules=list(lo.target_modules), layers_to_transform=lo.layers)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(sampler.context.resolve_model(MODEL)), cfg)
    peft.peft_config["default"].base_model_name_or_path = MODEL
    lora = [p for name, p in peft.named_parameters() if "lora_" in name]

    def policy_step(i: int) -> str:
        """The adapter a training step would save: new weights, a new directory."""
        gen = torch.Generator().manual_seed(1000 + i)
        with torch.no_grad():
            for p in lora:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
        return str(save_version(peft, base_version(MODEL), str(tmp / f"policy-step-{i}")).adapter_path)

    question = "Solve it step by step, then end with: The answer is <number>.\n\nWhat is 17 + 25?"

    def serve(adapter: str | None) -> float:
        t0 = time.perf_counter()
        req = SampleRequest.chat(question, max_tokens=max_tokens, temperature=0.0, adapter=adapter)
        sampler.sample([req])
        return time.perf_counter() - t0

    def once(i: int) -> tuple[float, float]:
        path = policy_step(i)
        new = serve(path)
        return new, min(serve(path) for _ in range(3))

    assert sampler._peft is None, "the hand-off is measured on a sampler that has no adapter yet"
    base = min(serve(None) for _ in range(3))
    first_new, first_loaded = once(0)
    steps = [once(i) for i in range(1, reps + 1)]
    log(f"  hand-off: first {1000 * (first_new - first_loaded):.0f} ms, then "
        + ", ".join(f"{1000 * (a - b):.0f}" for a, b in steps) + " ms")
    return {"first": (first_new, first_loaded), "steps": steps, "base_s": base,
            "median_ms": 1000 * statistics.median(a - b for a, b in steps),
            "held": len(getattr(sampler._peft, "peft_config", {}))}


# -- 3. reinforce against GRPO ---------------------------------------------------------------------


def rl_prompts(p: int) -> list[tuple[str, str]]:
    """(prompt, gold answer) of the RL batch: held-out problems in the self-correct prompt."""
    from engine.toolkit.math_problems import held_out
    from plugins.environment_selfcorrect import MATH_PROMPT

    return [(MATH_PROMPT.format(task=q.question), q.answer) for q in held_out(p, seed=7)]


def reward(text: str, answer: str) -> float:
    """The trivial reward both sides use: the gold answer appears in the completion."""
    return 1.0 if answer in text else 0.0


def reinforce_side(sampler: Any, sz: Sizes, tmp: Path) -> dict[str, Any]:
    """The engine's sampler samples P x G completions; ``reinforce`` takes one step on them."""
    import datasets  # noqa: F401 - imported before timing (the trainer's quiet() and load use them),
    import peft  # noqa: F401 - as GRPO's side imports its libraries before its timing

    from engine.contracts import StageContext, build_stage
    from engine.records import Trajectory
    from engine.sampling.protocol import SampleRequest
    from engine.training.protocol import base_version
    from plugins.trainer_reinforce import ReinforceTrainerStage

    prompts = rl_prompts(sz.prompts)
    reqs = [SampleRequest.chat(p, n=sz.generations, temperature=1.0, top_p=1.0,
                               max_tokens=sz.completion_tokens, seed=1000 * i)
            for i, (p, _) in enumerate(prompts)]
    t0 = time.perf_counter()
    results = sampler.sample(reqs)
    t_rollout = time.perf_counter() - t0
    trajs = [Trajectory(messages=[{"role": "user", "content": p}, {"role": "assistant", "content": c.text}],
                        rewards={"reward": [reward(c.text, a)]})
             for (p, a), r in zip(prompts, results, strict=True) for c in r.completions]
    lengths = [c.tokens for r in results for c in r.completions]
    stage: Any = build_stage(ReinforceTrainerStage,
                        {"max_steps": 1, "batch_size": len(trajs), "learning_rate": LEARNING_RATE,
                         "kl_beta": KL_BETA},
                        StageContext(seed=0, model_name=MODEL, plugins=sampler.context.plugins))
    phases: dict[str, float] = {}
    stage.load_policy = timed(stage.load_policy, phases, "load")
    stage.fit = timed(stage.fit, phases, "fit")
    t0 = time.perf_counter()
    version = stage.train(trajs, base_version(MODEL), str(tmp / "reinforce"))
    t_train = time.perf_counter() - t0
    assert version.adapter_path and len(version.steps) == 1, version
    log(f"  reinforce: rollout {t_rollout:.1f} s, train() {t_train:.1f} s (fit {phases['fit']:.1f} s)")
    return {"rollout_s": t_rollout, "train_s": t_train, "fit_s": phases["fit"], "load_s": phases["load"],
            "completions": len(trajs), "mean_tokens": sum(lengths) / len(lengths)}


def grpo_side(sz: Sizes, tmp: Path) -> dict[str, Any]:
    """TRL's GRPOTrainer, offline on CPU from the local model directory: one step (max_steps 1)."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer  # type: ignore[attr-defined]

    from engine.contracts import StageContext
    from engine.training.lora import LoraOptions, device_and_dtype, quiet
    from plugins.trainer_reinforce import ReinforceOptions

    path = str(StageContext(model_name=MODEL).resolve_model(MODEL))
    device, dtype = device_and_dtype(ReinforceOptions())  # the dtype the reinforce side trains in
    prompts = rl_prompts(sz.prompts)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p}], "answer": a} for p, a in prompts])

    def contains_answer(completions: list[Any], answer: list[str], **_: Any) -> list[float | None]:
        return [reward(c[-1]["content"] if isinstance(c, list) else str(c), a)
                for c, a in zip(completions, answer, strict=True)]

    lo = LoraOptions()
    peft_config = LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, task_type="CAUSAL_LM",
                             target_modules=list(lo.target_modules), layers_to_transform=lo.layers)
    args = GRPOConfig(
        output_dir=str(tmp / "grpo"), max_steps=1, per_device_train_batch_size=sz.prompts * sz.generations,
        num_generations=sz.generations, max_completion_length=sz.completion_tokens, temperature=1.0,
        top_p=1.0, beta=KL_BETA, learning_rate=LEARNING_RATE, gradient_checkpointing=False,
        use_cpu=device == "cpu", bf16=False, model_init_kwargs={"dtype": dtype}, report_to=[],
        save_strategy="no", logging_steps=1, disable_tqdm=True, dataloader_num_workers=0,
        shuffle_dataset=False, seed=0, warmup_steps=0)
    gen: dict[str, float] = {}
    with quiet(False):
        t0 = time.perf_counter()
        trainer: Any = GRPOTrainer(model=path, reward_funcs=contains_answer, args=args, train_dataset=data,
                              peft_config=peft_config)
        t_build = time.perf_counter() - t0
        trainer.remove_callback(PrinterCallback)
        trainer._generate_single_turn = timed(trainer._generate_single_turn, gen, "generate")
        t0 = time.perf_counter()
        trainer.train()
        t_train = time.perf_counter() - t0
    history = [e for e in trainer.state.log_history if "loss" in e]
    assert len(history) == 1 and "generate" in gen, (trainer.state.log_history, gen)
    log(f"  GRPO: build {t_build:.1f} s, train() {t_train:.1f} s (generate {gen['generate']:.1f} s)")
    return {"build_s": t_build, "train_s": t_train, "generate_s": gen["generate"],
            "mean_tokens": float(history[0].get("completions/mean_length", float("nan")))}


# -- the table -------------------------------------------------------------------------------------


def met(ratio: float, target: float) -> str:
    return "yes" if ratio >= target else "**no**"


def table(sz: Sizes, ep: dict[str, Any], ho: dict[str, Any], rl: dict[str, Any],
          grpo: dict[str, Any] | None) -> list[str]:
    n = ep["n"]
    b_rate, s_rate = n / ep["batched_s"], n / ep["single_s"]
    ratio = b_rate / s_rate
    lines = ["| measure | value | baseline (same run) | ratio | target | met |",
             "| --- | --- | --- | ---: | --- | --- |",
             f"| batched episode stepping: {n} self-correct episodes x 2 turns, greedy, {sz.max_tokens} "
             f"tokens per turn, episodes/s | one `rollout({n} tasks)`: {b_rate:.3f}/s "
             f"({ep['batched_s']:.1f} s) "
             f"| `rollout([task])` x {n}: {s_rate:.3f}/s ({ep['single_s']:.1f} s) | {ratio:.2f}x | >= 5x "
             f"| {met(ratio, 5.0)} |",
             f"| identical trajectories, batched vs one at a time (greedy depends on the batch) "
             f"| {ep['same']} of {n} | | | report | |"]
    (first_new, first_loaded), steps = ho["first"], ho["steps"]
    loaded_ms = 1000 * statistics.median(b for _, b in steps)
    new_ms = 1000 * statistics.median(a for a, _ in steps)
    lines += [f"| adapter hand-off per policy step: a request with a new LoRA dir minus the same request "
              f"with it loaded, median of {len(steps)} | {ho['median_ms']:.0f} ms (request {new_ms:.0f} ms) "
              f"| request with the adapter loaded: {loaded_ms:.0f} ms (least of 3) | | report | |",
              f"| first adapter of the sampler (also wraps the model in peft), hand-off "
              f"| {1000 * (first_new - first_loaded):.0f} ms | | | report | |"]
    c = rl["completions"]
    batch = f"{c} completions ({sz.prompts} prompts x {sz.generations}, <= {sz.completion_tokens} tokens)"
    if grpo is not None:
        rows = [
            (f"reinforce vs GRPO, 1 optimizer step on {batch}, sampling excluded, seconds",
             f"reinforce `fit()`: {rl['fit_s']:.1f} s", rl["fit_s"],
             f"`GRPOTrainer.train()` minus its generate call: {grpo['train_s'] - grpo['generate_s']:.1f} s",
             grpo["train_s"] - grpo["generate_s"]),
            ("reinforce vs GRPO, rollout + 1 step, seconds",
             f"engine sampler {rl['rollout_s']:.1f} s + `fit()` = {rl['rollout_s'] + rl['fit_s']:.1f} s",
             rl["rollout_s"] + rl["fit_s"],
             f"`GRPOTrainer.train()` (generate {grpo['generate_s']:.1f} s + step): {grpo['train_s']:.1f} s",
             grpo["train_s"]),
            ("reinforce vs GRPO, end to end with model loading, seconds",
             f"engine sampler + `ReinforceTrainerStage.train()` (load {rl['load_s']:.1f} s, step, save "
             f"adapter) = {rl['rollout_s'] + rl['train_s']:.1f} s", rl["rollout_s"] + rl["train_s"],
             f"`GRPOTrainer(...)` {grpo['build_s']:.1f} s + `train()` (no save) = "
             f"{grpo['build_s'] + grpo['train_s']:.1f} s", grpo["build_s"] + grpo["train_s"])]
        for label, ours, ours_s, theirs, theirs_s in rows:
            r = theirs_s / ours_s
            lines.append(f"| {label} | {ours} | {theirs} | {r:.2f}x | >= 1x (reinforce not slower) "
                         f"| {met(r, 1.0)} |")
    else:
        lines.append(f"| reinforce, 1 optimizer step on {batch} (no GRPO baseline, see below) "
                     f"| `fit()` {rl['fit_s']:.1f} s; rollout {rl['rollout_s']:.1f} s; `train()` "
                     f"{rl['train_s']:.1f} s | | | | |")
    return lines


def notes(sz: Sizes, ep: dict[str, Any], ho: dict[str, Any], rl: dict[str, Any], grpo: dict[str, Any] | None,
          grpo_skipped: str | None) -> list[str]:
    (b1, b2), (s1, s2) = ep["correct"]
    loaded = statistics.median(b for _, b in ho["steps"])
    out = [f"- Episodes: completion tokens batched {ep['tokens'][0]:,}, one at a time {ep['tokens'][1]:,}; "
           f"correct at attempt 1 / 2: batched {b1} / {b2}, one at a time {s1} / {s2} (of {ep['n']}).",
           f"- Hand-off: the request is one chat turn, greedy, {sz.handoff_tokens} new tokens; on the base "
           f"model before any adapter it took {1000 * ho['base_s']:.0f} ms (least of 3), so the unmerged "
           f"adapter costs each request {1000 * (loaded - ho['base_s']):.0f} ms more. {ho['held']} adapters "
           f"are held by the sampler at the end (it keeps up to max_adapters, 8 by default).",
           f"- RL batch: mean completion tokens, engine sampler {rl['mean_tokens']:.1f}"
           + (f", GRPO {grpo['mean_tokens']:.1f}; the ratios are GRPO seconds / reinforce seconds." if grpo
              else ".")]
    if grpo_skipped:
        out.append(f"- GRPO row left out: {grpo_skipped}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.episodes", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (the test's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--no-grpo", action="store_true", help="leave out TRL's GRPOTrainer baseline")
    parser.add_argument("--no-write", action="store_true", help="print only, do not write RESULTS.md")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    sz = SIZES[mode]
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started = datetime.datetime.now(datetime.UTC)
    load0 = os.getloadavg()[0]
    t_all = time.perf_counter()
    sampler = build_sampler(args.threads, max(32, sz.episodes))
    with tempfile.TemporaryDirectory(prefix="bench-episodes-") as tmp_name:
        tmp = Path(tmp_name)
        log("1. batched episode stepping")
        ep = episodes(sampler, sz.episodes, sz.max_tokens)
        log("3. reinforce against GRPO")
        rl = reinforce_side(sampler, sz, tmp)
        grpo, skipped = None, "--no-grpo" if args.no_grpo else None
        if not args.no_grpo:
            try:
                grpo = grpo_side(sz, tmp)
            except Exception as exc:  # noqa: BLE001 - the row is left out, and the table says why
                skipped = f"GRPOTrainer failed here: {type(exc).__name__}: {str(exc)[:300]}"
                log(f"  {skipped}")
        log("2. adapter hand-off")
        ho = handoff(sampler, sz.handoffs, sz.handoff_tokens, tmp)
    wall = time.perf_counter() - t_all
    header = (f"SmolLM2-135M-Instruct, transformers sampler ({sampler.model.dtype}, batch_size "
              f"{sampler.options.batch_size}), torch threads {torch.get_num_threads()}, {os.cpu_count()} "
              f"CPUs; "
              f"{started:%Y-%m-%d %H:%M} UTC; load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at "
              f"end; {wall:.0f} s in all")
    body = table(sz, ep, ho, rl, grpo)
    extra = notes(sz, ep, ho, rl, grpo, skipped)
    print(header)
    print()
    print("\n".join(body))
    print()
    print("\n".join(extra))
    if mode == "full" and not args.no_write:
        write_results(Path(__file__).with_name("RESULTS.md"), header, body, extra)
    return 0


def write_results(path: Path, header: str, body: list[str], extra: list[str]) -> None:
    path.write_text("# Episode benchmark (measured)\n\nCommand: `python -m bench.episodes`\n\n" + header
                    + "\n\n" + "\n".join(body) + "\n\nNotes:\n" + "\n".join(extra) + "\n")
