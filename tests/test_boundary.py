"""The Function Gemma boundary: schema round trip, JSON Schema validity, bounds, field-naming errors."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from nervous.messages import REGIONS, Region
from organs.boundary import (
    DeterministicEncoder,
    NpcNumbers,
    SituationEncoder,
    SituationError,
    decode_call,
    encode_call,
    situation_json_schema,
)
from organs.boundary.numbers import decode_numbers, encode_numbers
from organs.boundary.schema import SITUATION_VERSION, report_situation_declaration
from organs.boundary.world_numbers import SeenMaps, npc_numbers
from organs.cortex.planner import Planner
from organs.cortex.tools import TOOL_DECLARATIONS
from tests.cortex_fixtures import parse_map, proprio, situation_on
from world.tiles import Tile

ROWS = ["#########", "#@..k..?#", "#.^~c...#", "####D#L##", "#..fff..#"]


def test_round_trip_is_exact_and_matches_the_json_schema() -> None:
    situation = situation_on(ROWS, facing=2, lock=(7, 8, 2, 58))
    data = encode_call(situation)
    assert decode_call(data) == situation
    call = json.loads(data)
    assert call["name"] == "report_situation"
    jsonschema.Draft202012Validator.check_schema(situation_json_schema())
    jsonschema.validate(call["arguments"], situation_json_schema())


def test_encoder_reads_the_numbers() -> None:
    seen, (x, y) = parse_map(["#####", "#.@L#", "#k.D#", "#####"])
    confidence = np.zeros(len(REGIONS), np.float32)
    value = np.zeros(len(REGIONS), np.float32)
    confidence[REGIONS.index(Region.MATH)], value[REGIONS.index(Region.MATH)] = 0.2, -1
    numbers = NpcNumbers(
        npc=3,
        tick=11,
        x=x,
        y=y,
        proprio=proprio(lifeforce=0.456, facing=2, lock=(7, 8, 2, 60)),
        seen=seen,
        region=Region.MATH,
        collapse_confidence=0.7,
        collapse_cells=["math"],
        confidence=confidence,
        value=value,
    )
    encoder: SituationEncoder = DeterministicEncoder()
    s = encoder.encode(numbers)
    assert (s.npc, s.tick, s.body.x, s.body.y, s.body.lifeforce, s.body.facing) == (3, 11, 2, 1, 46, "east")
    assert (s.lock.x, s.lock.y, s.lock.a, s.lock.b, s.lock.op, s.lock.shown) == (3, 1, 7, 8, "*", 60)
    assert [(p.x, p.y) for p in s.keys] == [(1, 2)] and [(p.x, p.y) for p in s.doors] == [(3, 2)]
    assert [(sig.region, sig.confidence, sig.value) for sig in s.signals] == [("math", 20, -1)]
    assert s.map.rows == ["#####", "#..L#", "#k.D#", "#####"]


def test_schemas_suit_guided_decoding() -> None:
    """Every integer bounded, no string with a pattern beside length bounds (xgrammar refuses those)."""

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "integer":
                assert "minimum" in node and "maximum" in node, node
            if node.get("type") == "string" and "pattern" in node:
                assert not {"minLength", "maxLength"} & set(node), node
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(situation_json_schema())
    walk(TOOL_DECLARATIONS)
    assert report_situation_declaration()["function"]["name"] == "report_situation"


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("body", "lifeforce"), 101, "body.lifeforce"),
        (("body", "x"), 500, "body.x"),
        (("lock",), {"x": 1, "y": 1, "a": 1, "b": 2, "op": "/", "shown": 3}, "lock.op"),
        (("map", "rows"), ["#####", "#..!#", "#####", "#####"], "map.rows[1]"),
        (("map", "rows"), ["#####", "#" * 129, "#####", "#####"], "map.rows[1]"),
        (("map", "rows"), ["#####", "", "#####", "#####"], "map.rows[1]"),
        (("collapse", "cells"), ["m" * 33], "collapse.cells[0]"),
        (("collapse", "cells"), [""], "collapse.cells[0]"),
        (("map", "height"), 9, "map"),
        (("keys",), [{"x": 40, "y": 1}], "keys[0]"),
        (("version",), 3, "version"),
        (("body", "opened"), 100, "body.opened"),
        (("surprise",), 1, "surprise"),
    ],
)
def test_bad_situations_name_the_field(path: tuple[str, ...], value: object, field: str) -> None:
    call = json.loads(encode_call(situation_on(["#####", "#.@.#", "#...#", "#####"])))
    node = call["arguments"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(SituationError) as info:
        decode_call(json.dumps(call))
    assert info.value.field.startswith(field), info.value


def test_bad_numbers_are_refused_naming_the_field() -> None:
    seen, _ = parse_map(["###", "#@#", "###"])
    numbers = NpcNumbers(
        npc=0, tick=0, x=5, y=1, proprio=proprio(), seen=seen, region=Region.FOOD, collapse_confidence=0.5
    )
    with pytest.raises(ValueError, match="numbers.x"):
        DeterministicEncoder().encode(numbers)
    numbers.x, numbers.proprio = 1, np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="numbers.proprio"):
        DeterministicEncoder().encode(numbers)
    numbers.proprio, numbers.seen = proprio(), np.full((200, 3), Tile.EMPTY, np.uint8)
    with pytest.raises(ValueError, match="numbers.seen"):
        DeterministicEncoder().encode(numbers)


def test_what_the_npc_opened_goes_from_the_world_through_numbers_into_the_situation_and_back() -> None:
    from nervous.messages import CollapseEvent
    from world.core import GridWorld
    from world.stages import stage_config

    world = GridWorld(stage_config(4), num_envs=2, seed=0)
    world.ep_opened[1, 3] = 2  # NPC 3 of env 1 opened a door and a lock this episode
    event = CollapseEvent(npc=3, region=Region.MATH, confidence=0.8, cells=["math"], tick=0)
    numbers = npc_numbers(world, 1, SeenMaps(world), event)
    assert numbers.opened == 2 and npc_numbers(world, 0, SeenMaps(world), event).opened == 0
    text = encode_numbers(numbers)
    assert json.loads(text)["opened"] == 2 and decode_numbers(text).opened == 2
    situation = DeterministicEncoder().encode(decode_numbers(text))
    assert situation.version == SITUATION_VERSION == 2 and situation.body.opened == 2
    assert decode_call(encode_call(situation)) == situation
    numbers.opened = 250  # more than the schema says: capped, still valid
    assert DeterministicEncoder().encode(numbers).body.opened == 99
    old = json.loads(text)
    del old["opened"]  # a numbers message written before version 2 (decision trails)
    assert decode_numbers(json.dumps(old)).opened == 0


def test_a_version_1_situation_is_migrated_and_planned_as_version_1_planned_it() -> None:
    rows = ["#######", "#@.k..#", "#.....#", "###D###", "#.fff.#"]
    current = situation_on(rows, lifeforce=0.9)
    call = json.loads(encode_call(current))
    call["arguments"]["version"] = 1
    del call["arguments"]["body"]["opened"]  # version 1 had no such field
    migrated = decode_call(json.dumps(call))
    assert migrated == current and migrated.version == 2 and migrated.body.opened == 0
    assert Planner().plan(migrated) == Planner().plan(current)
    call["arguments"]["body"]["opened"] = 0  # a version-2 field in a version-1 call is kept, not doubled
    assert decode_call(json.dumps(call)) == current
    call["arguments"]["version"] = 3  # newer than this code: refused, naming the field
    with pytest.raises(SituationError) as info:
        decode_call(json.dumps(call))
    assert info.value.field == "version"
