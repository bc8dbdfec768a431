"""Multi-turn episodes: the environment contract and the episode driver.

What it is: an environment (stage kind ``environment``) answers a policy's actions. It has two
batch verbs, ``reset(tasks) -> [Observation]`` (the first user message of each episode) and
``step(episodes, actions) -> [Observation]`` (what the environment says to each action, its reward
and whether the episode is done), and may list ``tools`` the model can call. Subclass
:class:`Environment` and implement those two; its verb ``rollout(tasks)`` is the driver,
:func:`run_episodes`: every live episode advances one turn per sampler call (ONE batched call per
turn across all episodes), each stops at ``done`` or at its own ``max_turns``, and every turn is a
:class:`~engine.records.Turn` record (action, observation, reward, the sampled token ids and
log-probabilities), linked to the turn before it and emitted as a side output, so the runner
writes it to lineage under the rollout's stage execution. The rollout returns one
:class:`~engine.records.Trajectory` per episode (the whole chat, per-turn rewards, token ids and
log-probabilities; ``rewards["reward"]`` per turn), linked to its last turn and to its task: what
the ``reinforce`` trainer takes.
An environment that raises on a batch is asked again episode by episode; an episode on which it
still raises ends there, failed, with the error on its last turn and in its trajectory's
``meta``; the others go on.
The loop under it, :func:`drive`, is the step loop of every batched multi-step stage: the tree
search (plugins/refiner_tree.py) advances its roots with it, one sampler call per depth.
What it is not: a trainer, or a sampler: the driver samples through the run's sampler (the
adapter of ``adapter_role``), and the loop trains on the trajectories.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, Field

from engine.contracts import Messages, Stage
from engine.records import Link, Record, Task, Trajectory, Turn
from engine.sampling.protocol import SampleResult
from engine.toolkit.prompting import SamplingOptions, chat_requests


class Observation(BaseModel):
    """What an environment says: the next user message (``text``), the reward of the action it
    answers (None on reset), whether the episode is over, and ``info`` kept with the episode."""

    text: str = ""
    reward: float | None = None
    done: bool = False
    info: dict[str, Any] = Field(default_factory=dict)


class Tool(BaseModel):
    """A tool the model may call, listed to it in the episode's system message."""

    name: str
    description: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class EpisodeOptions(SamplingOptions):
    """How the policy acts: its sampling settings (one action per turn) and the turn limit."""

    max_turns: int = Field(2, ge=1, le=64, description="actions per episode at most")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature of the policy")
    system: str | None = Field(None, description="a system message opening every episode")


@dataclass
class Episode:
    """One live episode as the environment sees it: its task, the chat so far (the actions are the
    assistant turns), the index of the current turn, its rewards and the environment's ``info``."""

    task: Task
    messages: Messages
    turn: int = 0
    rewards: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    error: str | None = None
    turns: list[Turn] = field(default_factory=list)
    token_ids: list[list[int]] = field(default_factory=list)
    logprobs: list[list[float]] = field(default_factory=list)

    @property
    def actions(self) -> list[str]:
        return [m["content"] for m in self.messages if m["role"] == "assistant"]


EnvOptionsT = TypeVar("EnvOptionsT", bound=EpisodeOptions)
S = TypeVar("S")


class Environment(Stage[EnvOptionsT]):
    """Base of environments: implement ``reset`` and ``step``; ``rollout`` runs the episodes."""

    kind = "environment"
    accepts = ("task",)
    produces = ("trajectory",)
    tools: ClassVar[list[Tool]] = []

    @classmethod
    def examples(cls) -> list[Task]:
        """Tasks this environment can run (the contract tests roll them out with a scripted policy)."""
        return [Task(prompt="Say hello.")]

    def reset(self, tasks: Sequence[Task]) -> list[Observation]:
        raise NotImplementedError

    def step(self, episodes: Sequence[Episode], actions: Sequence[str]) -> list[Observation]:
        raise NotImplementedError

    def rollout(self, tasks: Sequence[Record]) -> list[Record]:
        """One episode per task, driven to the end; their trajectories (turns are side outputs)."""
        return list(run_episodes(self, [t for t in tasks if isinstance(t, Task)]))


def require_meta(tasks: Sequence[Task], key: str, what: str) -> None:
    """For ``reset``: every task carries ``meta[key]`` (``what`` it is), else a ValueError naming
    the task (the driver then fails that task's episode only)."""
    for task in tasks:
        if not str(task.meta.get(key) or "").strip():
            raise ValueError(f"task {task.id} has no {what} (meta[{key!r}])")


def _each(verb: Callable[..., list[Observation]], items: Sequence[Any], *more: Sequence[Any],
          ) -> list[Observation | BaseException]:
    """``verb`` on the whole batch; if it raises, on each item alone (an error per failed item)."""
    try:
        got = verb(items, *more)
        if len(got) != len(items):
            raise ValueError(f"returned {len(got)} observations for {len(items)} episodes")
        return list(got)
    except Exception:
        if len(items) == 1:
            raise
    out: list[Observation | BaseException] = []
    for i in range(len(items)):
        try:
            (one,) = verb([items[i]], *([m[i]] for m in more))
            out.append(one)
        except Exception as exc:  # noqa: BLE001 - recorded against that episode
            out.append(exc)
    return out


