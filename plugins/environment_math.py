"""The ``math`` environment: a math problem, answers checked with math-verify, retries on a miss.

What it is: each episode is a problem whose gold answer is ``task.meta["answer"]`` (the
procedural problems of engine.toolkit.math_problems, GSM8K's sample, or any task carrying one).
An answer is scored by engine.toolkit.math.is_correct (its final answer against the gold one,
math-verify with a numeric fallback): reward 1 ends the episode; a miss gets ``retry`` (which says
only that the answer is wrong) until ``max_turns`` (default 1: a single attempt).
What it is not: SCoRe's fixed correction turn, which does not say whether attempt 1 was right
(that is the ``self-correct`` environment).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from engine import hookimpl
from engine.episodes import Environment, Episode, EpisodeOptions, Observation, require_meta
from engine.records import Task


class MathOptions(EpisodeOptions):
    max_turns: int = Field(1, ge=1, le=64, description="attempts per problem")
    prompt: str = Field("{task}\n\nSolve it step by step, then end with: The answer is <number>.",
                        description="the first message; {task} is the problem")
    retry: str = Field("That is not right. Try again, then end with: The answer is <number>.",
                       description="the message after a wrong answer")


class MathEnv(Environment[MathOptions]):
    name = "math"

    @classmethod
    def examples(cls) -> list[Task]:
        return [Task(prompt="What is 40 + 2?", meta={"answer": "42"})]

    def reset(self, tasks: Sequence[Task]) -> list[Observation]:
        require_meta(tasks, "answer", "gold answer")
        return [Observation(text=self.options.prompt.format(task=t.prompt)) for t in tasks]

    def step(self, episodes: Sequence[Episode], actions: Sequence[str]) -> list[Observation]:
        from engine.toolkit.math import is_correct

        out = []
        for ep, action in zip(episodes, actions, strict=True):
            right = is_correct(action, str(ep.task.meta["answer"]))
            out.append(Observation(text="Correct." if right else self.options.retry, reward=float(right),
                                   done=right))
        return out


@hookimpl
def register_environments() -> list[type]:
    return [MathEnv]
