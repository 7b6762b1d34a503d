"""Vault cell (region math): a vault entrance - a door or a lock terminal - in the view.

Confidence: 0 when none is visible, else ``0.6 + 0.4 / (1 + distance)`` of the nearest one (0.8 next
to it, 0.66 at the view's edge): a sighting, with no memory. Value: its manhattan distance, -1 when
none is visible. With the key cell (a key in hand or seen lately) or the math cell (a lock in reach)
it makes the math region collapse: a vault the NPC could open is in sight.
"""

from __future__ import annotations

import numpy as np

from nervous.cells.base import Cell, proximity_weight
from nervous.messages import Region
from world.tiles import T

#: Confidence of an entrance at the view's edge (the floor) and what closeness adds to it.
SIGHTED, NEARNESS = 0.6, 0.4


class VaultCell(Cell):
    """Where the nearest door or lock is."""

    name = "vault"
    region = Region.MATH
    value_scale = 1.0 / 6.0

    def _step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        m, side, _ = views.shape
        entrance = (views == T.DOOR) | (views == T.LOCK)
        closeness = np.maximum.reduce((entrance * proximity_weight(side)).reshape(m, -1), axis=1)
        seen = closeness > 0
        confidence = np.where(seen, SIGHTED + NEARNESS * closeness, 0.0)
        distance = np.where(seen, np.rint(1.0 / np.maximum(closeness, 1e-6)) - 1.0, -1.0)
        return confidence, distance


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["vault", *sys.argv[1:]]))
