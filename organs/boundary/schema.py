"""The situation schema, version 2: what the Function Gemma boundary hands the cortex.

A situation is one function call in FunctionGemma style, ``report_situation{...}``, whose typed
arguments describe one NPC at the moment its cells collapsed on a region: its body, the collapse, the
wave signal per region, the lock problem in reach, what it has seen (a map of one character per cell,
see ``MAP_LEGEND``) and the points of interest on that map. Every integer is bounded and every string's
length sits inside its pattern (vLLM's guided decoding needs both when a model writes situations);
coordinates are the NPC's map frame, ``(x, y)`` with x to the east and y to the south, the same frame
the cortex's tools answer in.

The msgspec structs below are the single source: ``situation_json_schema()`` exports the JSON Schema
(draft 2020-12) and ``decode_situation`` validates against the same bounds, raising ``SituationError``
naming the field.

Version history: 1 - first version. 2 - ``body.opened``: the doors and locks the NPC has opened this
episode (0-99), so a plan can tell an NPC that still has to open something from one that only has to live.

Compatibility: ``decode_call`` reads every version and returns the current one; an older call is migrated
(``MIGRATIONS``: version 1 -> 2 sets ``body.opened`` to 0, the planner's rules for 0 being those of
version 1, so an old situation gets the plan it got then). A version newer than this code is refused,
naming the field.
"""

from __future__ import annotations

import enum
import functools
import re
from typing import Annotated, Any, Literal

import msgspec

from nervous.messages import Region
from world.tiles import Tile

SITUATION_VERSION = 2
SITUATION_FUNCTION = "report_situation"
#: The largest map side a situation carries (stage 5 is 64x64).
MAX_MAP_SIDE = 128
#: At most this many points of each kind (nearest first).
MAX_POINTS = 32

#: One character per tile code on the situation's map.
MAP_LEGEND: dict[int, str] = {
    Tile.EMPTY: ".", Tile.WALL: "#", Tile.FOOD: "f", Tile.WATER: "~", Tile.FIRE: "^", Tile.CHARGER: "c",
    Tile.DOOR: "D", Tile.KEY: "k", Tile.LOCK: "L", Tile.NPC: "n", Tile.NPC_SIGNAL: "n", Tile.UNSEEN: "?",
}  # fmt: skip
#: The tile each map character stands for (an NPC's cell reads as empty ground).
MAP_TILES: dict[str, int] = {"n": int(Tile.EMPTY)} | {
    char: int(code) for code, char in MAP_LEGEND.items() if char != "n"
}
#: Lengths live inside the patterns, not in minLength/maxLength beside them: xgrammar (vLLM's guided
#: decoding) refuses a string schema that has both a pattern and length bounds.
_MAP_CHARS = "".join(sorted(set(MAP_LEGEND.values()))).replace("^", "\\^")
_ROW_PATTERN = f"^[{_MAP_CHARS}]{{1,{MAX_MAP_SIDE}}}$"

Coord = Annotated[int, msgspec.Meta(ge=0, le=MAX_MAP_SIDE - 1)]
Side = Annotated[int, msgspec.Meta(ge=1, le=MAX_MAP_SIDE)]
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]
Count = Annotated[int, msgspec.Meta(ge=0, le=99)]
Operand = Annotated[int, msgspec.Meta(ge=0, le=99)]
LockValue = Annotated[int, msgspec.Meta(ge=-99, le=9801)]
SignalValue = Annotated[int, msgspec.Meta(ge=-9999, le=9999)]
CellName = Annotated[str, msgspec.Meta(pattern="^[a-z_]{1,32}$")]
Row = Annotated[str, msgspec.Meta(pattern=_ROW_PATTERN)]


class Facing(enum.StrEnum):
    """The direction an NPC last tried to move."""

    NORTH = "north"
    SOUTH = "south"
    EAST = "east"
    WEST = "west"


class Body(msgspec.Struct, forbid_unknown_fields=True):
    """The NPC itself: where it stands, how it fares, what it carries."""

    x: Coord
    y: Coord
    lifeforce: Percent
    battery: Percent
    has_key: bool
    facing: Facing
    opened: Annotated[Count, msgspec.Meta(description="doors and locks opened this episode (99: 99 or more)")]


