"""Hazard cell (region hazard): fire in the view, with a decaying memory.

Confidence: 1 standing in fire, else 1 / (1 + distance) of the nearest visible fire, and never less
than the previous tick's confidence times ``hazard_decay`` (a burnt NPC stays wary for a while).
Value: the ``Action`` code that steps towards the nearest fire (INTERACT when standing in it; nerves
steer away from it), 0 when no fire is visible.
"""

from __future__ import annotations

import numpy as np

from nervous.cells.base import Cell, direction_to, proximity_weight, tile_mask
from nervous.messages import Region
from world.tiles import Tile


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
        heat = tile_mask(views, Tile.FIRE) * proximity_weight(views.shape[1])
        seen = heat.reshape(len(views), -1).max(axis=1)
        self.memory = np.maximum(seen, self.memory * self.config.hazard_decay).astype(np.float32)
        return self.memory.copy(), np.where(seen > 0, direction_to(views, heat), 0)


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["hazard", *sys.argv[1:]]))
