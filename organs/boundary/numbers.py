"""The numbers message: an NPC's ``NpcNumbers`` as the JSON text a boundary model reads (and back).

This is the user turn of a boundary request and of a fine-tuning example: what the deterministic
encoder receives, written out with names and nothing interpreted::

    {"npc": 3, "tick": 120, "x": 4, "y": 5,
     "proprio": {"lifeforce": 0.8, "battery": 1.0, ..., "facing_w": 0.0},
     "seen": ["1111", "10b1", ...],
     "region": "math", "collapse_confidence": 0.9, "collapse_cells": ["vault", "key"],
     "confidence": {"body": 0.0, ...}, "value": {"body": 0.0, ...}, "opened": 0}

- ``proprio`` is the world's proprio vector by field name (``world.tiles.Proprio``, lower case);
- ``seen`` is the seen map, one string per row, one hexadecimal digit per cell: the tile code
  (``world.tiles.Tile``: 0 empty, 1 wall, ..., b unseen);
- ``confidence`` / ``value`` are the strongest wave per region (``nervous.messages.REGIONS``);
- ``opened`` counts the doors and locks the NPC opened this episode (a message without it reads as 0).

Floats are float32 values written in their shortest form, so ``decode_numbers(encode_numbers(n))``
gives back the same float32 arrays and the deterministic encoder the same situation.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np

from nervous.messages import REGIONS, Region
from organs.boundary.encoder import NpcNumbers
from organs.boundary.schema import MAX_MAP_SIDE
from world.tiles import NUM_CODES, Proprio

PROPRIO_FIELDS: tuple[str, ...] = tuple(member.name.lower() for member in Proprio)
_HEX = "0123456789abcdef"[:NUM_CODES]
_ROW = Annotated[str, msgspec.Meta(pattern=f"^[{_HEX}]{{1,{MAX_MAP_SIDE}}}$")]
_REGION_NAMES = tuple(region.value for region in REGIONS)
_CODE_OF_BYTE = np.zeros(256, dtype=np.uint8)
_CODE_OF_BYTE[np.frombuffer(_HEX.encode(), dtype=np.uint8)] = np.arange(NUM_CODES, dtype=np.uint8)


class NumbersMessage(msgspec.Struct, forbid_unknown_fields=True):
    """The wire form of ``NpcNumbers`` (see the module docstring)."""

    npc: Annotated[int, msgspec.Meta(ge=0, le=65535)]
    tick: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]
    x: Annotated[int, msgspec.Meta(ge=0, le=MAX_MAP_SIDE - 1)]
    y: Annotated[int, msgspec.Meta(ge=0, le=MAX_MAP_SIDE - 1)]
    proprio: dict[str, float]
    seen: Annotated[list[_ROW], msgspec.Meta(min_length=1, max_length=MAX_MAP_SIDE)]
    region: Region
    collapse_confidence: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    collapse_cells: Annotated[list[Annotated[str, msgspec.Meta(max_length=32)]], msgspec.Meta(max_length=16)]
    confidence: dict[str, float]
    value: dict[str, float]
    opened: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    """Doors and locks opened this episode (absent in messages written before situation version 2: 0)."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(NumbersMessage)


def _floats(values: np.ndarray) -> list[float]:
    """float32 values as the shortest decimals that read back as the same float32."""
    return [float(text) for text in np.asarray(values, dtype=np.float32).astype(str).tolist()]


def encode_numbers(numbers: NpcNumbers) -> str:
    """The numbers message of one NPC, as JSON text."""
    seen = np.asarray(numbers.seen)
    rows = ["".join(_HEX[code] for code in row) for row in seen.tolist()]
    return _encoder.encode(NumbersMessage(
        npc=int(numbers.npc), tick=int(numbers.tick), x=int(numbers.x), y=int(numbers.y),
        proprio=dict(zip(PROPRIO_FIELDS, _floats(numbers.proprio), strict=True)), seen=rows,
        region=Region(numbers.region),
        collapse_confidence=_floats(np.array([numbers.collapse_confidence]))[0],
        collapse_cells=list(numbers.collapse_cells),
        confidence=dict(zip(_REGION_NAMES, _floats(numbers.confidence), strict=True)),
        value=dict(zip(_REGION_NAMES, _floats(numbers.value), strict=True)),
        opened=int(numbers.opened),
    )).decode()  # fmt: skip


def _vector(message: dict[str, float], names: tuple[str, ...], field: str) -> np.ndarray:
    if set(message) != set(names):
        missing, extra = sorted(set(names) - set(message)), sorted(set(message) - set(names))
        raise ValueError(f"numbers.{field}: missing {missing}, unknown {extra}")
    return np.array([message[name] for name in names], dtype=np.float32)


def decode_numbers(text: str | bytes) -> NpcNumbers:
    """The ``NpcNumbers`` of a numbers message; ValueError naming the field when it is not one."""
    try:
        message = _decoder.decode(text)
    except msgspec.ValidationError as exc:
        reason, _, where = str(exc).partition(" - at `")
        raise ValueError(f"numbers.{where.rstrip('`').removeprefix('$.') or '<message>'}: {reason}") from None
    except msgspec.DecodeError as exc:
        raise ValueError(f"numbers: not JSON: {exc}") from None
    width = len(message.seen[0])
    for i, row in enumerate(message.seen):
        if len(row) != width:
            raise ValueError(f"numbers.seen[{i}]: {len(row)} cells, expected {width} like row 0")
    cells = np.frombuffer("".join(message.seen).encode(), dtype=np.uint8)  # rows already checked: hex digits
    seen = _CODE_OF_BYTE[cells].reshape(len(message.seen), width)
    return NpcNumbers(
        npc=message.npc, tick=message.tick, x=message.x, y=message.y,
        proprio=_vector(message.proprio, PROPRIO_FIELDS, "proprio"), seen=seen, region=message.region,
        # the float32 it was written from (the shortest decimal read as float64 may round differently:
        # 0.985 is 98 %, float32(0.985) is 99 %)
        collapse_confidence=float(np.float32(message.collapse_confidence)),
        collapse_cells=list(message.collapse_cells),
        confidence=_vector(message.confidence, _REGION_NAMES, "confidence"),
        value=_vector(message.value, _REGION_NAMES, "value"), opened=message.opened,
    )  # fmt: skip