class Collapse(msgspec.Struct, forbid_unknown_fields=True):
    """The collapse that opened the gate: the region and the cells that agreed."""

    region: Region
    confidence: Percent
    cells: Annotated[list[CellName], msgspec.Meta(max_length=16)]


class RegionSignal(msgspec.Struct, forbid_unknown_fields=True):
    """The strongest wave of one region this tick: confidence in percent and its value."""

    region: Region
    confidence: Percent
    value: SignalValue


class LockProblem(msgspec.Struct, forbid_unknown_fields=True):
    """The lock terminal in reach: where it is, its problem ``a op b`` and what it displays now."""

    x: Coord
    y: Coord
    a: Operand
    b: Operand
    op: Literal["+", "-", "*"]
    shown: LockValue


class Point(msgspec.Struct, forbid_unknown_fields=True):
    """One cell of the map."""

    x: Coord
    y: Coord


class SeenMap(msgspec.Struct, forbid_unknown_fields=True):
    """What the NPC has seen: ``height`` rows of ``width`` characters (``MAP_LEGEND``; ``?`` unknown)."""

    width: Side
    height: Side
    rows: Annotated[list[Row], msgspec.Meta(min_length=1, max_length=MAX_MAP_SIDE)]

    def __post_init__(self) -> None:
        if len(self.rows) != self.height:
            raise ValueError(f"rows: {len(self.rows)} rows, expected height={self.height}")
        for i, row in enumerate(self.rows):
            if len(row) != self.width:
                raise ValueError(f"rows[{i}]: {len(row)} cells, expected width={self.width}")


Points = Annotated[list[Point], msgspec.Meta(max_length=MAX_POINTS)]


class Situation(msgspec.Struct, forbid_unknown_fields=True):
    """One NPC's situation when its gate let a collapse through to the cortex."""

    version: Literal[2]
    npc: Annotated[int, msgspec.Meta(ge=0, le=65535)]
    tick: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]
    body: Body
    collapse: Collapse
    signals: Annotated[list[RegionSignal], msgspec.Meta(max_length=len(Region))]
    lock: LockProblem | None
    map: SeenMap
    keys: Points
    doors: Points
    locks: Points
    food: Points

    def __post_init__(self) -> None:
        for name in ("body", "lock"):
            part = getattr(self, name)
            if part is not None and (part.x >= self.map.width or part.y >= self.map.height):
                raise ValueError(f"{name}: ({part.x}, {part.y}) lies outside the map")
        for name in ("keys", "doors", "locks", "food"):
            for i, p in enumerate(getattr(self, name)):
                if p.x >= self.map.width or p.y >= self.map.height:
                    raise ValueError(f"{name}[{i}]: ({p.x}, {p.y}) lies outside the map")


class SituationCall(msgspec.Struct, forbid_unknown_fields=True):
    """The situation as a FunctionGemma-style call: ``{"name": "report_situation", "arguments": {...}}``."""

    name: Literal["report_situation"]
    arguments: Situation


class SituationError(ValueError):
    """A payload that is not a valid situation; names the field."""

    def __init__(self, field: str, reason: str) -> None:
        self.field, self.reason = field, reason
        super().__init__(f"bad situation: field {field}: {reason}")


_encoder = msgspec.json.Encoder()
_call_decoder = msgspec.json.Decoder(SituationCall)
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")
_INNER_FIELD = re.compile(r"^([a-z_]+(?:\[\d+\])?): (.*)$")


def encode_call(situation: Situation) -> bytes:
    """The situation as the JSON bytes of its ``report_situation`` call."""
    return _encoder.encode(SituationCall(name=SITUATION_FUNCTION, arguments=situation))


def _migrate_1(arguments: dict[str, Any]) -> None:
    """Version 1 -> 2: an NPC not known to have opened anything (the version-1 planner's case)."""
    body = arguments.get("body")
    if isinstance(body, dict):
        body.setdefault("opened", 0)


#: ``MIGRATIONS[v]`` takes a situation's arguments (a JSON object, changed in place) from version v to v + 1.
MIGRATIONS = {1: _migrate_1}


