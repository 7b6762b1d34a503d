"""Social cell (region social): other NPCs and their signals.

Confidence: the strongest of the heard-signal fraction (proprio HEARD_SIGNAL), 1 / (1 + distance) of
the nearest signalling NPC in view, and half that weight for the nearest silent NPC. Value: how many
other NPCs are visible.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from nervous.cells.base import Cell, proximity_weight
from nervous.messages import Region
from world.tiles import P, T

#: float32 [256]: what an NPC seen on a view cell weighs, by cell code (a silent NPC half a signalling one).
CALL_WEIGHT = np.zeros(256, dtype=np.float32)
CALL_WEIGHT[T.NPC_SIGNAL] = 1.0
CALL_WEIGHT[T.NPC] = 0.5


@cache
def others_weight(side: int) -> np.ndarray:
    """float32 [side, side]: the proximity weight, 0 at the centre (the NPC itself)."""
    weight = proximity_weight(side).copy()
    weight[side // 2, side // 2] = 0.0
    return weight


class SocialCell(Cell):
    """Presence and calls of other NPCs."""

    name = "social"
    region = Region.SOCIAL
    value_scale = 1.0 / 8.0

    def _step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        m = len(views)
        # > 0 exactly where another NPC stands: weight, or half the weight for a silent NPC (exact in
        # float32, so the max is the larger of the nearest caller's weight and half the nearest NPC's)
        calls = (CALL_WEIGHT[views] * others_weight(views.shape[1])).reshape(m, -1)
        # HEARD_SIGNAL is clipped to [0, 1] with the confidence (Cell.step, CellBank): the nearest
        # weights are in [0, 1] already, so clipping after the max is the same as before it
        conf = np.maximum(np.maximum.reduce(calls, axis=1), proprio[:, P.HEARD_SIGNAL])
        count = np.add.reduce(calls > 0, axis=1)
        return conf, count


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["social", *sys.argv[1:]]))
