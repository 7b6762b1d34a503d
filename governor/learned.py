"""The learned governor: the shared network decides every NPC's tick rate and gates, and learns by PPO.

Per governor tick it reads the inputs array of all NPCs of all envs at once (``decide_batch``: one
forward), chooses a tick-rate level and the gates per NPC (sampled while learning, the most likely
choice when deployed with ``governor.greedy``), and completes them as every governor does
(``baselines.finish_decisions``): the quota follows the rate and is fitted to each env's CPU budget,
dead rows are cleared. Its **LLM priority** is its own urgency: ``round(10 * level / (levels - 1))``,
the fastest rate it chose ranking first (the network has no separate priority head: in training the
cortex is never queued, so such a head would learn nothing). Its **organ gates** are derived the same
way: ``finish_decisions`` opens an NPC's vision gate from the network's own math and food gates and the NPC's
reserve (``governor.organ_gates``), so there is no organ-gate head and a checkpoint saved before organ
gates existed loads and decides as before.

Learning (``learning=True``): every decision is remembered with its log-probability and value; the
runtime reports each NPC's reward over the period that followed (``observe_outcome``: the world's
reward, in which brain calls and escalations already cost lifeforce, minus ``governor.cpu_charge`` per
simulated CPU-second) and whether its life ended; after ``governor.rollout_ticks`` governor ticks it
makes one PPO update (``governor.learner``).

**The calls constraint** (constrained RL, a Lagrangian relaxation): training keeps the brain calls per
NPC-second at or under ``governor.calls_target`` times the fastest tick rate. Each decision's cost is the
brain calls its chosen rate asks for in the period (``rate / governor_hz``); PPO weighs the cost's
advantage against the reward's by ``calls_multiplier`` (``governor.learner``), and after each update the
trainer moves the multiplier on the call rate it measured (``dual_step``, a PI-controlled Lagrange
multiplier as in Stooke et al. 2020, "Responsive Safety in RL by PID Lagrangian Methods"): with
``excess = measured / fastest - calls_target``, the integral ``I += calls_multiplier_lr * excess`` (dual
ascent, never below 0) and ``multiplier = max(0, I + calls_multiplier_kp * excess)``. Under the target
the multiplier falls towards 0 and PPO trades calls for return freely.

Measured choices (stage 2, heuristic brains, target 6 calls/s unless said):

- A larger ``cpu_charge`` did not move PPO (3x still used 9.5 calls/s: a brain call's 0.27 ms of CPU
  is worth little reward).
- Charging the multiplier per call inside the reward (reward units) lagged: after 35 updates its
  price had risen to 0.012 per call, 24 times a call's lifeforce, and the governor still used 7.8
  calls/s. The cost's own advantage, exact and noise-free, makes the multiplier dimensionless and the
  same on every stage.
- Pure dual ascent (``calls_multiplier_kp=0``, step 5) on a fresh network wound up: the multiplier
  reached 7.5 while the policy lagged, and the calls overshot to 1.8/s at success 0.13. With the
  proportional term (step 1, gain 10) they bottomed at 3.7/s and came back towards the target.
- Warm-started from the heuristic governor (about 4.5 calls/s), the multiplier stays near 0 and bites
  only when PPO pushes the calls over the target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from governor.baselines import finish_decisions
from governor.config import GovernorConfig
from governor.decisions import Decisions
from governor.inputs import GlobalContext
from governor.learner import GovernorBuffer, ppo_update
from governor.network import GovernorNet, normalise


def load_network(config: GovernorConfig) -> GovernorNet:
    """The network of governor.checkpoint, or a fresh one; ValueError naming the file when it does not fit."""
    rates = sorted(config.tick_rates)
    if not config.checkpoint:
        return GovernorNet(len(rates), config.hidden)
    path = Path(config.checkpoint)
    where = f"governor.checkpoint={config.checkpoint}"
    if not path.is_file():
        raise ValueError(f"{where}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file
        raise ValueError(f"{where}: unreadable ({type(error).__name__})") from None
    return GovernorNet.from_state(state.get("governor", state) if isinstance(state, dict) else state, rates,
                                  where)


class LearnedGovernor:
    """The governor network as a governor: ``decide``/``decide_batch``, and PPO when learning."""

    def __init__(self, config: GovernorConfig, net: GovernorNet | None = None, learning: bool = False,
                 seed: int = 0) -> None:
        self.config = config
        self.rates = np.array(sorted(config.tick_rates), dtype=np.int64)
        self.net = net if net is not None else load_network(config)
        self.learning = learning
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.learning_rate, eps=1e-5)
        self.buffer = GovernorBuffer()
        self.updates = 0
        self.last_losses: dict[str, float] = {}
        self.calls_multiplier = 0.0
        """Lagrange multiplier of the calls constraint: the weight of calls against return in PPO."""
        self.calls_integral = 0.0
        """The multiplier's dual-ascent (integral) part."""
        self._calls_per_level = torch.from_numpy(self.rates / config.governor_hz).float()
        """Brain calls one governor period asks for at each tick-rate level."""

    # --- deciding ------------------------------------------------------------------------------
    def decide(self, features: np.ndarray, context: GlobalContext) -> Decisions:
        """Decisions for the NPC rows of one env."""
        return self.decide_batch(np.asarray(features)[None], [context])[0]

    def decide_batch(self, features: np.ndarray, contexts: list[GlobalContext]) -> list[Decisions]:
        """Decisions for features [B, N, F] of B envs (one forward for all NPCs)."""
        features = np.asarray(features, dtype=np.float32)
        B, N, _ = features.shape
        x = torch.from_numpy(normalise(features).reshape(B * N, -1))
        greedy = self.config.greedy and not self.learning
        choice = self.net.act(x, greedy=greedy, generator=self.generator)
        level = choice.level.numpy().reshape(B, N)
        if self.learning:
            alive = torch.from_numpy(features[..., 0].reshape(-1) > 0.5)
            calls = self._calls_per_level[choice.level]
            self.buffer.add(x, choice, alive, calls, choice.rate_probs @ self._calls_per_level)
        gates = choice.gates.numpy().reshape(B, N, -1) > 0.5
        priority = 10.0 * level / max(1, len(self.rates) - 1)
        return [finish_decisions(self.config, features[b], self.rates[level[b]], gates[b], priority[b])
                for b in range(B)]

    # --- learning ------------------------------------------------------------------------------
    def observe_outcome(self, reward: np.ndarray, done: np.ndarray) -> None:
        """The reward [B, N] and life ended [B, N] of the period after the last decision."""
        if not self.learning or not self.buffer.pending:
            return
        self.buffer.close(torch.as_tensor(np.asarray(reward, np.float32).reshape(-1)),
                          torch.as_tensor(np.asarray(done, bool).reshape(-1)))

    def maybe_learn(self, features: np.ndarray) -> dict[str, float] | None:
        """One PPO update when ``rollout_ticks`` periods are complete (features: the state now); losses."""
        if not self.learning or self.buffer.complete < self.config.rollout_ticks:
            return None
        B, N = np.asarray(features).shape[:2]
        x = torch.from_numpy(normalise(np.asarray(features, np.float32)).reshape(B * N, -1))
        with torch.no_grad():
            next_value = self.net(x)[2]
        self.last_losses = ppo_update(self.net, self.optimizer, self.buffer, next_value, self.config,
                                      self.generator, self.calls_multiplier)
        self.updates += 1
        return self.last_losses

    def dual_step(self, calls_per_npc_s: float) -> float:
        """Move the calls multiplier on a measured call rate (brain calls per NPC-second): dual ascent of its
        integral plus a proportional term; the new multiplier."""
        excess = calls_per_npc_s / float(self.rates[-1]) - self.config.calls_target
        self.calls_integral = max(0.0, self.calls_integral + self.config.calls_multiplier_lr * excess)
        self.calls_multiplier = max(0.0, self.calls_integral + self.config.calls_multiplier_kp * excess)
        return self.calls_multiplier

    def state_dict(self) -> dict:
        """Network (checkpoint payload), optimiser, update count and the calls multiplier."""
        return {"governor": self.net.state(list(self.config.tick_rates)),
                "optimizer": self.optimizer.state_dict(), "updates": self.updates,
                "calls_multiplier": self.calls_multiplier, "calls_integral": self.calls_integral}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` gave (resume)."""
        net = GovernorNet.from_state(state["governor"], sorted(self.config.tick_rates), "resume")
        self.net.load_state_dict(net.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state.get("updates", 0))
        self.calls_multiplier = float(state.get("calls_multiplier", 0.0))
        self.calls_integral = float(state.get("calls_integral", 0.0))
