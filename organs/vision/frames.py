"""Rendered frames and their labels: what the vision organ reads, and what it should say about it.

The organ reads the grid as the viewer draws it (``world.draw.Drawer.grid_image``) at ``CELL_PX``
pixels per cell: tiles with their shapes, the night palette, the fog veil and the rain streaks, NPC
triangles and their signal rings. The nervous system's overlays (wave ripples, nerve-override notches)
are left out: the organ looks at the world, not at the viewer's diagnostics.

A window is ``side x side`` cells centred on one cell (an NPC's): its pixels are black beyond the grid,
and its labels read WALL there, as ``world.tiles`` reads cells outside the grid. A label is the tile
code of what is drawn in the cell: the tile, or ``Tile.NPC`` where a live NPC stands (signalling or
not), so the classes are the codes ``0 .. Tile.NPC``.

``CONDITIONS`` names the skies the renderer draws: day or night, each clear, in fog or in rain.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from world.core import GridWorld
from world.stages import stage_config
from world.tiles import NUM_ACTIONS, Tile

#: Pixels per grid cell of the frames the organ reads.
CELL_PX = 8
#: Default window side, in cells (wider than any NPC's view: 9 at most).
WINDOW = 15
#: Classes are the tile codes EMPTY .. NPC.
NUM_CLASSES = int(Tile.NPC) + 1
#: Sky of each named condition: (night, weather), weather 0 clear, 1 fog, 2 rain (``GridWorld.weather``).
CONDITIONS: dict[str, tuple[bool, int]] = {
    "clear": (False, 0), "fog": (False, 1), "rain": (False, 2),
    "night": (True, 0), "night_fog": (True, 1), "night_rain": (True, 2),
}  # fmt: skip

_drawer: Any = None


def _grid_drawer() -> Any:
    """One Drawer for this process (pygame is imported on first use only)."""
    global _drawer
    if _drawer is None:
        from world.draw import Drawer, ViewState

        _drawer = Drawer(), ViewState()
        _drawer[1].layers.update(waves=False, overrides=False)
    return _drawer


def render(frame: dict[str, Any], condition: str | None = None) -> np.ndarray:
    """The grid of a ``GridWorld.frame`` as the organ sees it (HWC uint8); condition overrides its sky."""
    if condition is not None:
        if condition not in CONDITIONS:
            raise ValueError(f"condition={condition!r}: choose one of {', '.join(CONDITIONS)}")
        night, weather = CONDITIONS[condition]
        frame = frame | {"night": np.bool_(night), "weather": np.int64(weather)}
    drawer, state = _grid_drawer()
    return drawer.grid_image(frame, CELL_PX, state)


def label_grid(frame: dict[str, Any]) -> np.ndarray:
    """The label of every grid cell (uint8 [H, W]): its tile code, or NPC under a live NPC."""
    labels = np.array(frame["tiles"], dtype=np.uint8)
    labels[labels == Tile.NPC_SIGNAL] = Tile.NPC
    alive = np.asarray(frame["alive"], dtype=bool)
    labels[np.asarray(frame["npc_y"])[alive], np.asarray(frame["npc_x"])[alive]] = Tile.NPC
    return labels


def window_pixels(image: np.ndarray, x: int, y: int, side: int = WINDOW) -> np.ndarray:
    """The ``side x side`` cell window of a rendered grid centred on cell (x, y): black beyond the grid."""
    if side < 1 or side % 2 == 0:
        raise ValueError(f"side={side!r}: must be an odd number of cells")
    h, w = image.shape[0] // CELL_PX, image.shape[1] // CELL_PX
    return _crop(image, x, y, side, CELL_PX, h, w, 0)


def window_labels(labels: np.ndarray, x: int, y: int, side: int = WINDOW) -> np.ndarray:
    """The ``side x side`` window of a label grid centred on (x, y): WALL beyond the grid."""
    if side < 1 or side % 2 == 0:
        raise ValueError(f"side={side!r}: must be an odd number of cells")
    return _crop(labels, x, y, side, 1, labels.shape[0], labels.shape[1], int(Tile.WALL))


def _crop(array: np.ndarray, x: int, y: int, side: int, scale: int, h: int, w: int, fill: int) -> np.ndarray:
    half = side // 2
    out = np.full((side * scale, side * scale, *array.shape[2:]), fill, dtype=array.dtype)
    y0, y1, x0, x1 = max(0, y - half), min(h, y + half + 1), max(0, x - half), min(w, x + half + 1)
    if y0 < y1 and x0 < x1:
        oy, ox = (y0 - (y - half)) * scale, (x0 - (x - half)) * scale
        out[oy:oy + (y1 - y0) * scale, ox:ox + (x1 - x0) * scale] = array[y0 * scale:y1 * scale,
                                                                          x0 * scale:x1 * scale]
    return out


@dataclass
class WindowSet:
    """Labelled windows: pixels uint8 [n, S, S, 3], labels uint8 [n, side, side], condition index [n]."""

    pixels: np.ndarray
    labels: np.ndarray
    condition: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def of(self, condition: str) -> WindowSet:
        """Only the windows drawn under one named condition."""
        keep = self.condition == list(CONDITIONS).index(condition)
        return WindowSet(self.pixels[keep], self.labels[keep], self.condition[keep])


def _frames(stage: int, seed: int, frames: int, steps_between: int) -> Iterator[dict[str, Any]]:
    """Frames of one world driven by random actions, ``steps_between`` ticks apart."""
    world = GridWorld(stage_config(stage), num_envs=1, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(frames):
        for _ in range(steps_between):
            world.step(rng.integers(0, NUM_ACTIONS, (1, world.num_npcs)))
        yield world.frame(0)


def make_windows(
    seeds: range | list[int],
    stages: tuple[int, ...] = (0, 1, 2, 3, 4, 5),
    conditions: tuple[str, ...] = tuple(CONDITIONS),
    frames_per_world: int = 4,
    windows_per_frame: int = 6,
    side: int = WINDOW,
    steps_between: int = 7,
) -> WindowSet:
    """Labelled windows from worlds of the given seeds (stage by seed), drawn in every condition.

    Each frame gets random NPC shades, facings and signals (the renderer draws any), then is drawn
    once per condition; windows are centred on live NPCs (as the organ is asked) or on random cells.
    """
    pixels, labels, conds = [], [], []
    for seed in seeds:
        rng = np.random.default_rng(10_000 + seed)
        stage = stages[seed % len(stages)]
        for frame in _frames(stage, seed, frames_per_world, steps_between):
            n = len(frame["alive"])
            frame = frame | {
                "lifeforce": rng.uniform(0.0, 1.0, n).astype(np.float32),
                "facing": rng.integers(1, 5, n),
                "signalling": rng.random(n) < 0.15,
            }
            grid = label_grid(frame)
            h, w = grid.shape
            alive = np.flatnonzero(frame["alive"])
            centres = []
            for k in range(windows_per_frame):
                if k % 2 == 0 and len(alive):
                    i = int(rng.choice(alive))
                    centres.append((int(frame["npc_x"][i]), int(frame["npc_y"][i])))
                else:
                    centres.append((int(rng.integers(0, w)), int(rng.integers(0, h))))
            for c, name in enumerate(CONDITIONS):
                if name not in conditions:
                    continue
                image = render(frame, name)
                for x, y in centres:
                    pixels.append(window_pixels(image, x, y, side))
                    labels.append(window_labels(grid, x, y, side))
                    conds.append(c)
    return WindowSet(np.stack(pixels), np.stack(labels), np.asarray(conds, dtype=np.int8))
