"""Frame drawing from arrays: an RGB image of one env (numpy), and whether a window can open here.

No pygame here: the `human` mode's window is the viewer's (`world.viewer_app`), imported only then.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from world.tiles import NUM_CODES, Tile

#: RGB per tile code (and per view-only code).
PALETTE = np.zeros((NUM_CODES, 3), dtype=np.uint8)
PALETTE[Tile.EMPTY] = (34, 60, 38)
PALETTE[Tile.WALL] = (90, 90, 96)
PALETTE[Tile.FOOD] = (120, 200, 70)
PALETTE[Tile.WATER] = (50, 110, 210)
PALETTE[Tile.FIRE] = (235, 90, 30)
PALETTE[Tile.CHARGER] = (240, 220, 60)
PALETTE[Tile.DOOR] = (150, 95, 45)
PALETTE[Tile.KEY] = (250, 250, 170)
PALETTE[Tile.LOCK] = (190, 80, 200)
PALETTE[Tile.NPC] = (0, 220, 230)
PALETTE[Tile.NPC_SIGNAL] = (255, 255, 255)
PALETTE[Tile.UNSEEN] = (0, 0, 0)


def npc_shade(lifeforce: np.ndarray | float) -> np.ndarray:
    """NPC body colour(s) as float RGB: cyan (nervous domain), dimmer as lifeforce falls."""
    level = 0.35 + 0.65 * np.clip(np.asarray(lifeforce, dtype=np.float32), 0, 1)
    return level[..., None] * PALETTE[Tile.NPC].astype(np.float32)


def npc_colour(lifeforce: np.ndarray, signalling: np.ndarray) -> np.ndarray:
    """NPC body colour: `npc_shade`, white while signalling."""
    return np.where(signalling[:, None], PALETTE[Tile.NPC_SIGNAL], npc_shade(lifeforce)).astype(np.uint8)


def frame_rgb(frame: dict[str, Any], cell: int = 8) -> np.ndarray:
    """Draw one env snapshot (`GridWorld.frame`) as an HWC uint8 image, `cell` pixels per grid cell."""
    tiles = frame["tiles"]
    image = PALETTE[tiles]
    if frame.get("night", False):
        image = (image * 0.55).astype(np.uint8)
    image = np.repeat(np.repeat(image, cell, axis=0), cell, axis=1)
    alive = np.asarray(frame["alive"], dtype=bool)
    colours = npc_colour(np.asarray(frame["lifeforce"])[alive], np.asarray(frame["signalling"])[alive])
    inset = max(cell // 6, 1)
    for y, x, colour in zip(np.asarray(frame["npc_y"])[alive], np.asarray(frame["npc_x"])[alive], colours,
                            strict=True):
        image[y * cell + inset:(y + 1) * cell - inset, x * cell + inset:(x + 1) * cell - inset] = colour
    return image


def no_display_reason() -> str:
    """Why no window can open here ('' when one can, or when SDL_VIDEODRIVER picks a driver)."""
    if os.environ.get("SDL_VIDEODRIVER") or sys.platform in ("darwin", "win32"):
        return ""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return ""
    return "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
