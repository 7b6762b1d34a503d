"""Rollout storage: preallocated brain-major tensors [G, T, M, ...] filled one tick at a time."""

from __future__ import annotations

import torch
from torch import Tensor

from agents.ppo import Batch, gae


class Rollout:
    """T ticks of G brain groups x M samples each (M = envs per brain, or envs * slots when shared)."""

    def __init__(self, groups: int, steps: int, width: int, view: int, proprio_size: int,
                 n_actions: int, state_size: int = 0, teacher: bool = False) -> None:
        G, T, M = groups, steps, width
        self.groups, self.steps, self.width = G, T, M
        self.codes = torch.zeros(G, T, M, view, view, dtype=torch.uint8)
        self.proprio = torch.zeros(G, T, M, proprio_size)
        self.action_mask = torch.zeros(G, T, M, n_actions, dtype=torch.bool)
        self.actions = torch.zeros(G, T, M, dtype=torch.long)
        self.logprobs = torch.zeros(G, T, M)
        self.values = torch.zeros(G, T, M)
        self.rewards = torch.zeros(G, T, M)
        #: dones[:, t]: obs t is the first of a new life (the previous tick ended one).
        self.dones = torch.zeros(G, T, M, dtype=torch.bool)
        #: mask[:, t]: the sample enters the loss (NPC alive at obs t, action not overridden).
        self.mask = torch.zeros(G, T, M, dtype=torch.bool)
        #: resets[:, t]: the memory state was zeroed before acting on obs t (memory brains).
        self.resets = torch.zeros(G, T, M, dtype=torch.bool)
        #: The memory state before tick 0 of this rollout [G, M, state_size] (width 0 without memory).
        self.initial_state = torch.zeros(G, M, state_size)
        #: teacher_actions[:, t]: the kickstarting teacher's action on obs t (None without a teacher).
        self.teacher_actions = torch.zeros(G, T, M, dtype=torch.long) if teacher else None

    def batch(self, next_value: Tensor, next_done: Tensor, gamma: float, gae_lambda: float,
              teacher: bool = False) -> Batch:
        """Advantages by GAE and everything flattened to [G, T * M, ...] for the update (with the teacher's
        actions when teacher, i.e. when this rollout filled them)."""
        advantages, returns = gae(self.rewards.transpose(0, 1), self.values.transpose(0, 1),
                                  self.dones.transpose(0, 1), next_value, next_done, gamma, gae_lambda)
        G, S = self.groups, self.steps * self.width

        def flat(x: Tensor) -> Tensor:
            return x.reshape(G, S, *x.shape[3:])

        return Batch(codes=flat(self.codes), proprio=flat(self.proprio), action_mask=flat(self.action_mask),
                     actions=flat(self.actions), logprobs=flat(self.logprobs), values=flat(self.values),
                     advantages=flat(advantages.transpose(0, 1).contiguous()),
                     returns=flat(returns.transpose(0, 1).contiguous()), mask=flat(self.mask),
                     steps=self.steps, resets=flat(self.resets), initial_state=self.initial_state.clone(),
                     teacher_actions=flat(self.teacher_actions)
                     if teacher and self.teacher_actions is not None else None)
