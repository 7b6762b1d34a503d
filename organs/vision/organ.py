"""The vision organ as the organ host runs it: ``load(weights, threads)`` and ``handle("detect", request)``.

The host validates a ``VisionRequest`` against the schema and ``check_request`` before it loads anything;
the loaded organ answers with a ``VisionReply`` (the host fills in the lifeforce ``cost``). torch is
imported by ``load`` only, so the host process itself never imports it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nervous.messages import VisionReply, VisionRequest, decode, encode
from organs.vision.frames import CELL_PX

VERBS = ("detect",)


def check_request(request: VisionRequest) -> None:
    """ValueError naming the field when the request is valid in form but not one this organ can read."""
    if request.cell_px != CELL_PX:
        raise ValueError(f"cell_px={request.cell_px}: the vision organ reads windows of {CELL_PX} px cells")


class VisionOrgan:
    """A loaded vision network behind the organ interface (bytes in, bytes out)."""

    verbs = VERBS

    def __init__(self, vision: Any) -> None:
        self.vision = vision

    def handle(self, verb: str, data: bytes) -> bytes:
        """The encoded VisionReply to one encoded VisionRequest."""
        if verb not in VERBS:
            raise ValueError(f"verb {verb!r}: the vision organ answers {', '.join(VERBS)}")
        req = decode(data, VisionRequest)
        check_request(req)
        size = req.side * req.cell_px
        codes, conf = self.vision.detect(np.frombuffer(req.pixels, dtype=np.uint8).reshape(size, size, 3))
        return encode(VisionReply(npc=req.npc, tick=req.tick, side=req.side, codes=codes.tobytes(),
                                  confidence=conf.astype("<f4").tobytes()))


def load(weights: str, threads: int = 1) -> VisionOrgan:
    """The vision organ with the weights of a file (``WeightsError`` naming the file if they fail)."""
    import torch

    from organs.vision.detect import Vision

    torch.set_num_threads(threads)
    return VisionOrgan(Vision.load(weights))
