"""Slot layout: world arrays [B, N, ...] <-> brain-major tensors [G, M, ...] (slot i -> brain i)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class SlotLayout:
    """Maps B envs x N slots to G brain groups x M samples: (N, B) per NPC, or (1, B * N) shared."""

    def __init__(self, shared: bool, num_envs: int, num_npcs: int) -> None:
        self.shared, self.B, self.N = shared, num_envs, num_npcs
        self.groups, self.width = (1, num_envs * num_npcs) if shared else (num_npcs, num_envs)

    def to_groups(self, x: np.ndarray) -> Tensor:
        """World-layout array [B, N, ...] as a brain-major tensor [G, M, ...] (a view, no copy)."""
        t = torch.from_numpy(x)
        if self.shared:
            return t.reshape(1, -1, *t.shape[2:])
        return t.transpose(0, 1)

    def to_slots(self, y: Tensor) -> np.ndarray:
        """Brain-major [G, M] back to world layout [B, N]."""
        return (y.reshape(self.B, self.N) if self.shared else y.T).numpy()
