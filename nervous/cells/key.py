"""Key cell (region math): a key in hand, or one seen lately.

Confidence: 0.9 while the NPC carries a key; else 0.6 when a key is in view, remembered with a decay of
``key_memory`` per tick (a key seen 30 ticks ago still reads 0.44 at the default 0.99), 0 when none was
seen. Value: 1 while it carries a key, else 0. With the vault cell it makes the math region collapse:
a door in sight and the key to open it known.

With ``key_wanted`` > 0 (default 0: off) a door in view while no key is held reads at least
``key_wanted`` (value 0; a key remembered more strongly reads its memory): a key is wanted. At 0.3 or
more, with the vault cell (0.66 at the view's edge) the math region collapses at such a door too, and
the cortex is asked about a door whose key the NPC does not know - which only its vision organ,
seeing a 15x15 window beyond the 7x7 view, can answer.
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
        confidence = np.where(held, np.float32(HELD), memory)
        wanted = self.config.key_wanted
        if wanted > 0:
            door = nearest(views, T.DOOR)[0] > 0
            confidence = np.where(door & ~held, np.maximum(confidence, np.float32(wanted)), confidence)
        return confidence, held.astype(np.float32)


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["key", *sys.argv[1:]]))
