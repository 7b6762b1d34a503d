"""Episode replays: one `.npz` file per episode, written by eval/record and played by the viewer.

Format (numpy `.npz`, uncompressed; T frames of one env, N NPC slots, H x W grid, R wave regions):

| key          | dtype   | shape      | meaning                                                    |
|--------------|---------|------------|------------------------------------------------------------|
| `meta`       | str     | ()         | JSON: {"format": "nimmerverse-replay", "version": 1,       |
|              |         |            |  "stage": int, "name": str, "regions": [str], "extra": {}} |
| `tiles`      | uint8   | (T, H, W)  | tile codes (`world.tiles.Tile`)                            |
| `npc_y`      | int16   | (T, N)     | NPC rows (unpadded)                                        |
| `npc_x`      | int16   | (T, N)     | NPC columns                                                |
| `alive`      | bool    | (T, N)     |                                                            |
| `lifeforce`  | float32 | (T, N)     | in [0, 1]                                                  |
| `battery`    | float32 | (T, N)     | in [0, 1]                                                  |
| `has_key`    | bool    | (T, N)     |                                                            |
| `signalling` | bool    | (T, N)     | signalled this tick                                        |
| `facing`     | int8    | (T, N)     | `Action.NORTH..WEST`                                       |
| `t`          | int32   | (T,)       | episode tick                                               |
| `night`      | bool    | (T,)       |                                                            |
| `weather`    | int8    | (T,)       | 0 clear, 1 fog, 2 rain                                     |
| `waves`      | float32 | (T, N, R)  | optional: wave confidence per region (0 where none)       |
| `overrides`  | bool    | (T, N)     | optional: a nerve overrode the brain's action this tick   |
| `actions`    | int8    | (T, N)     | optional: the action taken at this frame                   |

Frame i is the state after tick `t[i]`; frame 0 is the state right after reset.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "nimmerverse-replay"
VERSION = 1
_FRAME_KEYS = {"tiles": np.uint8, "npc_y": np.int16, "npc_x": np.int16, "alive": np.bool_,
               "lifeforce": np.float32, "battery": np.float32, "has_key": np.bool_,
               "signalling": np.bool_, "facing": np.int8, "t": np.int32, "night": np.bool_,
               "weather": np.int8}
_OPTIONAL = {"waves": np.float32, "overrides": np.bool_, "actions": np.int8}


class ReplayError(ValueError):
    """A replay file that cannot be read; the message names the file and the problem."""


@dataclass
class Replay:
    """A loaded replay: per-key stacked arrays plus metadata."""

    stage: int
    name: str
    arrays: dict[str, np.ndarray]
    regions: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.arrays["tiles"].shape[0])

    def frame(self, i: int) -> dict[str, Any]:
        """Frame i in the shape `GridWorld.frame` returns (plus optional waves/overrides/actions)."""
        return {key: value[i] for key, value in self.arrays.items()} | {"stage": self.stage}


class ReplayWriter:
    """Collects frames of one env and writes them atomically as a replay file."""

    def __init__(self, stage: int, name: str, regions: list[str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.stage, self.name = stage, name
        self.regions = list(regions or [])
        self.extra = dict(extra or {})
        self._frames: dict[str, list[np.ndarray]] = {key: [] for key in (*_FRAME_KEYS, *_OPTIONAL)}

    def __len__(self) -> int:
        return len(self._frames["tiles"])

    def add(self, frame: dict[str, Any], waves: np.ndarray | None = None, overrides: np.ndarray | None = None,
            actions: np.ndarray | None = None) -> None:
        """Append one frame (a `GridWorld.frame` dict) with optional per-NPC waves/overrides/actions."""
        for key in _FRAME_KEYS:
            self._frames[key].append(np.asarray(frame[key]))
        for key, value in (("waves", waves), ("overrides", overrides), ("actions", actions)):
            if value is not None:
                self._frames[key].append(np.asarray(value))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the replay to `path` (temp file + rename) and return the path."""
        path = Path(path)
        if not len(self):
            raise ReplayError(f"replay {path}: no frames to save")
        arrays = {key: np.stack(self._frames[key]).astype(dtype) for key, dtype in _FRAME_KEYS.items()}
        for key, dtype in _OPTIONAL.items():
            if self._frames[key]:
                if len(self._frames[key]) != len(self):
                    raise ReplayError(f"replay {path}: {key} given for {len(self._frames[key])} of "
                                      f"{len(self)} frames")
                arrays[key] = np.stack(self._frames[key]).astype(dtype)
        meta = {"format": FORMAT, "version": VERSION, "stage": self.stage, "name": self.name,
                "regions": self.regions, "extra": self.extra}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
        return path


def load_replay(path: str | os.PathLike) -> Replay:
    """Read and validate a replay file; raise ReplayError naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"replay {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ReplayError(f"replay {path}: not a readable .npz replay ({error})") from None
    if "meta" not in contents:
        raise ReplayError(f"replay {path}: missing 'meta'")
    try:
        meta = json.loads(str(contents.pop("meta")))
    except json.JSONDecodeError as error:
        raise ReplayError(f"replay {path}: 'meta' is not JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ReplayError(f"replay {path}: not a {FORMAT} file")
    if meta.get("version") != VERSION:
        raise ReplayError(f"replay {path}: version {meta.get('version')!r} is not {VERSION}")
    for key in _FRAME_KEYS:
        if key not in contents:
            raise ReplayError(f"replay {path}: missing array {key!r}")
    frames = len(contents["tiles"])
    if contents["tiles"].ndim != 3 or frames == 0:
        raise ReplayError(f"replay {path}: 'tiles' must be a non-empty (T, H, W) array")
    for key, value in contents.items():
        if len(value) != frames:
            raise ReplayError(f"replay {path}: {key!r} has {len(value)} frames, 'tiles' has {frames}")
    return Replay(stage=int(meta.get("stage", -1)), name=str(meta.get("name", "")), arrays=contents,
                  regions=list(meta.get("regions", [])), extra=dict(meta.get("extra", {})))
