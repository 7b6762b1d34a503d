"""The learned governor's network: one small MLP shared by all NPCs, with a pooled context of its machine.

Input per NPC: its inputs row (``governor.inputs``) scaled to about unit range (``normalise``) and the
mean of the scaled rows of the living NPCs of its machine (env), so each decision sees the crowd it
shares the CPU with. Outputs per NPC: logits over the tick-rate levels (``governor.tick_rates``
sorted), one gate logit per region (Bernoulli: open or closed) and a value (the critic of PPO).
``GovernorNet.act`` samples (training) or takes the most likely choice (deployed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical

from governor.inputs import (
    CORTEX_LATENCY_S,
    CORTEX_QUEUE,
    CPU_USE,
    LAG_S,
    NUM_FEATURES,
    NUM_REGIONS,
    REWARD_RATE,
    SINCE_BRAIN_CALL_S,
    SINCE_ESCALATION_S,
    TICK_RATE,
)

#: Checkpoint format of a governor network (``GovernorNet.state`` / ``load_state``).
GOVERNOR_FORMAT = "nimmerverse-governor-1"

#: Per-column scale of the inputs (others are already in 0..1).
_SCALE = np.ones(NUM_FEATURES, dtype=np.float32)
_SCALE[REWARD_RATE] = 20.0
_SCALE[TICK_RATE] = 1.0 / 20.0
_SCALE[CPU_USE] = 20.0
_SCALE[LAG_S] = 10.0
_SCALE[SINCE_BRAIN_CALL_S] = 1.0
_SCALE[SINCE_ESCALATION_S] = 1.0 / 10.0
_SCALE[CORTEX_QUEUE] = 1.0 / 10.0
_SCALE[CORTEX_LATENCY_S] = 1.0


def normalise(features: np.ndarray) -> np.ndarray:
    """float32 [..., N, 2F]: each row scaled and clipped to -3..3, then its machine's pooled living rows."""
    x = np.clip(np.asarray(features, dtype=np.float32) * _SCALE, -3.0, 3.0)
    alive = x[..., :1] > 0.5  # column ALIVE
    pooled = (x * alive).sum(axis=-2, keepdims=True) / np.maximum(alive.sum(axis=-2, keepdims=True), 1)
    return np.concatenate([x, np.broadcast_to(pooled, x.shape)], axis=-1).astype(np.float32)


@dataclass
class Choice:
    """One governor tick's sampled (or greedy) choices for M NPC rows."""

    level: Tensor
    """int64 [M]: index into the sorted tick rates."""
    gates: Tensor
    """float32 [M, R]: 1 open, 0 closed."""
    logprob: Tensor
    """float32 [M]: log-probability of the whole choice."""
    value: Tensor
    """float32 [M]: the critic's value."""
    rate_probs: Tensor
    """float32 [M, L]: the policy's probability of each tick-rate level."""


class GovernorNet(nn.Module):
    """Per-NPC MLP: scaled inputs plus the pooled machine context -> rate logits, gate logits, value."""

    def __init__(self, levels: int, hidden: int = 64, fastest_bias: float = 2.0,
                 gate_bias: float = -2.0) -> None:
        super().__init__()
        self.levels, self.hidden = levels, hidden
        self.body = nn.Sequential(
            nn.Linear(2 * NUM_FEATURES, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh()
        )
        self.rate = nn.Linear(hidden, levels)
        self.gate = nn.Linear(hidden, NUM_REGIONS)
        self.value = nn.Linear(hidden, 1)
        for layer in (self.rate, self.gate):
            nn.init.orthogonal_(layer.weight, 0.01)
        nn.init.orthogonal_(self.value.weight, 1.0)
        with torch.no_grad():  # start close to the fixed governor: fastest rate, gates closed
            self.rate.bias.zero_()
            self.rate.bias[-1] = fastest_bias
            self.gate.bias.fill_(gate_bias)
            self.value.bias.zero_()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(rate logits [M, L], gate logits [M, R], value [M]) of scaled inputs [M, 2F]."""
        h = self.body(x)
        return self.rate(h), self.gate(h), self.value(h).squeeze(-1)

    def evaluate(self, x: Tensor, level: Tensor, gates: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(logprob [M], entropy [M], value [M]) of given choices."""
        rate_logits, gate_logits, value = self(x)
        rate, gate = Categorical(logits=rate_logits), Bernoulli(logits=gate_logits)
        logprob = rate.log_prob(level) + gate.log_prob(gates).sum(-1)
        entropy = rate.entropy() + gate.entropy().sum(-1)
        return logprob, entropy, value

    @torch.no_grad()
    def act(self, x: Tensor, greedy: bool, generator: torch.Generator | None = None) -> Choice:
        """Choices for every row: sampled, or the most likely rate and gates open where p > 0.5."""
        rate_logits, gate_logits, value = self(x)
        if greedy:
            level = rate_logits.argmax(-1)
            gates = (gate_logits > 0).float()
        else:
            level = torch.multinomial(torch.softmax(rate_logits, -1), 1, generator=generator).squeeze(-1)
            gates = torch.bernoulli(torch.sigmoid(gate_logits), generator=generator)
        logprob = Categorical(logits=rate_logits).log_prob(level) + Bernoulli(logits=gate_logits).log_prob(
            gates).sum(-1)
        return Choice(level=level, gates=gates, logprob=logprob, value=value,
                      rate_probs=torch.softmax(rate_logits, -1))

    def state(self, tick_rates: list[int]) -> dict:
        """The checkpoint payload: format, shape, the rates its levels stand for, and the weights."""
        return {"format": GOVERNOR_FORMAT, "levels": self.levels, "hidden": self.hidden,
                "features": NUM_FEATURES, "tick_rates": sorted(tick_rates), "weights": self.state_dict()}

    @classmethod
    def from_state(cls, state: dict, tick_rates: list[int], where: str) -> GovernorNet:
        """A network from a checkpoint payload; ValueError naming what does not fit."""
        if not isinstance(state, dict) or state.get("format") != GOVERNOR_FORMAT:
            raise ValueError(f"{where}: not a governor checkpoint (format {GOVERNOR_FORMAT} expected)")
        if state.get("features") != NUM_FEATURES:
            raise ValueError(f"{where}: the network reads {state.get('features')} inputs, this governor "
                             f"gives {NUM_FEATURES}")
        if state.get("tick_rates") != sorted(tick_rates):
            raise ValueError(f"{where}: trained for tick rates {state.get('tick_rates')}, "
                             f"governor.tick_rates is {sorted(tick_rates)}")
        net = cls(int(state["levels"]), int(state["hidden"]))
        net.load_state_dict(state["weights"])
        return net
