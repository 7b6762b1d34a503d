"""Proximity cell (region collision): which of the four neighbouring cells block a move.

Value: bitmask of blocked moves (north 1, south 2, east 4, west 8). Confidence: blocked sides / 4.
A blocked cell is any ``world.tiles.BLOCKING`` tile (walls, water, doors, locks, other NPCs).
"""

from __future__ import annotations

import numpy as np

from nervous.cells.base import Cell, neighbours
from nervous.messages import Region
from world.tiles import BLOCKING

#: float64 [16]: by bitmask, the fraction of the four moves it blocks.
BLOCKED_FRACTION = np.array([bin(mask).count("1") / 4 for mask in range(16)])


def blocked_moves(views: np.ndarray) -> np.ndarray:
    """bool [M, 4]: moving north, south, east, west would bump into a blocking tile."""
    return BLOCKING[neighbours(views)]


class ProximityCell(Cell):
    """Nearness of obstacles around each NPC."""

    name = "proximity"
    region = Region.COLLISION
    value_scale = 1.0 / 15.0

    def _step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        mask = np.packbits(blocked_moves(views), axis=1, bitorder="little")[:, 0]  # uint8: N 1, S 2, E 4, W 8
        return BLOCKED_FRACTION[mask], mask


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["proximity", *sys.argv[1:]]))
