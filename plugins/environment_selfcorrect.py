"""The ``self-correct`` environment: SCoRe's two attempts, with a fixed turn asking for a correction.

What it is: attempt 1 answers the task; the environment scores it with a verifier and answers
with SCoRe's fixed instruction (no hint of whether attempt 1 was right); attempt 2 is scored and
the episode ends (``max_turns`` 2). Rewards per turn are r1 and r2, so a loop can shape them
(SCoRe's stage I rewards r2 with a KL on attempt 1; stage II adds alpha * (r2 - r1)). Verifiers:
``math`` (engine.toolkit.math: the final answer against ``task.meta["answer"]`` with math-verify)
and ``code`` (the first code block run against ``task.meta["tests"]`` in the run's sandbox).
What it is not: the loop (loops/score.py) or the evaluator of attempt-1/attempt-2 accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from engine import hookimpl
from engine.episodes import Environment, Episode, EpisodeOptions, Observation, require_meta
from engine.records import Task
from engine.toolkit.sandboxing import run_answers

MATH_PROMPT = "{task}\n\nSolve it step by step, then end with: The answer is <number>."
CODE_PROMPT = "{task}\n\nAnswer with the function in one ```python code block."
# SCoRe's self-correction instructions (Kumar et al. 2024, appendix), without the MATH answer format
MATH_FIX = ("There might be an error in the solution above because of lack of understanding of the "
            "question. Please correct the error, if any, and rewrite the solution. End with: The answer is "
            "<number>.")
CODE_FIX = ("There might be an error in the code above because of lack of understanding of the question. "
            "Please correct the error, if any, and rewrite the solution. Only output the final correct "
            "Python program!")


class SelfCorrectOptions(EpisodeOptions):
    max_turns: int = Field(2, ge=1, le=64, description="attempts (SCoRe: 2)")
    verifier: Literal["math", "code"] = Field("math", description="what scores an attempt")
    prompt: str | None = Field(None, description="first message ({task}); default per verifier")
    instruction: str | None = Field(None, description="the correction turn; default SCoRe's, per verifier")


class SelfCorrect(Environment[SelfCorrectOptions]):
    name = "self-correct"

    @classmethod
    def examples(cls) -> list[Task]:
        return [Task(prompt="What is 40 + 2?", meta={"answer": "42"})]

    def reset(self, tasks: Sequence[Task]) -> list[Observation]:
        math = self.options.verifier == "math"
        require_meta(tasks, "answer" if math else "tests", "gold answer" if math else "tests")
        prompt = self.options.prompt or (MATH_PROMPT if self.options.verifier == "math" else CODE_PROMPT)
        return [Observation(text=prompt.format(task=t.prompt)) for t in tasks]

    def step(self, episodes: Sequence[Episode], actions: Sequence[str]) -> list[Observation]:
        scores = self._verify(episodes, actions)
        fix = self.options.instruction or (MATH_FIX if self.options.verifier == "math" else CODE_FIX)
        return [Observation(text=fix, reward=float(ok), done=ep.turn + 1 >= self.options.max_turns,
                            info={f"correct{ep.turn + 1}": ok})
                for ep, ok in zip(episodes, scores, strict=True)]

    def _verify(self, episodes: Sequence[Episode], actions: Sequence[str]) -> list[bool]:
        if self.options.verifier == "math":
            from engine.toolkit.math import is_correct

            golds = [str(ep.task.meta["answer"]) for ep in episodes]
            return [is_correct(a, gold) for a, gold in zip(actions, golds, strict=True)]
        tests = [str(ep.task.meta["tests"]) for ep in episodes]
        return [r.status == "passed" for r in run_answers(self.context, actions, tests)]


@hookimpl
def register_environments() -> list[type]:
    return [SelfCorrect]
