"""PPO after CleanRL's ``ppo.py``: GAE, the clipped loss and the update, over G stacked brains.

Every tensor is brain-major ([G, ...]); each brain's loss is a mean over its own samples and the
brains' losses are summed, so brain g's gradient is exactly what a lone PPO on slot g would compute.
Gradient-norm clipping is per brain too. ``mask`` (float or bool, 1 = use) drops samples whose NPC
was dead when it observed (and any sample a reflex overrode) from every mean.

A memory brain (``Brain.has_memory``) learns over sequences: its minibatches are sets of whole sample
columns (env copies, or slots when shared) with every tick of the rollout, re-run from the memory
state stored at the rollout's start (CleanRL's ``ppo_atari_lstm.py``).

Kickstarting (Schmitt et al. 2018, "Kickstarting Deep Reinforcement Learning"; ``ppo.teacher``): the
loss gains a distillation term, the cross-entropy of the brain's policy on a teacher's action
(``Batch.teacher_actions``, masked like the PPO loss), weighted by ``teacher_coef`` that the trainer
anneals linearly to ``teacher_floor`` over ``teacher_steps`` agent steps of each curriculum stage. The
student starts from the teacher's competence and PPO then improves past it: the recipe the learned
governor uses (it first imitates the heuristic governor). With ``teacher=none`` the update is PPO alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from agents.brain import Brain, log_prob_and_entropy

#: Kickstarting teachers (``PPOConfig.teacher``).
TEACHERS = ("none", "heuristic")


@dataclass
class PPOConfig:
    """PPO hyperparameters (names follow CleanRL)."""

    num_envs: int = 256
    """Batched env copies stepped together."""
    num_steps: int = 32
    """Ticks per rollout; each brain gets num_envs * num_steps samples per update."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    anneal_lr: bool = False
    """Anneal the learning rate linearly to 0 over the run's agent-step budget."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    num_minibatches: int = 4
    """Minibatches per epoch."""
    update_epochs: int = 2
    """Passes over the rollout per update."""
    norm_adv: bool = True
    """Normalise advantages per minibatch (per brain)."""
    clip_coef: float = 0.2
    """Surrogate clipping coefficient."""
    clip_vloss: bool = True
    """Clip the value loss like the surrogate."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Per-brain gradient-norm clip."""
    target_kl: float | None = None
    """Stop the update's epochs early when approx_kl passes this (None: never)."""
    teacher: str = "none"
    """Kickstarting teacher: none (PPO alone) or heuristic (world.heuristics.heuristic_policy)."""
    teacher_coef: float = 1.0
    """Initial weight of the distillation term (cross-entropy of the policy on the teacher's action)."""
    teacher_steps: int = 2_000_000
    """Agent steps, counted from each curriculum stage's start, over which the weight anneals to the floor."""
    teacher_floor: float = 0.0
    """Weight the distillation term keeps after the anneal (0: PPO alone once it is over)."""

    def __post_init__(self) -> None:
        for name in ("num_envs", "num_steps", "num_minibatches", "update_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ppo.{name}={value!r}: must be an integer >= 1")
        if self.num_envs * self.num_steps < self.num_minibatches:
            raise ValueError(f"ppo.num_minibatches={self.num_minibatches!r}: more minibatches than samples")
        for name in ("learning_rate", "clip_coef", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ppo.{name}={getattr(self, name)!r}: must be > 0")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ppo.{name}={getattr(self, name)!r}: must be in [0, 1]")
        for name in ("ent_coef", "vf_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"ppo.{name}={getattr(self, name)!r}: must be >= 0")
        if self.teacher not in TEACHERS:
            raise ValueError(f"ppo.teacher={self.teacher!r}: choose one of {list(TEACHERS)}")
        if not isinstance(self.teacher_steps, int) or self.teacher_steps < 1:
            raise ValueError(f"ppo.teacher_steps={self.teacher_steps!r}: must be an integer >= 1")
        if not self.teacher_coef >= 0:
            raise ValueError(f"ppo.teacher_coef={self.teacher_coef!r}: must be >= 0")
        if not 0 <= self.teacher_floor <= self.teacher_coef:
            raise ValueError(f"ppo.teacher_floor={self.teacher_floor!r}: must be in [0, ppo.teacher_coef]")

    def teacher_weight(self, stage_steps: int) -> float:
        """The distillation term's weight after stage_steps agent steps of a stage (0 with no teacher)."""
        if self.teacher == "none":
            return 0.0
        left = max(0.0, 1.0 - stage_steps / self.teacher_steps)
        return max(self.teacher_floor, self.teacher_coef * left)


def gae(rewards: Tensor, values: Tensor, dones: Tensor, next_value: Tensor, next_done: Tensor,
        gamma: float, gae_lambda: float) -> tuple[Tensor, Tensor]:
    """Advantages and returns [T, ...]; ``dones[t]`` says obs t began a new life (CleanRL layout).

    The TD errors of all ticks are computed at once; only the backward sum over T is a loop, adding
    the same float32 terms in the same order as CleanRL's per-tick loop (equal to the bit)."""
    nonterminal = 1.0 - torch.cat([dones[1:], next_done.expand_as(dones[:1])]).float()
    next_values = torch.cat([values[1:], next_value.expand_as(values[:1])])
    deltas = rewards + gamma * next_values * nonterminal - values
    decay = gamma * gae_lambda * nonterminal
    advantages = torch.empty_like(deltas)
    last = torch.zeros_like(deltas[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        advantages[t] = last = deltas[t] + decay[t] * last
    return advantages, advantages + values


def _masked_mean(x: Tensor, mask: Tensor, count: Tensor) -> Tensor:
    """Mean over the last dim of the masked entries, per brain: [G]."""
    return (x * mask).sum(-1) / count


def ppo_loss(new_logprob: Tensor, entropy: Tensor, new_value: Tensor, old_logprob: Tensor,
             old_value: Tensor, advantages: Tensor, returns: Tensor, mask: Tensor, clip_coef: float,
             vf_coef: float, ent_coef: float, clip_vloss: bool = True, norm_adv: bool = True
             ) -> tuple[Tensor, dict[str, float]]:
    """CleanRL's PPO loss over [G, m] tensors, summed over brains; also returns logging stats."""
    mask = mask.float()
    count = mask.sum(-1).clamp(min=1.0)
    if norm_adv:
        mean = _masked_mean(advantages, mask, count).unsqueeze(-1)
        var = (((advantages - mean) ** 2) * mask).sum(-1) / (count - 1).clamp(min=1.0)
        advantages = (advantages - mean) / (var.sqrt().unsqueeze(-1) + 1e-8)
    logratio = new_logprob - old_logprob
    ratio = logratio.exp()
    pg_loss = _masked_mean(torch.max(-advantages * ratio,
                                     -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)), mask, count)
    v_unclipped = (new_value - returns) ** 2
    if clip_vloss:
        v_clipped = old_value + (new_value - old_value).clamp(-clip_coef, clip_coef)
        v_loss = 0.5 * _masked_mean(torch.max(v_unclipped, (v_clipped - returns) ** 2), mask, count)
    else:
        v_loss = 0.5 * _masked_mean(v_unclipped, mask, count)
    entropy_loss = _masked_mean(entropy, mask, count)
    loss = (pg_loss - ent_coef * entropy_loss + vf_coef * v_loss).sum()
    with torch.no_grad():
        stats = {
            "policy_loss": pg_loss.mean().item(),
            "value_loss": v_loss.mean().item(),
            "entropy": entropy_loss.mean().item(),
            "old_approx_kl": _masked_mean(-logratio, mask, count).mean().item(),
            "approx_kl": _masked_mean((ratio - 1) - logratio, mask, count).mean().item(),
            "clipfrac": _masked_mean(((ratio - 1.0).abs() > clip_coef).float(), mask, count).mean().item(),
        }
    return loss, stats


def explained_variance(pred: Tensor, target: Tensor, mask: Tensor) -> float:
    """1 - Var[target - pred] / Var[target] over the masked samples (NaN when Var[target] is 0)."""
    keep = mask.bool()
    y, p = target[keep].double(), pred[keep].double()
    if y.numel() < 2:
        return float("nan")
    var_y = y.var()
    return float("nan") if var_y == 0 else float(1 - (y - p).var() / var_y)


@torch.no_grad()
def clip_grad_norm_per_brain(parameters: list[Tensor], max_norm: float) -> Tensor:
    """Scale each brain's gradient (leading dim = brain) to norm <= max_norm; return the norms [G]."""
    grads = [p.grad for p in parameters if p.grad is not None]
    sq = torch.stack([g.reshape(g.shape[0], -1).pow(2).sum(-1) for g in grads]).sum(0)
    norms = sq.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
    return norms


@dataclass
class Batch:
    """A flattened rollout, brain-major: [G, S, ...] with S = num_steps * envs (or slots) per brain."""

    codes: Tensor
    proprio: Tensor
    action_mask: Tensor
    actions: Tensor
    logprobs: Tensor
    values: Tensor
    advantages: Tensor
    returns: Tensor
    mask: Tensor
    steps: int = 1
    """T: the flat sample index is t * width + column (t-major)."""
    resets: Tensor | None = None
    """Where the memory state was zeroed before acting (bool [G, S]); memory brains only."""
    initial_state: Tensor | None = None
    """The memory state at the rollout's start [G, width, state_size]; memory brains only."""
    teacher_actions: Tensor | None = None
    """The kickstarting teacher's action for each sample (long [G, S]); None without a teacher."""


def teacher_loss(logp_all: Tensor, teacher_actions: Tensor, action_mask: Tensor, mask: Tensor
                 ) -> tuple[Tensor, dict[str, float]]:
    """Kickstarting's distillation term per brain [G]: the masked mean cross-entropy of the policy
    (log-probabilities [G, m, A]) on the teacher's actions [G, m]; samples where the teacher's action is
    illegal are left out. Also returns the loss and the agreement (greedy action == teacher's) as stats."""
    legal = action_mask.gather(-1, teacher_actions.unsqueeze(-1)).squeeze(-1)
    keep = mask.float() * legal.float()
    count = keep.sum(-1).clamp(min=1.0)
    cross_entropy = _masked_mean(-logp_all.gather(-1, teacher_actions.unsqueeze(-1)).squeeze(-1), keep, count)
    with torch.no_grad():
        agree = _masked_mean((logp_all.argmax(-1) == teacher_actions).float(), keep, count)
        stats = {"teacher_loss": cross_entropy.mean().item(), "teacher_agreement": agree.mean().item()}
    return cross_entropy, stats


def _minibatch_loss(brain: Brain, batch: Batch, idx: Tensor, config: PPOConfig, teacher_coef: float = 0.0
                    ) -> tuple[Tensor, dict[str, float]]:
    """The PPO loss of one minibatch: flat samples idx, or for a memory brain whole columns idx; plus
    teacher_coef times the distillation term when the batch has teacher actions."""
    G = batch.actions.shape[0]
    if brain.has_memory:
        T = batch.steps

        def cols(x: Tensor) -> Tensor:
            return x.reshape(G, T, -1, *x.shape[2:])[:, :, idx]

        assert batch.resets is not None and batch.initial_state is not None
        logp_all, new_value = brain.sequence_policy(
            cols(batch.codes), cols(batch.proprio), cols(batch.action_mask),
            batch.initial_state[:, idx], cols(batch.resets))

        def pick(x: Tensor) -> Tensor:
            return cols(x).reshape(G, -1, *x.shape[2:])
    else:
        logp_all, new_value = brain.policy(batch.codes[:, idx], batch.proprio[:, idx],
                                           batch.action_mask[:, idx])

        def pick(x: Tensor) -> Tensor:
            return x[:, idx]
    new_logprob, entropy = log_prob_and_entropy(logp_all, pick(batch.actions))
    loss, stats = ppo_loss(new_logprob, entropy, new_value, pick(batch.logprobs), pick(batch.values),
                           pick(batch.advantages), pick(batch.returns), pick(batch.mask), config.clip_coef,
                           config.vf_coef, config.ent_coef, config.clip_vloss, config.norm_adv)
    if batch.teacher_actions is not None and teacher_coef > 0:
        distill, teacher_stats = teacher_loss(logp_all, pick(batch.teacher_actions), pick(batch.action_mask),
                                              pick(batch.mask))
        loss = loss + teacher_coef * distill.sum()
        stats.update(teacher_stats)
    return loss, stats


def ppo_update(brain: Brain, optimizer: torch.optim.Optimizer, batch: Batch, config: PPOConfig,
               teacher_coef: float = 0.0) -> dict[str, float]:
    """Run CleanRL's epochs x minibatches over the batch; return the last minibatch's stats (means).

    Memory brains draw minibatches of whole columns (at most one per column when there are fewer
    columns than ``num_minibatches``). With teacher actions in the batch and teacher_coef > 0 the loss
    gains kickstarting's distillation term (``teacher_loss``)."""
    samples = batch.actions.shape[1]
    if brain.has_memory:
        if batch.resets is None or batch.initial_state is None:
            raise ValueError("brain.memory=gru: the batch needs resets and initial_state")
        samples //= batch.steps  # columns
    minibatch = max(1, samples // config.num_minibatches)
    params = [p for p in brain.parameters() if p.requires_grad]
    stats: dict[str, float] = {}
    for _epoch in range(config.update_epochs):
        order = torch.randperm(samples)
        for start in range(0, samples, minibatch):
            idx = order[start:start + minibatch]
            loss, stats = _minibatch_loss(brain, batch, idx, config, teacher_coef)
            optimizer.zero_grad(set_to_none=False)
            loss.backward()
            norms = clip_grad_norm_per_brain(params, config.max_grad_norm)
            optimizer.step()
        if config.target_kl is not None and stats["approx_kl"] > config.target_kl:
            break
    stats["grad_norm"] = float(norms.mean())
    stats["explained_variance"] = explained_variance(batch.values, batch.returns, batch.mask)
    return stats
