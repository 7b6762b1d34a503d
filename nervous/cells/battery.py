"""Battery cell (region energy): hysteresis state machine OK -> LOW -> CRITICAL over lifeforce/battery.

Value: the level min(lifeforce, battery) in [0, 1]. Confidence: 0 in OK, rising from 0.3 to 0.9 as
the level falls through LOW, at least 0.9 in CRITICAL. A state is left only when the level climbs
``battery_hysteresis`` above the threshold that entered it, so the wave does not flicker.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from nervous.cells.base import Cell
from nervous.messages import Region
from world.tiles import P

OK, LOW, CRITICAL = 0, 1, 2


def transition(
    state: int, below_low: bool, below_critical: bool, above_critical: bool, above_low: bool
) -> int:
    """The next state from the four threshold tests of the level.

    The tests: level <= low, level <= critical, level > critical + hysteresis, level > low +
    hysteresis. Down immediately at a threshold, up only past threshold + hysteresis.
    """
    if below_low:
        state = max(state, LOW)
    if below_critical:
        state = CRITICAL
    if state == CRITICAL and above_critical:
        state = LOW
    if state == LOW and above_low:
        state = OK
    return state


#: uint8 [3, 16]: ``transition`` by state and by the four threshold tests as bits 0 to 3.
TRANSITIONS = np.array(
    [
        [transition(state, *(bool(tests >> bit & 1) for bit in range(4))) for tests in range(16)]
        for state in range(3)
    ],
    dtype=np.uint8,
)


@cache
def thresholds(low: float, critical: float, h: float, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The levels of the four tests, read-only: ([low, critical], [critical + h, low + h]).

    In the dtype that Python floats take against a level of dtype (float32 for float32 proprio), so
    that ``level <= down[0]`` rounds as ``level <= low`` does.
    """
    dtype = np.result_type(dtype, 0.0)
    down = np.array([low, critical], dtype=dtype)
    up = np.array([critical + h, low + h], dtype=dtype)
    down.flags.writeable = up.flags.writeable = False
    return down, up


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
        low, critical, h = cfg.battery_low, cfg.battery_critical, cfg.battery_hysteresis
        level = np.minimum(proprio[:, P.LIFEFORCE], proprio[:, P.BATTERY])
        down, up = thresholds(low, critical, h, level.dtype)
        tests = np.concatenate([level[:, None] <= down, level[:, None] > up], axis=1)
        self.state = s = TRANSITIONS[self.state, np.packbits(tests, axis=1, bitorder="little")[:, 0]]
        depth = np.minimum(np.maximum((low + h - level) / (low + h), 0.0), 1.0)
        conf = np.where(s == CRITICAL, np.maximum(0.9, depth), np.where(s == LOW, 0.3 + 0.6 * depth, 0.0))
        return conf, level


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["battery", *sys.argv[1:]]))
