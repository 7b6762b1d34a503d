"""Detection with a loaded vision network, and merging what it saw into an NPC's seen map.

``Vision(net).detect(pixels)`` names every cell of one window (tile codes and the network's
confidence); ``detect_window(image, x, y)`` crops the window around cell (x, y) of a rendered grid
(``organs.vision.frames.render``) first. ``merge_detections`` writes confident detections into a seen
map (``organs.boundary`` uses uint8 tile codes, ``Tile.UNSEEN`` where nothing is known): this is how
the cortex planner can see beyond an NPC's view - a key behind it, a door around the corner.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch

from organs.vision import SHIPPED_WEIGHTS
from organs.vision.frames import CELL_PX, WINDOW, window_pixels
from organs.vision.model import VisionNet, load_weights
from world.tiles import Tile


class Vision:
    """A loaded vision network ready to detect."""

    def __init__(self, net: VisionNet) -> None:
        self.net = net.eval()

    @classmethod
    def load(cls, path: str | Path = SHIPPED_WEIGHTS) -> Vision:
        """Vision with the weights of path; ``WeightsError`` naming the file when they cannot be loaded."""
        return cls(load_weights(path))

    def detect(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tile codes (uint8) and confidences (float32) per cell of one window [side*8, side*8, 3] or many."""
        one = pixels.ndim == 3
        batch = pixels[None] if one else pixels
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.shape[1] % CELL_PX or batch.shape[2] % CELL_PX:
            raise ValueError(f"pixels of shape {pixels.shape}: need [side*{CELL_PX}, side*{CELL_PX}, 3]")
        batch = np.ascontiguousarray(batch, dtype=np.uint8)
        if not batch.flags.writeable:  # torch wants to own writable memory (bytes from the bus are not)
            batch = batch.copy()
        with torch.inference_mode():
            probs = self.net(torch.from_numpy(batch)).softmax(1)
            conf, codes = probs.max(1)
        codes_np, conf_np = codes.numpy().astype(np.uint8), conf.numpy().astype(np.float32)
        return (codes_np[0], conf_np[0]) if one else (codes_np, conf_np)


@cache
def shipped_vision() -> Vision:
    """The shipped network, loaded once per process."""
    return Vision.load(SHIPPED_WEIGHTS)


def detect_window(image: np.ndarray, x: int, y: int, side: int = WINDOW,
                  vision: Vision | None = None) -> np.ndarray:
    """Tile codes uint8 [side, side] of the window of a rendered grid centred on cell (x, y)."""
    codes, _ = (vision or shipped_vision()).detect(window_pixels(image, x, y, side))
    return codes


def merge_detections(seen: np.ndarray, codes: np.ndarray, x: int, y: int,
                     confidence: np.ndarray | None = None, min_confidence: float = 0.9) -> np.ndarray:
    """A copy of a seen map (uint8 [H, W]) with the window's detections, centred on (x, y), written in.

    Only cells the map does not know yet (``Tile.UNSEEN``) take a detection: what the NPC saw itself
    stays. A detected NPC says nothing about the ground under it and is skipped, as are cells beyond
    the map and detections below ``min_confidence``.
    """
    side = codes.shape[0]
    if codes.ndim != 2 or codes.shape[1] != side or side % 2 == 0:
        raise ValueError(f"codes of shape {codes.shape}: need an odd square window")
    if confidence is not None and confidence.shape != codes.shape:
        raise ValueError(f"confidence of shape {confidence.shape}: need {codes.shape} like codes")
    out = seen.copy()
    h, w = seen.shape
    half = side // 2
    y0, y1, x0, x1 = max(0, y - half), min(h, y + half + 1), max(0, x - half), min(w, x + half + 1)
    if y0 >= y1 or x0 >= x1:
        return out
    window = codes[y0 - (y - half):y1 - (y - half), x0 - (x - half):x1 - (x - half)]
    take = (out[y0:y1, x0:x1] == Tile.UNSEEN) & (window < Tile.NPC)
    if confidence is not None:
        sure = confidence[y0 - (y - half):y1 - (y - half), x0 - (x - half):x1 - (x - half)]
        take &= sure >= min_confidence
    np.copyto(out[y0:y1, x0:x1], window, where=take)
    return out
