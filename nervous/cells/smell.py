"""Smell cell (region food): the food gradient in the view.

Confidence: 1 / (1 + manhattan distance) of the nearest visible food (1 standing on it, 0.5 next to
it, 0 when none is visible). Value: the ``Action`` code that steps towards it (INTERACT when the
NPC stands on it).
"""

from __future__ import annotations

import numpy as np

from nervous.cells.base import Cell, direction_to, proximity_weight, tile_mask
from nervous.messages import Region
from world.tiles import Tile


def food_scent(views: np.ndarray) -> np.ndarray:
    """float32 [M, V, V]: proximity weight where the view shows food, else 0."""
    return tile_mask(views, Tile.FOOD) * proximity_weight(views.shape[1])


class SmellCell(Cell):
    """Where the nearest food is."""

    name = "smell"
    region = Region.FOOD
    value_scale = 1.0 / 6.0

    def _step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        scent = food_scent(views)
        conf = scent.reshape(len(views), -1).max(axis=1)
        return conf, np.where(conf > 0, direction_to(views, scent), 0)


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["smell", *sys.argv[1:]]))