def _begin(env: Environment[Any], tasks: Sequence[Task]) -> list[Episode]:
    system = [{"role": "system", "content": env.options.system}] if env.options.system else []
    if env.tools:
        listed = "\n".join(f"- {t.name}: {t.description} {t.parameters or ''}".rstrip() for t in env.tools)
        system = [{"role": "system", "content": ((env.options.system or "") + "\nTools:\n" + listed).strip()}]
    try:
        first = _each(env.reset, tasks)
    except Exception as exc:  # noqa: BLE001 - a single task: recorded as its failure below
        first = [exc]
    episodes = []
    for task, obs in zip(tasks, first, strict=True):
        ep = Episode(task=task, messages=list(system))
        if isinstance(obs, BaseException):
            ep.done, ep.error = True, f"reset: {type(obs).__name__}: {obs}"[:2000]
        else:
            ep.messages.append({"role": "user", "content": obs.text})
            ep.info.update(obs.info)
        episodes.append(ep)
    return episodes


def drive(stage: Stage[Any], states: Sequence[S], opts: SamplingOptions, *, done: Callable[[S], bool],
          chats: Callable[[list[S], int], list[Messages]],
          advance: Callable[[list[S], list[SampleResult], int], None],
          n: int | None = None, seed: Callable[[int], int] = lambda step: step,
          logprobs: bool = False) -> int:
    """The step loop of every batched multi-step stage (the episodes below, the tree search): while
    some state is not ``done``, ``chats(live, step)`` gives this step's chats for the live states
    (the stage plans its step there), ONE sampler call samples them all (``n`` completions each,
    ``opts``' settings and adapter, seed offset ``seed(step)``) and ``advance(live, results, step)``
    takes the results in chat order. ``advance`` must bring every state closer to done. Returns
    the number of steps."""
    sampler = stage.context.require_sampler(stage.name, opts.sampler)
    step = 0
    while live := [s for s in states if not done(s)]:
        asked = chats(live, step)
        requests = chat_requests(stage.context, asked, opts, n=n, seed_offset=seed(step), logprobs=logprobs)
        advance(live, sampler.sample(requests) if requests else [], step)
        step += 1
    return step


def run_episodes(env: Environment[Any], tasks: Sequence[Task]) -> list[Trajectory]:
    """Drive one episode per task to its end: one batched sampler call per turn across all live
    episodes, then one ``step`` call; returns the trajectories in task order (see module doc)."""
    opts: EpisodeOptions = env.options

    def turn(live: list[Episode], results: list[SampleResult], step: int) -> None:
        env.context.progress(len(results))
        actions = [r.completions[0].text for r in results]
        for ep, action, result in zip(live, actions, results, strict=True):
            ep.messages.append({"role": "assistant", "content": action})
            comp = result.completions[0]
            ep.token_ids.append(list(comp.token_ids or []))
            ep.logprobs.append(list(comp.logprobs or []))
        try:
            answers = _each(env.step, live, actions)
        except Exception as exc:  # noqa: BLE001 - one live episode: its failure
            answers = [exc]
        for ep, action, result, obs in zip(live, actions, results, answers, strict=True):
            _advance(ep, action, result, obs, opts.max_turns, env.name)

    episodes = _begin(env, tasks)
    drive(env, episodes, opts, done=lambda ep: ep.done, chats=lambda live, _: [ep.messages for ep in live],
          advance=turn, n=1, logprobs=True)
    env.emit([t for ep in episodes for t in ep.turns])
    return [_trajectory(ep) for ep in episodes]


def _advance(ep: Episode, action: str, result: SampleResult, obs: Observation | BaseException, max_turns: int,
             stage: str) -> None:
    comp = result.completions[0]
    previous: Record = ep.turns[-1] if ep.turns else ep.task
    link = Link(id=previous.id, role="previous" if ep.turns else "input")
    if isinstance(obs, BaseException):
        ep.done, ep.error = True, f"step: {type(obs).__name__}: {obs}"[:2000]
        turn = Turn(index=ep.turn, action=action, error=ep.error, done=True, token_ids=comp.token_ids,
                    logprobs=comp.logprobs, model_version=result.model_version, parents=[link])
    else:
        ep.rewards.append(float(obs.reward or 0.0))
        ep.info.update(obs.info)
        ep.done = obs.done or ep.turn + 1 >= max_turns
        if not ep.done:
            ep.messages.append({"role": "user", "content": obs.text})
        turn = Turn(index=ep.turn, action=action, observation=obs.text, reward=obs.reward, done=ep.done,
                    token_ids=comp.token_ids, logprobs=comp.logprobs, model_version=result.model_version,
                    parents=[link], meta={"stage": stage})
    ep.turns.append(turn)
    ep.turn += 1


def _trajectory(ep: Episode) -> Trajectory:
    parents = [Link(id=ep.turns[-1].id, role="episode")] if ep.turns else []
    meta: dict[str, Any] = {"status": "failed" if ep.error else "done", "turns": len(ep.turns)}
    if ep.error:
        meta["error"] = ep.error
    return Trajectory(messages=ep.messages, rewards={"reward": list(ep.rewards)} if ep.rewards else {},
                      token_ids=ep.token_ids or None, logprobs=ep.logprobs or None,
                      model_version=ep.turns[-1].model_version if ep.turns else None,
                      parents=[*parents, Link(id=ep.task.id, role="input")], meta=meta)

