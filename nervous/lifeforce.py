"""Lifeforce accounting: what living and thinking cost, charged through ``GridWorld.charge``.

Costs are in lifeforce units (the world's lifeforce lies in [0, 1]). ``lifeforce_cost`` turns per-NPC
counts of the last tick into the float32 cost array the world subtracts at its next step::

    world.charge(lifeforce_cost(cfg, ticks=1, brain_calls=acted, organ_calls=organs, escalations=gates))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass
class LifeforceConfig:
    """Lifeforce cost of each kind of work."""

    per_tick: float = 0.0
    """Charged every tick an NPC is alive, on top of the world's own metabolism."""
    per_brain_call: float = 0.0005
    """Charged each time an NPC's brain is evaluated (depends on its tick rate)."""
    per_organ_call: float = 0.002
    """Charged per organ call (vision, speech)."""
    per_escalation: float = 0.01
    """Charged per escalation to the cortex through an open gate."""

    def __post_init__(self) -> None:
        for name in ("per_tick", "per_brain_call", "per_organ_call", "per_escalation"):
            if getattr(self, name) < 0:
                raise ValueError(f"lifeforce.{name} must be >= 0, got {getattr(self, name)}")


def lifeforce_cost(
    config: LifeforceConfig,
    ticks: ArrayLike = 1,
    brain_calls: ArrayLike = 0,
    organ_calls: ArrayLike = 0,
    escalations: ArrayLike = 0,
    alive: ArrayLike | None = None,
) -> np.ndarray:
    """float32 cost per NPC (broadcast shape of the counts), zero where alive is False."""
    cost = (
        config.per_tick * np.asarray(ticks, dtype=np.float64)
        + config.per_brain_call * np.asarray(brain_calls, dtype=np.float64)
        + config.per_organ_call * np.asarray(organ_calls, dtype=np.float64)
        + config.per_escalation * np.asarray(escalations, dtype=np.float64)
    )
    if alive is not None:
        cost = np.where(np.asarray(alive, dtype=bool), cost, 0.0)
    return np.asarray(cost, dtype=np.float32)
