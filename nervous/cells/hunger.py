"""Hunger cell (region food): the body running low on lifeforce.

Confidence: 0 while lifeforce is at or above ``hunger_level``; below it 0.6, rising linearly to 0.95
as lifeforce falls to 0.1 (and staying there). Value: the lifeforce. With the forage cell it makes
the food region collapse: hungry, and food seen lately - worth asking where it was.
"""

from __future__ import annotations

import numpy as np

from nervous.cells.base import Cell
from nervous.messages import Region
from world.tiles import P

#: Confidence on entering hunger, and at its deepest (lifeforce 0.1 and below).
ONSET, DEEPEST = 0.6, 0.95
#: Lifeforce at which hunger is deepest.
STARVING = 0.1


class HungerCell(Cell):
    """How hungry the NPC is."""

    name = "hunger"
    region = Region.FOOD

    def _step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        life = proprio[:, P.LIFEFORCE]
        level = np.float32(self.config.hunger_level)
        depth = np.clip((level - life) / max(float(level) - STARVING, 1e-6), 0.0, 1.0)
        conf = np.where(life < level, np.float32(ONSET) + np.float32(DEEPEST - ONSET) * depth, 0.0)
        return conf.astype(np.float32), life.astype(np.float32)


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["hunger", *sys.argv[1:]]))
