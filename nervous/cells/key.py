"""Key cell (region math): a key in hand, or one seen lately.

Confidence: 0.9 while the NPC carries a key; else 0.6 when a key is in view, remembered with a decay of
``key_memory`` per tick (a key seen 30 ticks ago still reads 0.44 at the default 0.99), 0 when none was
seen. Value: 1 while it carries a key, else 0. With the vault cell it makes the math region collapse:
a door in sight and the key to open it known.
"""

from __future__ import annotations

import numpy as np

from nervous.cells.base import RememberingCell, nearest
from nervous.messages import Region
from world.tiles import P, T

#: Confidence while a key is carried, and when one is in view.
HELD, SEEN = 0.9, 0.6


class KeyCell(RememberingCell):
    """Whether the NPC has, or lately saw, a key."""

    name = "key"
    region = Region.MATH

    def _step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        held = proprio[:, P.HAS_KEY] > 0.5
        in_view = nearest(views, T.KEY)[0] > 0
        memory = self.remember(in_view, SEEN, self.config.key_memory)
        return np.where(held, np.float32(HELD), memory), held.astype(np.float32)


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["key", *sys.argv[1:]]))
