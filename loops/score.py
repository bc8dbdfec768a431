"""SCoRe: training a model to correct itself over two attempts, on-policy, from its own episodes.

One iteration is ``policy_steps`` on-policy steps. Each step draws fresh training problems
(procedural math at ``level`` by default: engine.toolkit.math_problems; or the tasks of
``data.source``), rolls one two-attempt episode per problem out in the ``env`` environment
(``self-correct``: attempt 1, SCoRe's fixed correction turn, attempt 2, each scored by its
verifier), shapes the rewards for the current stage and trains the policy adapter with the
``reinforce`` trainer on those trajectories. The next step samples from the adapter that step
made (the sampler serves it without reloading the base model).
Stage I (the first ``stage1_iterations`` iterations): reward only on attempt 2, and a KL on
attempt 1 ``stage1_kl`` times stronger than on attempt 2 (per-turn KL weights), so attempt 1
stays near the base model while attempt 2 learns to improve on it. Stage II: r1 on attempt 1 and
r2 + alpha * (r2 - r1) on attempt 2 (the paper's shaping bonus), the same KL on both.
What it is not: the evaluator of attempt-1/attempt-2 accuracy (an evaluator measures that).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine import hookimpl
from engine.contracts import Role, Stage
from engine.records import Link, Task, Trajectory


class ScoreOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy_steps: int = Field(2, ge=1, le=100, description="on-policy training steps per iteration")
    problems_per_step: int = Field(32, ge=1, le=100_000, description="episodes rolled out per step")
    level: int = Field(1, ge=1, le=5, description="difficulty of the procedural math problems")
    stage1_iterations: int = Field(1, ge=0, description="iterations in Stage I, then Stage II")
    stage1_kl: float = Field(10.0, ge=0.0, description="Stage I: KL weight of attempt 1 over attempt 2")
    alpha: float = Field(10.0, ge=0.0, description="Stage II: bonus alpha * (r2 - r1) on attempt 2")


class Score(Stage[ScoreOptions]):
    kind = "loop"
    name = "score"
    roles = {"env": Role(kind="environment", takes=("task",), gives=("trajectory",), default="self-correct",
                         doc="two attempts with a correction turn between them, each scored")}
    trains = {"policy": ("trajectory",)}

    def run_iteration(self, runner: Any, iteration: int) -> None:
        opts = self.options
        stage = "I" if iteration <= opts.stage1_iterations else "II"
        for step in range(opts.policy_steps):
            tasks = runner.ingest(f"problems:{step}", self._problems(runner, iteration, step))
            episodes = [t for t in runner.call("env", tasks, key=f"step{step}")
                        if isinstance(t, Trajectory) and t.meta.get("status") == "done"]
            shaped = runner.ingest(f"shaped:{step}", [shape(t, stage, opts) for t in episodes])
            runner.train(shaped, key=f"step{step}")

    def _problems(self, runner: Any, iteration: int, step: int) -> list[Task]:
        opts = self.options
        if runner.config.data.source:
            from engine.data import load_tasks

            tasks = load_tasks(runner.config.data.source, runner.config.data.limit)
            start = ((iteration - 1) * opts.policy_steps + step) * opts.problems_per_step
            return [tasks[(start + i) % len(tasks)] for i in range(min(opts.problems_per_step, len(tasks)))]
        from engine.toolkit.math_problems import generate

        seed = runner.config.seed * 100_003 + iteration * 1_009 + step
        return [Task(prompt=p.question, meta={"answer": p.answer, "level": p.level, "source": p.source})
                for p in generate(opts.problems_per_step, opts.level, seed)]


def shape(t: Trajectory, stage: Literal["I", "II"], opts: ScoreOptions) -> Trajectory:
    """The trajectory with SCoRe's rewards for ``stage`` (``rewards["score"]``, per attempt) and
    per-turn KL weights; the raw verifier rewards stay in ``rewards["reward"]``."""
    raw = t.rewards.get("reward", [])
    r = [float(x) for x in raw] if isinstance(raw, list) else [float(raw)]
    r1, r2 = (r + [0.0, 0.0])[:2]
    if len(r) < 2:  # ended after attempt 1 (max_turns 1, or python-exec stops on success):
        # Stage I trains attempt 2 only, so attempt 1 gets no reward and its strong KL; Stage II, r1
        score, kl = ([0.0], [opts.stage1_kl]) if stage == "I" else ([r1], [1.0])
    elif stage == "I":
        score, kl = [0.0, r2], [opts.stage1_kl, 1.0]
    else:
        score, kl = [r1, r2 + opts.alpha * (r2 - r1)], [1.0, 1.0]
    return Trajectory(messages=t.messages, rewards={**t.rewards, "score": score}, turn_kl=kl,
                      token_ids=t.token_ids, logprobs=t.logprobs, sample_index=t.sample_index,
                      model_version=t.model_version, parents=[Link(id=t.id, role="input")],
                      meta={**t.meta, "stage": stage})


@hookimpl
def register_loops() -> list[type]:
    return [Score]
