"""Forage cell (region food): food seen lately, wherever it is now.

Confidence: 0.6 when food is in view, remembered with a decay of ``food_memory`` per tick (food seen
30 ticks ago still reads 0.44 at the default 0.99), 0 when none was seen. Value: 1 while food is in
view, else 0. The smell cell says where the nearest visible food is; this one says that food was
somewhere, so that hunger (the hunger cell) far from it can collapse the food region and escalate.
"""

from __future__ import annotations

import numpy as np

from nervous.cells.base import RememberingCell, nearest
from nervous.messages import Region
from world.tiles import T

#: Confidence of a sighting.
SEEN = 0.6


class ForageCell(RememberingCell):
    """Whether the NPC saw food lately."""

    name = "forage"
    region = Region.FOOD

    def _step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        in_view = nearest(views, T.FOOD)[0] > 0
        return self.remember(in_view, SEEN, self.config.food_memory), in_view.astype(np.float32)


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["forage", *sys.argv[1:]]))
