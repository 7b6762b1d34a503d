"""Hand-made senses for cell and nerve tests."""

import numpy as np

from world.tiles import PROPRIO_SIZE, Proprio


def senses(m: int, side: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Empty views uint8[m, side, side] and proprio float32[m, P] with full lifeforce and battery."""
    views = np.zeros((m, side, side), dtype=np.uint8)
    proprio = np.zeros((m, PROPRIO_SIZE), dtype=np.float32)
    proprio[:, Proprio.LIFEFORCE] = 1.0
    proprio[:, Proprio.BATTERY] = 1.0
    proprio[:, Proprio.DAY_COS] = 1.0
    return views, proprio


def at(side: int, dy: int, dx: int) -> tuple[int, int]:
    """View index of the cell dy rows and dx columns from the centre."""
    return side // 2 + dy, side // 2 + dx
