"""The cortex's tools: what an answer may ask an NPC to do, declared for the model and validated on return.

Each tool is a msgspec struct of bounded arguments; ``TOOL_DECLARATIONS`` are their OpenAI function
declarations (JSON Schema from the same structs) and ``parse_answer`` turns a model's answer into
exactly one typed call or raises ``InvalidAnswer`` with its class (``INVALID_KINDS``):

- ``answer_lock(x, y, value)``: walk next to the lock, wait until it shows value, interact;
- ``go_to(x, y, purpose)``: walk there (next to water or a lock), interact when the purpose pays;
- ``fetch_key_then_open(key_x, key_y, door_x, door_y)``: pick the key up, walk to the door, open it;
- ``open_door(door_x, door_y)``: with a key in hand, walk to the door and open it;
- ``wait(ticks)``: stay put for a few ticks.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

import msgspec

from organs.boundary.schema import Coord, LockValue


class Purpose(enum.StrEnum):
    """Why an NPC goes somewhere: decides whether it stands on or next to the cell, and interacts."""

    FOOD = "food"
    KEY = "key"
    CHARGER = "charger"
    WATER = "water"
    LOCK = "lock"
    EXPLORE = "explore"


class AnswerLock(msgspec.Struct, forbid_unknown_fields=True):
    """Walk next to the lock at (x, y), wait until its display shows value, then interact."""

    x: Coord
    y: Coord
    value: LockValue


class GoTo(msgspec.Struct, forbid_unknown_fields=True):
    """Walk to (x, y) (next to it when it blocks); interact for food, a key, a charger or water."""

    x: Coord
    y: Coord
    purpose: Purpose


class FetchKeyThenOpen(msgspec.Struct, forbid_unknown_fields=True):
    """Pick up the key at (key_x, key_y), then open the door at (door_x, door_y) with it."""

    key_x: Coord
    key_y: Coord
    door_x: Coord
    door_y: Coord


class OpenDoor(msgspec.Struct, forbid_unknown_fields=True):
    """With a key already in hand: walk next to the door at (door_x, door_y) and open it."""

    door_x: Coord
    door_y: Coord


class Wait(msgspec.Struct, forbid_unknown_fields=True):
    """Stay put for a few ticks (nothing worth doing is known)."""

    ticks: Annotated[int, msgspec.Meta(ge=1, le=20)]


PlanCall = AnswerLock | GoTo | FetchKeyThenOpen | OpenDoor | Wait

TOOLS: dict[str, type[PlanCall]] = {
    "answer_lock": AnswerLock,
    "go_to": GoTo,
    "fetch_key_then_open": FetchKeyThenOpen,
    "open_door": OpenDoor,
    "wait": Wait,
}
TOOL_NAMES: dict[type, str] = {kind: name for name, kind in TOOLS.items()}
_DECODERS = {name: msgspec.json.Decoder(kind) for name, kind in TOOLS.items()}
_encoder = msgspec.json.Encoder()


def _parameters(kind: type) -> dict[str, Any]:
    schema = msgspec.json.schema(kind)
    defs = schema.pop("$defs")
    params = defs.pop(schema["$ref"].rsplit("/", 1)[-1])
    params.pop("title", None)
    description = params.pop("description", "")
    for name, prop in params["properties"].items():  # inline the enum of go_to's purpose
        ref = prop.pop("$ref", None)
        if ref is not None:
            prop.update({k: v for k, v in defs[ref.rsplit("/", 1)[-1]].items() if k != "title"})
        params["properties"][name] = prop
    return {"description": description, "parameters": params}


def _declaration(name: str, kind: type) -> dict[str, Any]:
    spec = _parameters(kind)
    return {
        "type": "function",
        "function": {"name": name, "description": spec["description"], "parameters": spec["parameters"]},
    }


TOOL_DECLARATIONS: list[dict[str, Any]] = [_declaration(name, kind) for name, kind in TOOLS.items()]
"""The OpenAI ``tools`` list for every tool above."""

#: The classes of answers that are not exactly one valid tool call.
INVALID_KINDS = ("no_call", "several_calls", "unknown_function", "bad_json", "bad_arguments")


class InvalidAnswer(ValueError):
    """An answer that is not exactly one valid tool call; ``kind`` is one of ``INVALID_KINDS``."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind, self.detail = kind, detail
        super().__init__(f"invalid cortex answer ({kind}): {detail}")


def tool_name(call: PlanCall) -> str:
    """The tool name of a typed call."""
    return TOOL_NAMES[type(call)]


def encode_arguments(call: PlanCall) -> str:
    """The JSON arguments string of a typed call, as a tool call carries them."""
    return _encoder.encode(call).decode()


def parse_call(name: str, arguments: str | bytes) -> PlanCall:
    """One tool call (name and JSON arguments) as a typed call; InvalidAnswer naming what was wrong."""
    decoder = _DECODERS.get(name)
    if decoder is None:
        raise InvalidAnswer("unknown_function", f"function {name!r} is not one of {sorted(TOOLS)}")
    try:
        return decoder.decode(arguments)
    except msgspec.ValidationError as exc:
        raise InvalidAnswer("bad_arguments", f"{name}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidAnswer("bad_json", f"{name}: arguments are not JSON: {exc}") from None


def parse_answer(tool_calls: list[tuple[str, str]] | None, allowed: set[str] | None = None) -> PlanCall:
    """Exactly one valid call from an answer's (name, arguments) tool calls; InvalidAnswer otherwise."""
    if not tool_calls:
        raise InvalidAnswer("no_call", "the answer holds no tool call")
    if len(tool_calls) > 1:
        raise InvalidAnswer("several_calls", f"the answer holds {len(tool_calls)} tool calls, expected 1")
    name, arguments = tool_calls[0]
    if allowed is not None and name not in allowed and name in TOOLS:
        raise InvalidAnswer("unknown_function", f"function {name!r} was not offered in this request")
    return parse_call(name, arguments)
