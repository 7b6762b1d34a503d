"""Math cell (region math): reads the faced lock terminal's problem and solves the easy ones.

States per NPC: IDLE (not facing a lock, confidence 0), SOLVED (answer known, the display shows
something else: 0.6), READY (the display shows the answer: interact now, 0.95), UNSOLVED (a product
with a factor above ``math_max_factor``: a low-confidence 0.2 wave asking for help). Value: the
answer (``a op b``) when solved, else -1. The problem is read from proprio LOCK_A, LOCK_B (x10),
LOCK_OP (0 +, 0.5 -, 1 *) and LOCK_SHOWN (x100).
"""

from __future__ import annotations

import numpy as np

from nervous.cells.base import Cell
from nervous.messages import Region
from world.tiles import P

IDLE, SOLVED, READY, UNSOLVED = 0, 1, 2, 3
CONFIDENCE = np.array([0.0, 0.6, 0.95, 0.2], dtype=np.float32)

#: Proprio LOCK_A, LOCK_B, LOCK_OP and LOCK_SHOWN are adjacent: their scales and (LOCK_OP's) bounds.
_LOCK = slice(P.LOCK_A, P.LOCK_SHOWN + 1)
assert (P.LOCK_A, P.LOCK_B, P.LOCK_OP, P.LOCK_SHOWN) == tuple(range(_LOCK.start, _LOCK.stop))
_LOCK_SCALE = np.array([10, 10, 2, 100], dtype=np.float32)  # exact in float32: keeps proprio's dtype
_LOCK_LOW = np.array([-np.inf, -np.inf, 0, -np.inf], dtype=np.float32)
_LOCK_HIGH = np.array([np.inf, np.inf, 2, np.inf], dtype=np.float32)


def read_problem(proprio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """int64 arrays (a, b, op index 0/1/2, shown answer) decoded from proprio."""
    scaled = np.rint(proprio[:, _LOCK] * _LOCK_SCALE)
    problem = np.minimum(np.maximum(scaled, _LOCK_LOW), _LOCK_HIGH).astype(np.int64)
    return problem[:, 0], problem[:, 1], problem[:, 2], problem[:, 3]


class MathCell(Cell):
    """Arithmetic of lock terminals."""

    name = "math"
    region = Region.MATH
    value_scale = 1.0 / 100.0

    def reset(self, num_npcs: int) -> None:
        super().reset(num_npcs)
        self.state = np.zeros(num_npcs, dtype=np.uint8)

    def reset_npcs(self, mask: np.ndarray) -> None:
        self.state[mask] = IDLE

    def _step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        state = np.zeros(len(proprio), dtype=np.uint8)  # IDLE
        value = np.full(len(proprio), -1)
        facing = (proprio[:, P.FACING_LOCK] > 0.5).nonzero()[0]
        if len(facing):  # decode only the problems faced (none on most ticks)
            a, b, op, shown = read_problem(proprio[facing])
            answer = np.where(op == 0, a + b, np.where(op == 1, a - b, a * b))
            solvable = (op < 2) | (np.maximum(np.abs(a), np.abs(b)) <= self.config.math_max_factor)
            state[facing] = np.where(solvable, np.where(shown == answer, READY, SOLVED), UNSOLVED)
            value[facing] = np.where(solvable, answer, -1)
        self.state = state
        return CONFIDENCE[state], value


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["math", *sys.argv[1:]]))
