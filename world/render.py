"""Frame drawing from arrays: an RGB image of one env (numpy), and a pygame window for `human` mode.

pygame is imported lazily, only when a window is opened.
"""

from __future__ import annotations

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


class Window:
    """A pygame window that shows RGB frames (for `render_mode="human"`)."""

    def __init__(self, title: str = "nimmerverse", fps: int = 20) -> None:
        import pygame  # lazy: only human rendering needs a display

        self._pygame = pygame
        pygame.init()
        pygame.display.set_caption(title)
        self._screen = None
        self._clock = pygame.time.Clock()
        self.fps = fps

    def show(self, image: np.ndarray) -> None:
        """Blit an HWC uint8 image, pump events, and keep the frame rate."""
        pygame = self._pygame
        h, w = image.shape[:2]
        if self._screen is None or self._screen.get_size() != (w, h):
            self._screen = pygame.display.set_mode((w, h))
        pygame.surfarray.blit_array(self._screen, image.swapaxes(0, 1))
        pygame.event.pump()
        pygame.display.flip()
        self._clock.tick(self.fps)

    def close(self) -> None:
        """Close the window."""
        self._pygame.display.quit()
