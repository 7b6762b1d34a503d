"""The planner behind model ``nyx``: a situation in, one tool call out (path search and lock arithmetic).

It reads the situation's seen map and, in order, answers: the lock in reach (its arithmetic); food when
lifeforce runs low; a charger when the battery runs low (an empty battery makes every step cost
``exhaustion_cost``, and plans walk every tick); a door it holds a key for; the nearest key with a door
reachable from it; a lock seen further off; food unless sated; the nearest edge of the unknown; else
wait. An NPC that has opened a door or a lock this episode (``body.opened``, situation version 2) gets
no door, key or far-lock plan: its success only needs it to live now, and the keys, doors and locks it
would take are what the NPCs that have opened nothing yet need (a lock in reach is still answered).
Only the tools the caller offered are considered; a forced tool is answered if the situation allows it
(``NoPlan`` otherwise).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from organs.boundary.schema import MAP_TILES, Point, Situation
from organs.cortex.tools import (
    TOOLS,
    AnswerLock,
    FetchKeyThenOpen,
    GoTo,
    OpenDoor,
    PlanCall,
    Purpose,
    Wait,
    tool_name,
)
from organs.pathing import approach_cells, distances, labelled_distances, nearest, walkable
from world.tiles import Tile

_TILE_OF = np.zeros(128, dtype=np.uint8)
for _char, _code in MAP_TILES.items():
    _TILE_OF[ord(_char)] = _code
#: Lifeforce (percent) under which food comes before doors and locks.
HUNGRY_PERCENT = 30
#: Lifeforce (percent) from which seen food is no plan: the hunger cell's level (``cell.hunger_level``).
#: A sated NPC's meal is mostly lost at the cap of 1.0, takes food the hungry need, and keeps it from
#: exploring for vaults (stage 4: success with the cortex 0.33 -> 0.43 when it explores instead).
SATED_PERCENT = 50
#: Battery (percent) under which a seen charger comes before doors and locks.
LOW_BATTERY_PERCENT = 35
#: How long ``wait`` stays put when nothing is worth doing.
IDLE_TICKS = 5
#: Whether an NPC that opened something this episode still gets key, door and far-lock plans. No: stage 4,
#: heuristic brains and governor, vision governed, 150 episodes, seed 0: success 0.538 -> 0.643 (return
#: 0.38 -> 0.19: fewer goal bonuses); a higher sated level for such NPCs (80 %) added nothing (0.541), and
#: not answering a lock in reach either gave 0.641.
DONE_SEEKS_VAULTS = False


class NoPlan(ValueError):
    """The situation allows no call of the tool the caller forced."""


def seen_tiles(situation: Situation) -> np.ndarray:
    """The situation's map as tile codes (uint8 [H, W])."""
    rows = np.frombuffer("".join(situation.map.rows).encode(), dtype=np.uint8)
    return _TILE_OF[rows].reshape(situation.map.height, situation.map.width)


def lock_answer(a: int, b: int, op: str) -> int:
    """The value a lock terminal wants."""
    return a + b if op == "+" else a - b if op == "-" else a * b


def _xy(points: list[Point]) -> list[tuple[int, int]]:
    return [(p.x, p.y) for p in points]


