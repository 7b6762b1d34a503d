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
from world.tiles import Proprio

IDLE, SOLVED, READY, UNSOLVED = 0, 1, 2, 3
CONFIDENCE = np.array([0.0, 0.6, 0.95, 0.2], dtype=np.float32)


def read_problem(proprio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """int64 arrays (a, b, op index 0/1/2, shown answer) decoded from proprio."""
    a = np.rint(proprio[:, Proprio.LOCK_A] * 10).astype(np.int64)
    b = np.rint(proprio[:, Proprio.LOCK_B] * 10).astype(np.int64)
    op = np.clip(np.rint(proprio[:, Proprio.LOCK_OP] * 2), 0, 2).astype(np.int64)
    shown = np.rint(proprio[:, Proprio.LOCK_SHOWN] * 100).astype(np.int64)
    return a, b, op, shown


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
        a, b, op, shown = read_problem(proprio)
        facing = proprio[:, Proprio.FACING_LOCK] > 0.5
        answer = np.choose(op, [a + b, a - b, a * b])
        small = np.maximum(np.abs(a), np.abs(b)) <= self.config.math_max_factor
        solvable = (op < 2) | small
        self.state = np.select([~facing, ~solvable, shown == answer], [IDLE, UNSOLVED, READY], SOLVED).astype(
            np.uint8
        )
        value = np.where(facing & solvable, answer, -1)
        return CONFIDENCE[self.state], value


if __name__ == "__main__":
    import sys

    from nervous.cells.service import main

    raise SystemExit(main(["math", *sys.argv[1:]]))
