"""PPO for the governor network: a buffer of governor ticks and one clipped update (CleanRL's recipe).

Each governor tick adds one row per NPC slot (scaled inputs, chosen level and gates, log-probability,
value, alive, and the brain calls its chosen rate asks for with their expectation under the policy). The
row's reward and done arrive one governor tick later (``close``). Rows of dead slots stay out of the
loss. Advantages by GAE over the completed ticks, bootstrapped with the value now.

**The calls constraint** (a Lagrangian PPO, as in OmniSafe's PPO-Lag): a decision's cost is the brain
calls its rate asks for in the next governor period, known at once, so its advantage needs no critic:
the calls asked minus their expectation under the policy (an exact baseline). Both advantages are
normalised per minibatch and mixed as ``(A_reward - m * A_calls) / (1 + m)`` for a multiplier ``m``
(dimensionless: 1 weighs calls as much as return), which the trainer moves on the measured call rate
(``LearnedGovernor.dual_step``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from governor.config import GovernorConfig
from governor.network import Choice, GovernorNet


class GovernorBuffer:
    """Governor ticks of all NPC slots: inputs and choices now, rewards and dones one tick later."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Tensor]] = []

    @property
    def pending(self) -> bool:
        """Whether the newest tick still waits for its reward."""
        return bool(self.rows) and "reward" not in self.rows[-1]

    @property
    def complete(self) -> int:
        """Ticks with their reward in."""
        return len(self.rows) - int(self.pending)

    def add(self, x: Tensor, choice: Choice, alive: Tensor, calls: Tensor, expected_calls: Tensor) -> None:
        """One governor tick's inputs [M, 2F], choices, alive [M], and the brain calls the chosen rates ask
        for [M] with their expectation under the policy [M]."""
        self.rows.append({"x": x, "level": choice.level, "gates": choice.gates, "logprob": choice.logprob,
                          "value": choice.value, "alive": alive, "calls": calls.float(),
                          "expected_calls": expected_calls.float()})

    def close(self, reward: Tensor, done: Tensor) -> None:
        """The reward [M] and done [M] of the newest tick."""
        self.rows[-1]["reward"], self.rows[-1]["done"] = reward.float(), done.bool()

    def take(self) -> list[dict[str, Tensor]]:
        """The completed ticks (removed); a pending one stays."""
        done, self.rows = self.rows[: self.complete], self.rows[self.complete :]
        return done


def _standardise(a: Tensor) -> Tensor:
    return (a - a.mean()) / (a.std() + 1e-8) if len(a) > 1 else a


def ppo_update(net: GovernorNet, optimizer: torch.optim.Optimizer, buffer: GovernorBuffer, next_value: Tensor,
               config: GovernorConfig, generator: torch.Generator, calls_multiplier: float = 0.0,
               ) -> dict[str, float]:
    """One PPO update over the buffer's completed ticks (calls weighed by calls_multiplier); mean losses."""
    rows = buffer.take()
    T = len(rows)
    stack = {key: torch.stack([r[key] for r in rows]) for key in rows[0]}  # [T, M, ...]
    reward, done, value = stack["reward"], stack["done"].float(), stack["value"]
    advantages = torch.zeros_like(reward)
    last = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        following = next_value if t == T - 1 else value[t + 1]
        nonterminal = 1.0 - done[t]
        delta = reward[t] + config.gamma * following * nonterminal - value[t]
        last = delta + config.gamma * config.gae_lambda * nonterminal * last
        advantages[t] = last
    returns = advantages + value
    keep = stack["alive"].reshape(-1)
    flat = {key: v.reshape(T * v.shape[1], *v.shape[2:])[keep] for key, v in stack.items()}
    adv, ret = advantages.reshape(-1)[keep], returns.reshape(-1)[keep]
    calls_adv = flat["calls"] - flat["expected_calls"]
    n = len(adv)
    if n == 0:
        return {}
    size = max(1, n // config.num_minibatches)
    totals = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0}
    count = 0
    for _ in range(config.update_epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, size):
            idx = order[start : start + size]
            logprob, entropy, new_value = net.evaluate(flat["x"][idx], flat["level"][idx], flat["gates"][idx])
            log_ratio = logprob - flat["logprob"][idx]
            ratio = log_ratio.exp()
            a = _standardise(adv[idx])
            if calls_multiplier > 0:
                c = calls_adv[idx]
                c = c / (c.std() + 1e-8) if len(c) > 1 else c  # centred already, by its exact baseline
                a = (a - calls_multiplier * c) / (1.0 + calls_multiplier)
            clipped = ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)
            policy_loss = torch.max(-a * ratio, -a * clipped).mean()
            value_loss = 0.5 * ((new_value - ret[idx]) ** 2).mean()
            loss = policy_loss + 0.5 * value_loss - config.ent_coef * entropy.mean()
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 0.5)
            optimizer.step()
            with torch.no_grad():
                totals["approx_kl"] += float(((ratio - 1) - log_ratio).mean())
            totals["policy_loss"] += policy_loss.item()
            totals["value_loss"] += value_loss.item()
            totals["entropy"] += entropy.mean().item()
            count += 1
    out = {f"governor/{key}": value / count for key, value in totals.items()}
    residual = np.var((ret - flat["value"]).numpy())
    out["governor/explained_variance"] = float(1 - residual / (np.var(ret.numpy()) + 1e-8))
    return out