class Planner:
    """Answers situations with tool calls."""

    def plan(
        self, situation: Situation, allowed: set[str] | None = None, forced: str | None = None
    ) -> PlanCall:
        """The best allowed call for a situation (the forced tool's, when one is forced)."""
        allowed = set(TOOLS) if allowed is None else allowed
        for call in self.candidates(situation):
            name = tool_name(call)
            if (forced is None and name in allowed) or name == forced:
                return call
        raise NoPlan(f"the situation allows no {forced or 'offered'} call")

    def candidates(self, s: Situation) -> Iterator[PlanCall]:
        """Every call worth making, best first (lazily: path searches run only as far as needed)."""
        if s.lock is not None:  # no search needed: the answer is arithmetic
            yield AnswerLock(x=s.lock.x, y=s.lock.y, value=lock_answer(s.lock.a, s.lock.b, s.lock.op))
        seen = seen_tiles(s)
        free = walkable(seen)
        dist = distances(free, (s.body.x, s.body.y))

        def reach(target: tuple[int, int], adjacent: bool) -> int:
            best = nearest(dist, approach_cells(free, target, adjacent))
            return -1 if best is None else int(dist[best[1], best[0]])

        def closest(points: list[tuple[int, int]], adjacent: bool) -> tuple[int, int] | None:
            if adjacent:
                scored = [(d, p) for p in points if (d := reach(p, adjacent)) >= 0]
            else:
                scored = [(d, (x, y)) for x, y in points if (d := int(dist[y, x])) >= 0]
            return min(scored)[1] if scored else None

        food = closest(_xy(s.food), adjacent=False)
        if food is not None and s.body.lifeforce < HUNGRY_PERCENT:
            yield GoTo(x=food[0], y=food[1], purpose=Purpose.FOOD)
        if s.body.battery < LOW_BATTERY_PERCENT:
            ys, xs = np.nonzero(seen == Tile.CHARGER)
            charger = closest(list(zip(xs.tolist(), ys.tolist(), strict=True)), adjacent=False)
            if charger is not None:
                yield GoTo(x=charger[0], y=charger[1], purpose=Purpose.CHARGER)
        if s.body.opened == 0 or DONE_SEEKS_VAULTS:  # no door, key or far lock for one that opened something
            if s.body.has_key:
                door = closest(_xy(s.doors), adjacent=True)
                if door is not None:
                    yield OpenDoor(door_x=door[0], door_y=door[1])
            else:
                yield from self._key_door_plans(s, free, dist)
            lock = closest(_xy(s.locks), adjacent=True)
            if lock is not None:
                yield GoTo(x=lock[0], y=lock[1], purpose=Purpose.LOCK)
        if food is not None and s.body.lifeforce < SATED_PERCENT:
            yield GoTo(x=food[0], y=food[1], purpose=Purpose.FOOD)
        frontier = self._frontier(seen, free, dist)
        if frontier is not None:
            yield GoTo(x=frontier[0], y=frontier[1], purpose=Purpose.EXPLORE)
        yield Wait(ticks=IDLE_TICKS)

    @staticmethod
    def _key_door_plans(s: Situation, free: np.ndarray, dist: np.ndarray) -> Iterator[FetchKeyThenOpen]:
        """Reachable keys with the door nearest each (one search from every door's approach cells)."""
        doors = _xy(s.doors)
        stands = [
            (cell, i) for i, door in enumerate(doors) for cell in approach_cells(free, door, adjacent=True)
        ]
        if not stands:
            return
        to_door, nearest_stand = labelled_distances(free, [cell for cell, _ in stands])
        plans = []
        for x, y in _xy(s.keys):
            if dist[y, x] >= 0 and to_door[y, x] >= 0:
                door = doors[stands[int(nearest_stand[y, x])][1]]
                plans.append((int(dist[y, x]) + int(to_door[y, x]), (x, y), door))
        for _, key, door in sorted(plans):
            yield FetchKeyThenOpen(key_x=key[0], key_y=key[1], door_x=door[0], door_y=door[1])

    @staticmethod
    def _frontier(seen: np.ndarray, free: np.ndarray, dist: np.ndarray) -> tuple[int, int] | None:
        """The nearest reachable known cell next to an unknown one."""
        unseen = seen == Tile.UNSEEN
        edge = np.zeros_like(unseen)
        edge[1:, :] |= unseen[:-1, :]
        edge[:-1, :] |= unseen[1:, :]
        edge[:, 1:] |= unseen[:, :-1]
        edge[:, :-1] |= unseen[:, 1:]
        candidates = edge & free & (dist > 0)
        if not candidates.any():
            return None
        ys, xs = np.nonzero(candidates)
        best = int(np.argmin(dist[ys, xs]))
        return int(xs[best]), int(ys[best])
