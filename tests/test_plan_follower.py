"""The plan follower on hand-made maps, stepped in the real GridWorld until its plan is done or invalid."""

from __future__ import annotations

import numpy as np

from nervous.messages import CollapseEvent, Region
from organs.boundary import DeterministicEncoder
from organs.boundary.world_numbers import SeenMaps, npc_numbers, npc_view
from organs.cortex.planner import Planner
from organs.cortex.tools import AnswerLock, FetchKeyThenOpen, GoTo, OpenDoor, Purpose, Wait
from organs.plan import NpcView, PlanFollower, PlanStatus
from tests.cortex_fixtures import hand_made_world, parse_map
from world.core import GridWorld
from world.tiles import A, Tile

VAULT = [
    "#########",
    "#@......#",
    "#...k...#",
    "#####D###",
    "#..fff..#",
    "#########",
    "#.......#",
]


def follow(world: GridWorld, follower: PlanFollower, limit: int = 200) -> list[int]:
    """Step the world with the follower's actions until its plan ends; the actions taken."""
    seen = SeenMaps(world)
    seen.maps[:] = world.tiles[
        :, None, world.r : world.r + world.H, world.r : world.r + world.W
    ]  # knows the map
    actions = []
    for _ in range(limit):
        action = follower.step(npc_view(world, 0, 0, seen))
        if action is None:
            return actions
        actions.append(action)
        world.step(np.array([[action]]))
        seen.update(world)
    raise AssertionError(f"plan still running after {limit} ticks")


def tile(world: GridWorld, x: int, y: int) -> int:
    return int(world.tiles[0, y + world.r, x + world.r])


def test_fetch_key_then_open_opens_the_door() -> None:
    world = hand_made_world(VAULT)
    follower = PlanFollower(FetchKeyThenOpen(key_x=4, key_y=2, door_x=5, door_y=3))
    follow(world, follower)
    assert follower.status is PlanStatus.DONE, follower.reason
    assert tile(world, 5, 3) == Tile.EMPTY and tile(world, 4, 2) == Tile.EMPTY
    assert world.ep_opened[0, 0] == 1 and not world.has_key[0, 0]


def test_answer_lock_waits_for_the_display_then_opens() -> None:
    rows = [row.replace("D", "L") for row in VAULT]
    world = hand_made_world(rows, locks={(5, 3): (7, 8, 2)})
    follower = PlanFollower(AnswerLock(x=5, y=3, value=56))
    actions = follow(world, follower)
    assert follower.status is PlanStatus.DONE, follower.reason
    assert tile(world, 5, 3) == Tile.EMPTY and world.ep_opened[0, 0] == 1
    assert actions.count(A.INTERACT) == 1  # no wrong answer paid for


def test_a_value_the_lock_never_shows_ends_invalid() -> None:
    rows = [row.replace("D", "L") for row in VAULT]
    world = hand_made_world(rows, locks={(5, 3): (7, 8, 2)})
    follower = PlanFollower(AnswerLock(x=5, y=3, value=99))
    follow(world, follower)
    assert follower.status is PlanStatus.INVALID and "never showed 99" in follower.reason
    assert tile(world, 5, 3) == Tile.LOCK


def test_go_to_food_eats_it() -> None:
    world = hand_made_world(["#######", "#@..f.#", "#.....#", "#######", "#.....#", "#.....#", "#######"])
    follower = PlanFollower(GoTo(x=4, y=1, purpose=Purpose.FOOD))
    actions = follow(world, follower)
    assert follower.status is PlanStatus.DONE, follower.reason
    assert actions == [A.EAST, A.EAST, A.EAST, A.INTERACT] and world.ep_food[0, 0] == 1


def test_no_path_and_target_gone_and_too_many_steps_end_invalid() -> None:
    seen, _ = parse_map(VAULT)
    view = NpcView(x=1, y=1, facing=A.NORTH, has_key=False, seen=seen)
    walled = PlanFollower(GoTo(x=4, y=4, purpose=Purpose.FOOD))  # food behind the closed door
    assert walled.step(view) is None and walled.status is PlanStatus.INVALID and "no path" in walled.reason

    follower = PlanFollower(FetchKeyThenOpen(key_x=4, key_y=2, door_x=5, door_y=3))
    assert follower.step(view) in (A.EAST, A.SOUTH)
    gone = seen.copy()
    gone[2, 4] = Tile.EMPTY  # another NPC took the key
    assert follower.step(NpcView(x=2, y=1, facing=A.EAST, has_key=False, seen=gone)) is None
    assert follower.status is PlanStatus.INVALID and "target gone" in follower.reason

    short = PlanFollower(GoTo(x=7, y=2, purpose=Purpose.EXPLORE), max_steps=2)
    world = hand_made_world(VAULT)
    assert len(follow(world, short)) == 2
    assert short.status is PlanStatus.INVALID and "too many steps" in short.reason


def test_blocked_npc_gives_up() -> None:
    seen, _ = parse_map(VAULT)
    follower = PlanFollower(GoTo(x=7, y=1, purpose=Purpose.EXPLORE), max_stuck=3)
    view = NpcView(x=1, y=1, facing=A.EAST, has_key=False, seen=seen)
    actions = [follower.step(view) for _ in range(6)]  # it never moves: something unseen blocks it
    assert actions[:4] == [A.EAST] * 4 and actions[4] is None
    assert follower.status is PlanStatus.INVALID and "blocked" in follower.reason


def test_open_door_without_a_key_and_wait() -> None:
    seen, _ = parse_map(VAULT)
    view = NpcView(x=1, y=1, facing=A.NORTH, has_key=False, seen=seen)
    keyless = PlanFollower(OpenDoor(door_x=5, door_y=3))
    assert keyless.step(view) is None and "without a key" in keyless.reason
    waiting = PlanFollower(Wait(ticks=3))
    assert [waiting.step(view) for _ in range(4)] == [A.STAY, A.STAY, A.STAY, None]
    assert waiting.status is PlanStatus.DONE


def test_escalation_from_world_numbers_opens_a_door_in_process() -> None:
    """Seen map from the NPC's own views -> situation -> planner -> follower, until a door opens."""
    world = hand_made_world(VAULT)
    seen = SeenMaps(world)
    encoder, planner = DeterministicEncoder(), Planner()
    follower: PlanFollower | None = None
    for _ in range(120):
        if follower is None or follower.status is not PlanStatus.RUNNING:
            event = CollapseEvent(
                npc=0, region=Region.COLLISION, confidence=0.9, cells=["proximity"], tick=int(world.t[0])
            )
            situation = encoder.encode(npc_numbers(world, 0, seen, event))
            follower = PlanFollower(planner.plan(situation))
        action = follower.step(npc_view(world, 0, 0, seen))
        world.step(np.array([[A.STAY if action is None else action]]))
        seen.update(world)
        if world.ep_opened[0, 0]:
            break
    assert world.ep_opened[0, 0] == 1 and tile(world, 5, 3) == Tile.EMPTY
