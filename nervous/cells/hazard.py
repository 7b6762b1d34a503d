"""Hazard cell (region hazard): fire in the view, with a decaying memory.

Confidence: 1 standing in fire, else 1 / (1 + distance) of the nearest visible fire, and never less
than the previous tick's confidence times ``hazard_decay`` (a burnt NPC stays wary for a while).
Value: the ``Action`` code that steps towards the nearest fire (INTERACT when standing in it; nerves
steer away from it), 0 when no fire is visible.
"""

from __future__ import annotations

import numpy as np

from nervous.cells.base import Cell, nearest
from nervous.messages import Region
from world.tiles import T


class HazardCell(Cell):
    """How close fire is, remembered for a few ticks."""

    name = "hazard"
    region = Region.HAZARD
    value_scale = 1.0 / 6.0

    def reset(self, num_npcs: int) -> None:
        super().reset(num_npcs)
        self.memory = np.zeros(num_npcs, dtype=np.float32)

    def reset_npcs(self, mask: np.ndarray) -> None:
        self.memory[mask] = 0.0

    def _step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        seen, direction = nearest(views, T.FIRE)
        self.memory = np.maximum(seen, self.memory * self.config.hazard_decay).astype(np.float32, copy=False)
        return self.memory.copy(), direction


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["hazard", *sys.argv[1:]]))
