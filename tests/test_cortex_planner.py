"""The nyx planner: lock arithmetic, key -> door plans, food, exploration; in-process through the engine."""

from __future__ import annotations

import msgspec
import pytest

from nervous.messages import Region
from organs.boundary import encode_call
from organs.cortex.engine import NyxEngine
from organs.cortex.planner import NoPlan, Planner
from organs.cortex.protocol import ChatCompletionRequest, ChatMessage, ProtocolError, ToolDefinition
from organs.cortex.tools import (
    TOOL_DECLARATIONS,
    AnswerLock,
    FetchKeyThenOpen,
    GoTo,
    OpenDoor,
    Purpose,
    Wait,
    parse_call,
)
from tests.cortex_fixtures import situation_on

# a stage-4-like corner: two vaults (a door, a lock), a key in reach, another walled off, a corridor
STAGE4 = [
    "################",
    "#@.....#.......#",
    "#......#..k....#",
    "#...k..#.......#",
    "#......#########",
    "###D#..#########",
    "#fff#..#fff#...#",
    "#fff#..Lfff#...#",
    "#####..#####...#",
    "#..............#",
    "################",
]


@pytest.mark.parametrize(
    ("a", "b", "op", "answer"), [(3, 4, 0, 7), (9, 2, 1, 7), (7, 8, 2, 56), (1, 1, 2, 1)]
)
def test_lock_arithmetic(a: int, b: int, op: int, answer: int) -> None:
    situation = situation_on(["#####", "#.@L#", "#####"], facing=2, lock=(a, b, op, 0))
    assert Planner().plan(situation) == AnswerLock(x=3, y=1, value=answer)


def test_key_then_door_uses_the_reachable_key() -> None:
    call = Planner().plan(situation_on(STAGE4, region=Region.COLLISION))
    assert call == FetchKeyThenOpen(key_x=4, key_y=3, door_x=3, door_y=5)


def test_with_a_key_in_hand_it_opens_the_door() -> None:
    call = Planner().plan(situation_on(STAGE4, has_key=True))
    assert call == OpenDoor(door_x=3, door_y=5)


def test_hungry_npc_goes_for_food_first() -> None:
    rows = ["#######", "#@..f.#", "#.k...#", "###D###", "#.....#", "#######"]
    assert Planner().plan(situation_on(rows, lifeforce=0.2)) == GoTo(x=4, y=1, purpose=Purpose.FOOD)
    assert isinstance(Planner().plan(situation_on(rows, lifeforce=0.9)), FetchKeyThenOpen)


def test_low_battery_goes_to_a_seen_charger_before_the_vault() -> None:
    """An empty battery makes every step cost exhaustion_cost: charge first, but hunger comes before it."""
    rows = ["#######", "#@..c.#", "#.k...#", "#f.....", "###D###", "#.....#", "#######"]
    charge = GoTo(x=4, y=1, purpose=Purpose.CHARGER)
    assert Planner().plan(situation_on(rows, battery=0.2)) == charge
    assert isinstance(Planner().plan(situation_on(rows, battery=0.9)), FetchKeyThenOpen)
    hungry = situation_on(rows, battery=0.2, lifeforce=0.2)
    assert Planner().plan(hungry) == GoTo(x=1, y=3, purpose=Purpose.FOOD)
    walled_off = ["#######", "#@.#c.#", "#.k#..#", "##D####", "#.....#", "#######"]
    assert isinstance(Planner().plan(situation_on(walled_off, battery=0.2)), FetchKeyThenOpen)


def test_a_sated_npc_explores_instead_of_walking_to_food() -> None:
    """Above the hunger level a meal is mostly lost at the lifeforce cap: look for vaults instead."""
    rows = ["#######", "#@..f.?", "#######"]
    assert Planner().plan(situation_on(rows, lifeforce=0.8)) == GoTo(x=5, y=1, purpose=Purpose.EXPLORE)
    assert Planner().plan(situation_on(rows, lifeforce=0.4)) == GoTo(x=4, y=1, purpose=Purpose.FOOD)


def test_an_npc_that_opened_something_leaves_keys_doors_and_locks_to_the_others() -> None:
    """Its success only needs it to live now: no key, door or far-lock plan; a lock in reach is answered."""
    assert Planner().plan(situation_on(STAGE4)) == FetchKeyThenOpen(key_x=4, key_y=3, door_x=3, door_y=5)
    assert Planner().plan(situation_on(STAGE4, opened=1)) == Wait(ticks=5)  # all of this map is known
    assert Planner().plan(situation_on(STAGE4, opened=2, has_key=True)) == Wait(ticks=5)  # no door either
    rows = ["#######", "#@..f.?", "#.k...#", "###D###", "#.....#", "#######"]
    assert Planner().plan(situation_on(rows, opened=1)) == GoTo(x=5, y=1, purpose=Purpose.EXPLORE)
    assert Planner().plan(situation_on(rows, opened=1, lifeforce=0.4)) == GoTo(x=4, y=1, purpose=Purpose.FOOD)
    at_lock = situation_on(["#####", "#.@L#", "#####"], opened=3, facing=2, lock=(7, 8, 2, 0))
    assert Planner().plan(at_lock) == AnswerLock(x=3, y=1, value=56)


def test_unknown_surroundings_are_explored_and_a_closed_cell_waits() -> None:
    explore = Planner().plan(situation_on(["#####", "#@..?", "#####"]))
    assert explore == GoTo(x=3, y=1, purpose=Purpose.EXPLORE)
    assert Planner().plan(situation_on(["###", "#@#", "###"])) == Wait(ticks=5)


def test_only_offered_tools_and_a_forced_tool() -> None:
    situation = situation_on(STAGE4)
    assert Planner().plan(situation, allowed={"go_to", "wait"}) == GoTo(x=7, y=7, purpose=Purpose.LOCK)
    assert Planner().plan(situation, forced="wait") == Wait(ticks=5)
    with pytest.raises(NoPlan):
        Planner().plan(situation, forced="answer_lock")


def test_engine_in_process_answers_like_the_server() -> None:
    situation = situation_on(STAGE4)
    request = ChatCompletionRequest(
        model="nyx", messages=[ChatMessage(role="user", content=encode_call(situation).decode())]
    )
    with pytest.raises(ProtocolError) as info:
        NyxEngine().complete(request)
    assert info.value.status == 400 and info.value.param == "tools"
    tools = msgspec.convert(TOOL_DECLARATIONS, list[ToolDefinition])
    response = NyxEngine().complete(msgspec.structs.replace(request, tools=tools))
    (call,) = response.choices[0].message.tool_calls
    assert parse_call(call.function.name, call.function.arguments) == Planner().plan(situation)
