"""The vision network: a small fully convolutional CNN that names what is drawn in every cell of a window.

Input: a window of a rendered grid, uint8 pixels [B, side * CELL_PX, side * CELL_PX, 3]. Three strided
convolutions halve the resolution until one vector is left per cell (8 px -> 4 -> 2 -> 1), a 3x3
convolution lets each cell see its neighbours (a signal ring or a rain streak crosses cell borders),
and a 1x1 convolution gives the logits of ``NUM_CLASSES`` tile codes per cell: [B, classes, side, side].
About 60 k parameters; the weight file stores them as float16 (about 120 kB).

``save_weights`` / ``load_weights`` write and read ``{"format", "width", "state"}`` with ``torch.save``;
``load_weights`` raises ``WeightsError`` naming the file for a missing, corrupt or mismatched one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from organs.vision.frames import CELL_PX, NUM_CLASSES

#: Format tag of the weight file.
FORMAT = "nimmerverse-vision-1"


class WeightsError(RuntimeError):
    """A weight file that cannot be loaded; the message names the file."""


class VisionNet(nn.Module):
    """Per-cell tile classifier over rendered pixels."""

    def __init__(self, width: int = 64, classes: int = NUM_CLASSES) -> None:
        super().__init__()
        assert CELL_PX == 8, "three stride-2 stages map an 8 px cell to one vector"
        self.width = width
        self.features = nn.Sequential(
            nn.Conv2d(3, 24, 2, stride=2), nn.ReLU(),
            nn.Conv2d(24, 48, 2, stride=2), nn.ReLU(),
            nn.Conv2d(48, width, 2, stride=2), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, classes, 1),
        )  # fmt: skip

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits [B, classes, side, side] of uint8 pixels [B, side * 8, side * 8, 3]."""
        x = pixels.permute(0, 3, 1, 2).float().mul_(1 / 255.0).sub_(0.5)
        return self.features(x)


def save_weights(net: VisionNet, path: str | Path) -> Path:
    """Write the network's weights (float16) to path, atomically; the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).cpu() for k, v in net.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "width": net.width, "state": state}, tmp)
    tmp.replace(path)
    return path


def load_weights(path: str | Path) -> VisionNet:
    """A VisionNet with the weights of path (eval mode, float32); WeightsError naming the file if not."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"vision weights {path}: no such file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many unrelated types for a damaged file
        reason = type(exc).__name__
        raise WeightsError(f"vision weights {path}: not a readable weight file ({reason})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise WeightsError(f"vision weights {path}: format is not {FORMAT}")
    net = VisionNet(width=int(data.get("width", 64)))
    try:
        net.load_state_dict({k: v.float() for k, v in data["state"].items()})
    except (RuntimeError, KeyError, AttributeError) as exc:
        reason = str(exc).splitlines()[0][:200]
        raise WeightsError(f"vision weights {path}: do not fit the network: {reason}") from None
    return net.eval()
