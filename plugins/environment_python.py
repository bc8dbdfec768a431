"""The ``python-exec`` environment: agentic code repair with the run's sandbox as the teacher.

What it is: each episode is a coding task whose tests are in ``task.meta["tests"]`` (asserts, as
SelfCodeAlign's own generated tasks carry them), with optional code the answer runs after in
``task.meta["setup"]`` (imports and helpers the task gives, as HumanEval's prompt does). The model
answers with code; the environment runs it against the tests in the run's sandbox (one sandbox
call per turn for every live episode) and answers with the failing assert and the exception,
trimmed (engine.toolkit.sandboxing.feedback_of), so the model can repair its code next turn.
Reward 1 when every test passes (the episode ends), else 0; the episode also ends at ``max_turns``.
What it is not: an evaluator; it never sees HumanEval (train on the loop's own tasks).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from engine import hookimpl
from engine.episodes import Environment, Episode, EpisodeOptions, Observation, require_meta
from engine.records import Task
from engine.toolkit.sandboxing import feedback_of, run_answers


class PythonExecOptions(EpisodeOptions):
    max_turns: int = Field(3, ge=1, le=64, description="attempts per task (the first and the repairs)")
    max_tokens: int = Field(384, ge=1, le=32768, description="new tokens per attempt")
    feedback_chars: int = Field(600, ge=40, le=20000, description="longest feedback shown to the model")
    prompt: str = Field("{task}\n\nAnswer with the function in one ```python code block.",
                        description="the first message; {task} is the task's prompt")
    retry: str = Field("Running your code against the tests gave:\n{feedback}\n\nFix the code. Answer with "
                       "the whole function in one ```python code block.",
                       description="the message after a failed attempt; {feedback} is the sandbox's answer")


class PythonExec(Environment[PythonExecOptions]):
    name = "python-exec"

    @classmethod
    def examples(cls) -> list[Task]:
        return [Task(prompt="Write a function add(a, b) that returns a + b.",
                     meta={"tests": "assert add(1, 2) == 3\nassert add(-1, 1) == 0"})]

    def reset(self, tasks: Sequence[Task]) -> list[Observation]:
        require_meta(tasks, "tests", "tests to run the code against")
        return [Observation(text=self.options.prompt.format(task=t.prompt)) for t in tasks]

    def step(self, episodes: Sequence[Episode], actions: Sequence[str]) -> list[Observation]:
        out = []
        tests = [str(ep.task.meta["tests"]) for ep in episodes]
        setups = [str(ep.task.meta.get("setup") or "") for ep in episodes]
        for result in run_answers(self.context, actions, tests, setups):
            passed = result.status == "passed"
            feedback = feedback_of(result, self.options.feedback_chars)
            out.append(Observation(text=feedback if passed else self.options.retry.format(feedback=feedback),
                                   reward=float(passed), done=passed, info={"status": result.status}))
        return out


@hookimpl
def register_environments() -> list[type]:
    return [PythonExec]
