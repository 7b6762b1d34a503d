"""Smell cell (region food): the food gradient in the view.

Confidence: 1 / (1 + manhattan distance) of the nearest visible food (1 standing on it, 0.5 next to
it, 0 when none is visible). Value: the ``Action`` code that steps towards it (INTERACT when the
NPC stands on it), 0 when none is visible.
"""

from __future__ import annotations

import numpy as np

from nervous.cells.base import Cell, nearest
from nervous.messages import Region
from world.tiles import T


class SmellCell(Cell):
    """Where the nearest food is."""

    name = "smell"
    region = Region.FOOD
    value_scale = 1.0 / 6.0

    def _step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        return nearest(views, T.FOOD)


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["smell", *sys.argv[1:]]))
