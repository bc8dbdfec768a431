"""The ``reinforce`` trainer: on-policy policy-gradient steps on sampled multi-turn trajectories.

What it is: ``trajectory`` records (chat turns the policy sampled, plus named rewards) -> for every
assistant turn, the tokens of that turn under the chat template -> a small explicit torch loop on
the LoRA adapter of ``base`` (continuing ``base.adapter_path``) with the token-level loss

    -(reward - baseline) * log pi(token) + kl_beta * turn_kl * KL(pi || ref)(token)

averaged over the trained tokens of a batch. The reward is ``rewards[reward_field]`` (a scalar for
every assistant turn or one value per turn); the baseline is the mean reward of that turn position
over the trajectories of the call (``baseline="mean"``) or zero. KL is estimated on the sampled
tokens (k3 = e^d - d - 1 with d = log ref - log pi, as in GRPO; or k1 = -d). The reference is the
base model with the adapters disabled (peft's ``disable_adapter()``), so there is no second model
copy. This is enough for SCoRe: Stage I puts reward only on attempt 2 (per-turn rewards ``[0, r2]``)
and a strong KL on attempt 1 (``turn_kl=[10, 1]``); Stage II uses ``r1 + r2 + alpha*(r2 - r1)``.
Each optimizer step reports ``loss``, ``pg``, ``kl``, ``reward`` (the mean turn reward of its
trajectories) and ``grad_norm`` (before clipping). With ``num_workers`` > 1 (Ray Train) each worker
takes its shard of every global batch, the token count that normalises the loss is the global
batch's, and gradients are summed over the workers (engine.training.parallel), so the step is the
one a single worker takes on the whole batch.
Tokens: a trajectory that carries the sampled ``token_ids`` of every assistant turn (one made by an
environment's episodes) is trained on exactly those ids: the chat-template text before each turn
(``add_generation_prompt``) is tokenized piece by piece, only the part not encoded yet, and each
turn's sampled ids go in verbatim; its span is exactly them, so the end-of-turn token is trained
where the sampler stopped on it (both samplers report it as the last id; a turn cut by max_tokens
or a stop string has none, and the template's closing text then follows outside the span). A
trajectory without them (built by hand), or whose template text before a turn does not start with
the template text before the previous turn plus that turn, is re-tokenized from its text instead,
and there each span runs to the end of the turn's template text (closing included).
What it is not: PPO (no clipping, no value model) or a sampler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from engine import hookimpl
from engine.records import Record, Trajectory
from engine.training.lora import LoraTrainer, TrainOptions
from engine.training.parallel import all_reduce_sum, broadcast_params, sum_gradients, world
from engine.training.protocol import Steps


class ReinforceOptions(TrainOptions):
    learning_rate: float = Field(1e-5, gt=0.0)
    kl_beta: float = Field(0.05, ge=0.0, description="KL(policy || base model) coefficient")
    reward_field: str = Field("reward", description="which entry of a trajectory's rewards to maximise")
    baseline: Literal["mean", "none"] = Field("mean", description="subtract the mean reward per turn")
    kl_estimator: Literal["k3", "k1"] = Field("k3")
    max_grad_norm: float = Field(1.0, gt=0.0)


@dataclass
class Encoded:
    """A trajectory as token ids, its assistant-turn spans [start, end), and per-turn weights."""

    ids: list[int]
    spans: list[tuple[int, int]]
    rewards: list[float]
    kl_scale: list[float]


def _chat_text(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return str(tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=generation_prompt))


def _tokens(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _chat_ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    return _tokens(tokenizer, _chat_text(tokenizer, messages, generation_prompt))


def _sampled(tokenizer: Any, msgs: list[dict[str, str]], turns: list[int], sampled: list[list[int]],
             ) -> tuple[list[int], list[tuple[int, int]]] | None:
    """Template text tokenized where not encoded yet, each turn's sampled ids verbatim as its span;
    None where a template text does not start with the text encoded before it."""
    texts = [_chat_text(tokenizer, msgs[:i], True) for i in turns] + [_chat_text(tokenizer, msgs, False)]
    ids: list[int] = []
    spans = []
    done = ""  # the template text that ``ids`` stand for
    for k, text in enumerate(texts):
        if not text.startswith(done):
            return None
        ids += _tokens(tokenizer, text[len(done):])
        if k < len(turns):  # the last text only closes the chat
            spans.append((len(ids), len(ids) + len(sampled[k])))
            ids += sampled[k]
            done = text + msgs[turns[k]]["content"]
            end = tokenizer.decode(sampled[k][-1:])  # the end-of-turn token, if the sampler stopped on it
            if sampled[k][-1] in tokenizer.all_special_ids and texts[k + 1].startswith(done + end):
                done += end
    return ids, spans


def _retokenized(tokenizer: Any, msgs: list[dict[str, str]], turns: list[int],
                 ) -> tuple[list[int], list[tuple[int, int]]]:
    """The chat's template text tokenized whole; a turn's span runs to the end of its closing text."""
    spans = [(len(_chat_ids(tokenizer, msgs[:i], True)), len(_chat_ids(tokenizer, msgs[:i + 1], False)))
             for i in turns]
    return _chat_ids(tokenizer, msgs, False), spans


def encode(tokenizer: Any, rec: Record, reward_field: str, max_length: int) -> Encoded:
    """Token ids and assistant spans of one trajectory (truncated to ``max_length``): its sampled
    token ids where it has them for every assistant turn, else its re-tokenized text."""
    if not isinstance(rec, Trajectory):
        raise TypeError(f"reinforce trains on trajectory records, not {rec.kind!r}")
    msgs = [{"role": m["role"], "content": m["content"]} for m in rec.messages]
    turns = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
    if not turns or turns[0] == 0:
        raise ValueError(f"trajectory {rec.id} needs assistant turns that follow a prompt")
    if reward_field not in rec.rewards:
        raise KeyError(f"trajectory {rec.id} has no reward {reward_field!r} (has {sorted(rec.rewards)})")
    value = rec.rewards[reward_field]
    rewards = [float(x) for x in value] if isinstance(value, list) else [float(value)] * len(turns)
    scale = list(rec.turn_kl) if rec.turn_kl is not None else [1.0] * len(turns)
    if len(rewards) != len(turns) or len(scale) != len(turns):
        raise ValueError(f"trajectory {rec.id}: {len(turns)} assistant turns but {len(rewards)} rewards "
                         f"and {len(scale)} turn_kl values")
    sampled = rec.token_ids or []
    got = _sampled(tokenizer, msgs, turns, sampled) if len(sampled) == len(turns) and all(sampled) else None
    ids, spans = got or _retokenized(tokenizer, msgs, turns)
    return Encoded(ids[:max_length], [(max(s, 1), min(e, max_length)) for s, e in spans], rewards, scale)


def advantages(batch: list[Encoded], baseline: str) -> list[list[float]]:
    """reward - mean reward of the same turn position over all trajectories (or reward alone)."""
    if baseline == "none":
        return [list(e.rewards) for e in batch]
    width = max(len(e.rewards) for e in batch)
    means = []
    for t in range(width):
        vals = [e.rewards[t] for e in batch if t < len(e.rewards)]
        means.append(sum(vals) / len(vals))
    return [[r - means[t] for t, r in enumerate(e.rewards)] for e in batch]


def batch_tensors(torch: Any, items: list[tuple[Encoded, list[float]]], pad_id: int, device: str) -> dict:
    """Right-padded ids and mask, plus per-target-token advantage, KL scale and loss mask."""
    width = max(len(e.ids) for e, _ in items)
    n = len(items)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    adv, kl, mask = (torch.zeros((n, width - 1)) for _ in range(3))
    for row, (e, a) in enumerate(items):
        ids[row, :len(e.ids)] = torch.tensor(e.ids)
        attn[row, :len(e.ids)] = 1
        for (start, end), a_t, k_t in zip(e.spans, a, e.kl_scale, strict=True):
            if end > start:  # token at position p is predicted by logits at p - 1
                adv[row, start - 1:end - 1] = a_t
                kl[row, start - 1:end - 1] = k_t
                mask[row, start - 1:end - 1] = 1.0
    return {k: v.to(device) for k, v in dict(ids=ids, attn=attn, adv=adv, kl=kl, mask=mask).items()}


def token_logps(torch: Any, model: Any, t: dict) -> Any:
    logits = model(input_ids=t["ids"], attention_mask=t["attn"], use_cache=False).logits[:, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, t["ids"][:, 1:, None])[..., 0]


class ReinforceTrainerStage(LoraTrainer[ReinforceOptions]):
    """REINFORCE with a per-turn-position mean baseline and a KL term to the base model."""

    name = "reinforce"
    accepts = ("trajectory",)

    def rows(self, examples: Sequence[Record]) -> list[Any]:
        for rec in examples:  # refused before the model loads; encoded once the tokenizer is there
            if not isinstance(rec, Trajectory):
                raise TypeError(f"reinforce trains on trajectory records, not {rec.kind!r}")
        return list(examples)

    def fit(self, model: Any, tokenizer: Any, rows: list[Any], tmpdir: str) -> Steps:
        import torch

        opts = self.options
        w = world()  # several data-parallel workers: each takes its shard of every global batch
        enc = [encode(tokenizer, r, opts.reward_field, opts.max_length) for r in rows]
        adv = advantages(enc, opts.baseline)
        device = next(model.parameters()).device.type
        params = [p for p in model.parameters() if p.requires_grad]
        broadcast_params(params, w)
        optim = torch.optim.AdamW(params, lr=opts.learning_rate, weight_decay=0.0)
        gen = torch.Generator().manual_seed(self.seed)
        per_epoch = math.ceil(len(enc) / opts.batch_size)
        n_steps = opts.max_steps or max(1, math.ceil(opts.epochs * per_epoch / opts.grad_accum))
        order: list[int] = []
        stats = {"loss": 0.0, "pg": 0.0, "kl": 0.0}
        steps: Steps = []
        model.train()
        for step in range(1, n_steps + 1):
            optim.zero_grad(set_to_none=True)
            acc = dict.fromkeys(("loss", "pg", "kl", "reward"), 0.0)  # this step's means
            for _ in range(opts.grad_accum):
                if len(order) < opts.batch_size:
                    order += torch.randperm(len(enc), generator=gen).tolist()
                pick, order = order[:opts.batch_size], order[opts.batch_size:]
                mine = pick[w.rank::w.size]
                t = batch_tensors(torch, [(enc[i], adv[i]) for i in mine], tokenizer.pad_token_id, device)
                logp = token_logps(torch, model, t)
                with torch.no_grad(), model.disable_adapter():
                    ref = token_logps(torch, model, t)
                d = ref - logp
                kl = torch.exp(d) - d - 1 if opts.kl_estimator == "k3" else -d
                pg = -t["adv"] * logp
                [n_tok] = all_reduce_sum([t["mask"].sum().item()], w)  # tokens of the global batch
                n_tok = max(n_tok, 1.0)
                pg_sum = (pg * t["mask"]).sum()
                kl_sum = (kl * t["kl"] * t["mask"]).sum()
                loss = (pg_sum + opts.kl_beta * kl_sum) / (n_tok * opts.grad_accum)
                loss.backward()
                pg_loss, kl_loss = (v / n_tok for v in all_reduce_sum([pg_sum.item(), kl_sum.item()], w))
                stats = {"loss": pg_loss + opts.kl_beta * kl_loss, "pg": pg_loss, "kl": kl_loss}
                picked = [r for i in pick for r in enc[i].rewards]
                for k, v in dict(stats, reward=sum(picked) / len(picked)).items():
                    acc[k] += v / opts.grad_accum
            sum_gradients(params, w)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, opts.max_grad_norm)
            optim.step()
            steps.append(dict(acc, grad_norm=float(grad_norm), step=float(step)))
        model.eval()
        rewards = [r for e in enc for r in e.rewards]
        self.last_metrics = dict(stats, steps=n_steps, reward_mean=sum(rewards) / len(rewards))
        return steps


@hookimpl
def register_trainers() -> list[type]:
    return [ReinforceTrainerStage]
