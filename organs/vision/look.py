"""One NPC's look through the vision organ in-process: its window as a request, the reply merged.

``window_request`` cuts the ``WINDOW x WINDOW``-cell window around an NPC out of its env's rendered grid
(``organs.vision.frames.render``: what the viewer draws, night, fog and rain included) into a
``VisionRequest``, the message ``{env}.organs.vision.detect`` takes; ``merge_reply`` writes the organ's
confident detections into the NPC's seen map where it knows nothing yet, and says how many cells it
learnt. Between the two, the caller asks the organ (``organs.host.inproc.InProcessHost`` in-process,
the bus service live), which is what the lifeforce is charged for.
"""

from __future__ import annotations

import numpy as np

from nervous.messages import VisionReply, VisionRequest
from organs.vision.detect import merge_detections
from organs.vision.frames import WINDOW, window_pixels
from world.tiles import Tile


def window_request(image: np.ndarray, npc: int, x: int, y: int, tick: int = 0,
                   deadline_s: float = 10.0) -> VisionRequest:
    """The request for the window of a rendered grid centred on cell (x, y), asked by NPC npc."""
    return VisionRequest(npc=npc, tick=tick, deadline_s=deadline_s, side=WINDOW,
                         pixels=window_pixels(image, x, y, WINDOW).tobytes())


def merge_reply(seen: np.ndarray, reply: VisionReply, x: int, y: int, min_confidence: float = 0.9) -> int:
    """Write a reply's detections centred on (x, y) into a seen map (uint8 [H, W]) in place; cells learnt."""
    side = reply.side
    codes = np.frombuffer(reply.codes, dtype=np.uint8).reshape(side, side)
    confidence = np.frombuffer(reply.confidence, dtype="<f4").reshape(side, side)
    unknown = int((seen == Tile.UNSEEN).sum())
    seen[...] = merge_detections(seen, codes, x, y, confidence, min_confidence)
    return unknown - int((seen == Tile.UNSEEN).sum())