def _migrated(data: bytes | str) -> bytes | None:
    """The call's JSON brought to SITUATION_VERSION when it is an older version's, else None."""
    try:
        call = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    arguments = call.get("arguments") if isinstance(call, dict) else None
    version = arguments.get("version") if isinstance(arguments, dict) else None
    if not isinstance(version, int) or isinstance(version, bool) or version not in MIGRATIONS:
        return None
    for step in range(version, SITUATION_VERSION):
        MIGRATIONS[step](arguments)
    arguments["version"] = SITUATION_VERSION
    return msgspec.json.encode(call)


def decode_call(data: bytes | str) -> Situation:
    """The situation inside a ``report_situation`` call's JSON (any version, migrated to the current one),
    validated; SituationError if invalid."""
    try:
        return _call_decoder.decode(data).arguments
    except msgspec.ValidationError as exc:
        migrated = _migrated(data)
        if migrated is not None:
            return decode_call(migrated)
        reason, _, where = str(exc).partition(" - at `")
        field = where.rstrip("`").removeprefix("$.arguments").removeprefix(".")
        inner = _INNER_FIELD.match(reason)  # a struct's own check names its field first
        if inner is not None:
            field, reason = ".".join(filter(None, (field, inner.group(1)))), inner.group(2)
        unknown = _UNKNOWN_FIELD.search(reason)
        if unknown is not None:
            field = ".".join(filter(None, (field, unknown.group(1))))
        raise SituationError(field or "<call>", reason) from None
    except msgspec.DecodeError as exc:
        raise SituationError("<json>", str(exc)) from None


def situation_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the ``report_situation`` arguments, with ``$defs`` inlined."""
    return msgspec.json.decode(_situation_json_schema())


@functools.cache
def _situation_json_schema() -> bytes:
    """Built once (msgspec's schema export takes milliseconds; decoding its JSON, tens of microseconds)."""
    schema = msgspec.json.schema(Situation)
    defs = schema.pop("$defs", {})
    root = defs.pop(schema.pop("$ref").rsplit("/", 1)[-1])
    return msgspec.json.encode({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **root,
        "$defs": defs,
        "title": SITUATION_FUNCTION,
        "x-version": SITUATION_VERSION,
    })


def fit_to_map(schema: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    """The situation schema narrowed to one map of width x height: its sides fixed, its rows exactly
    ``height`` strings of ``width`` characters, every coordinate inside it. A guided decoder held to it
    can only write calls that also pass ``decode_call``'s cross-field checks (rows fit, points inside)."""
    if not (1 <= width <= MAX_MAP_SIDE and 1 <= height <= MAX_MAP_SIDE):
        raise ValueError(f"map {width}x{height}: each side must be in 1..{MAX_MAP_SIDE}")
    defs = schema["$defs"]
    for name in ("Body", "LockProblem", "Point"):
        defs[name]["properties"]["x"]["maximum"] = width - 1
        defs[name]["properties"]["y"]["maximum"] = height - 1
    seen = defs["SeenMap"]["properties"]
    seen["width"].update(minimum=width, maximum=width)
    seen["height"].update(minimum=height, maximum=height)
    seen["rows"].update(minItems=height, maxItems=height)
    seen["rows"]["items"]["pattern"] = f"^[{_MAP_CHARS}]{{{width}}}$"
    return schema


def report_situation_declaration(width: int | None = None, height: int | None = None) -> dict[str, Any]:
    """``report_situation`` as an OpenAI tool declaration (for a model backend writing situations); with
    width and height, its parameters fitted to that map (``fit_to_map``)."""
    return msgspec.json.decode(report_situation_declaration_json(width, height))


@functools.lru_cache(maxsize=256)
def report_situation_declaration_json(width: int | None = None, height: int | None = None) -> bytes:
    """``report_situation_declaration`` as JSON bytes, made once per map size (to embed with msgspec.Raw)."""
    schema = situation_json_schema()
    schema.pop("$schema")
    if width is not None or height is not None:
        if width is None or height is None:
            raise ValueError("report_situation_declaration: give both width and height, or neither")
        schema = fit_to_map(schema, width, height)
    return msgspec.json.encode({
        "type": "function",
        "function": {
            "name": SITUATION_FUNCTION,
            "description": "Report one NPC's situation when its cells collapse on a region.",
            "parameters": schema,
        },
    })
