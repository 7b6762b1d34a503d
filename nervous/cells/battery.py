"""Battery cell (region energy): hysteresis state machine OK -> LOW -> CRITICAL over lifeforce/battery.

Value: the level min(lifeforce, battery) in [0, 1]. Confidence: 0 in OK, rising from 0.3 to 0.9 as
the level falls through LOW, at least 0.9 in CRITICAL. A state is left only when the level climbs
``battery_hysteresis`` above the threshold that entered it, so the wave does not flicker.
"""

from __future__ import annotations

import numpy as np

from nervous.cells.base import Cell
from nervous.messages import Region
from world.tiles import Proprio

OK, LOW, CRITICAL = 0, 1, 2


class BatteryCell(Cell):
    """Urgency of recharging or eating, from the lower of lifeforce and battery."""

    name = "battery"
    region = Region.ENERGY

    def reset(self, num_npcs: int) -> None:
        super().reset(num_npcs)
        self.state = np.zeros(num_npcs, dtype=np.uint8)

    def reset_npcs(self, mask: np.ndarray) -> None:
        self.state[mask] = OK

    def _step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        level = np.minimum(proprio[:, Proprio.LIFEFORCE], proprio[:, Proprio.BATTERY])
        h = cfg.battery_hysteresis
        s = self.state
        # transitions: down immediately at a threshold, up only past threshold + hysteresis
        s[level <= cfg.battery_low] = np.maximum(s[level <= cfg.battery_low], LOW)
        s[level <= cfg.battery_critical] = CRITICAL
        s[(s == CRITICAL) & (level > cfg.battery_critical + h)] = LOW
        s[(s == LOW) & (level > cfg.battery_low + h)] = OK
        depth = np.clip((cfg.battery_low + h - level) / (cfg.battery_low + h), 0.0, 1.0)
        conf = np.select([s == CRITICAL, s == LOW], [np.maximum(0.9, depth), 0.3 + 0.6 * depth], 0.0)
        return conf, level


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["battery", *sys.argv[1:]]))
