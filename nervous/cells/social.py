"""Social cell (region social): other NPCs and their signals.

Confidence: the strongest of the heard-signal fraction (proprio HEARD_SIGNAL), 1 / (1 + distance) of
the nearest signalling NPC in view, and half that weight for the nearest silent NPC. Value: how many
other NPCs are visible.
"""

from __future__ import annotations

import numpy as np

from nervous.cells.base import Cell, proximity_weight, tile_mask
from nervous.messages import Region
from world.tiles import Proprio, Tile


class SocialCell(Cell):
    """Presence and calls of other NPCs."""

    name = "social"
    region = Region.SOCIAL
    value_scale = 1.0 / 8.0

    def _step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        m, side, _ = views.shape
        weight = proximity_weight(side).copy()
        weight[side // 2, side // 2] = 0.0  # the centre is the NPC itself
        others = tile_mask(views, Tile.NPC, Tile.NPC_SIGNAL)
        calling = views == Tile.NPC_SIGNAL
        near_call = (calling * weight).reshape(m, -1).max(axis=1)
        near_npc = 0.5 * (others * weight).reshape(m, -1).max(axis=1)
        heard = np.clip(proprio[:, Proprio.HEARD_SIGNAL], 0.0, 1.0)
        conf = np.maximum(np.maximum(near_call, near_npc), heard)
        count = (others * (weight > 0)).reshape(m, -1).sum(axis=1)
        return conf, count


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["social", *sys.argv[1:]]))
