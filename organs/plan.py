"""The plan follower: one validated tool call -> a short plan of world actions, stepped one per NPC tick.

A plan is a list of legs (walk to a cell or next to it, face it, wait for a lock's display, interact,
stay). ``PlanFollower.step(view)`` returns the action of this tick, or None when the plan has ended:
``status`` is then DONE, or INVALID with a ``reason`` (no path, blocked, target gone, interact had no
effect, too many steps), and the NPC's brain resumes. Paths are searched again every tick over the
NPC's seen map (``organs.pathing``), so a map that grows or a cell that fills is taken into account.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from organs.cortex.tools import AnswerLock, FetchKeyThenOpen, GoTo, OpenDoor, PlanCall, Purpose, Wait
from organs.pathing import MOVES, approach_cells, first_step, walkable
from world.tiles import A, Tile

Cell = tuple[int, int]
#: Ticks to wait for a lock's display to show the answer (it cycles through 6 values).
LOCK_WAIT_TICKS = 12
#: Tiles under which a target may hide without being gone (another NPC stands on it; not seen now).
_HIDING = (Tile.NPC, Tile.NPC_SIGNAL, Tile.UNSEEN)


@dataclass
class NpcView:
    """What the follower reads of its NPC each tick, in the plan's map frame."""

    x: int
    """Column of the NPC on the seen map."""
    y: int
    """Row of the NPC on the seen map."""
    facing: int
    """The direction last moved: ``world.tiles.Action`` NORTH, SOUTH, EAST or WEST."""
    has_key: bool
    """Whether the NPC carries a key."""
    seen: np.ndarray
    """The seen map: tile codes (uint8 [H, W]), ``Tile.UNSEEN`` where unknown."""
    lock_shown: int | None = None
    """What the lock in reach displays now (None: no lock in reach)."""


class PlanStatus(enum.StrEnum):
    """Where a plan stands."""

    RUNNING = "running"
    DONE = "done"
    INVALID = "invalid"


class _Leg:
    """One part of a plan."""

    def act(self, view: NpcView) -> int | None:
        """This tick's action, or None when the leg is complete (raise _Invalid when it cannot be)."""
        raise NotImplementedError


class _Invalid(Exception):
    """The plan cannot go on."""


def _tile(view: NpcView, cell: Cell) -> int:
    x, y = cell
    height, width = view.seen.shape
    if not (0 <= x < width and 0 <= y < height):
        raise _Invalid(f"target {cell} lies outside the map")
    return int(view.seen[y, x])


class _Walk(_Leg):
    def __init__(self, target: Cell, adjacent: bool, expect: Tile | None, max_stuck: int) -> None:
        self.target, self.adjacent, self.expect, self.max_stuck = target, adjacent, expect, max_stuck
        self.last: Cell | None = None
        self.stuck = 0

    def act(self, view: NpcView) -> int | None:
        tile = _tile(view, self.target)
        if self.expect is not None and tile != self.expect and tile not in _HIDING:
            raise _Invalid(f"target gone: {self.target} holds {Tile(tile).name}, not {self.expect.name}")
        here = (view.x, view.y)
        free = walkable(view.seen)
        goals = approach_cells(free, self.target, self.adjacent)
        if here in goals:
            return None
        self.stuck = self.stuck + 1 if here == self.last else 0
        if self.stuck > self.max_stuck:
            raise _Invalid(f"blocked at {here} for {self.stuck} ticks")
        self.last = here
        action = first_step(free, here, goals)
        if action is None:
            raise _Invalid(f"no path from {here} to {self.target}")
        return action


class _Face(_Leg):
    def __init__(self, target: Cell) -> None:
        self.target = target

    def act(self, view: NpcView) -> int | None:
        dx, dy = self.target[0] - view.x, self.target[1] - view.y
        for action, mx, my in MOVES:
            if (mx, my) == (dx, dy):
                return None if view.facing == action else action  # a move into a blocking cell only turns
        raise _Invalid(f"{self.target} is not next to ({view.x}, {view.y})")


class _WaitShown(_Leg):
    def __init__(self, value: int) -> None:
        self.value, self.waited = value, 0

    def act(self, view: NpcView) -> int | None:
        if view.lock_shown == self.value:
            return None
        self.waited += 1
        if self.waited > LOCK_WAIT_TICKS:
            raise _Invalid(f"the lock never showed {self.value} in {LOCK_WAIT_TICKS} ticks")
        return A.STAY


class _Interact(_Leg):
    """Interact once; the next tick checks that it worked."""

    def __init__(self, worked: tuple[str, Cell | None] | None) -> None:
        self.worked, self.sent = worked, False

    def act(self, view: NpcView) -> int | None:
        if not self.sent:
            self.sent = True
            return A.INTERACT
        if self.worked is not None:
            kind, cell = self.worked
            ok = view.has_key if kind == "has_key" else cell is not None and _tile(view, cell) != Tile[kind]
            if not ok:
                raise _Invalid(f"interact had no effect ({kind})")
        return None


class _Stay(_Leg):
    def __init__(self, ticks: int) -> None:
        self.left = ticks

    def act(self, view: NpcView) -> int | None:
        if self.left <= 0:
            return None
        self.left -= 1
        return A.STAY


_ON_CELL = {Purpose.FOOD: Tile.FOOD, Purpose.KEY: Tile.KEY, Purpose.CHARGER: Tile.CHARGER}


def plan_legs(call: PlanCall, has_key: bool, max_stuck: int = 3) -> list[_Leg]:
    """The legs of a call's plan for an NPC that does (not) hold a key."""
    match call:
        case AnswerLock(x=x, y=y, value=value):
            lock = (x, y)
            return [
                _Walk(lock, True, Tile.LOCK, max_stuck),
                _Face(lock),
                _WaitShown(value),
                _Interact(("LOCK", lock)),
            ]
        case GoTo(x=x, y=y, purpose=purpose):
            cell = (x, y)
            if purpose in _ON_CELL:
                check = {Purpose.FOOD: ("FOOD", cell), Purpose.KEY: ("has_key", None)}.get(purpose)
                return [_Walk(cell, False, _ON_CELL[purpose], max_stuck), _Interact(check)]
            if purpose is Purpose.WATER:
                return [_Walk(cell, True, Tile.WATER, max_stuck), _Face(cell), _Interact(None)]
            if purpose is Purpose.LOCK:
                return [_Walk(cell, True, Tile.LOCK, max_stuck), _Face(cell)]
            return [_Walk(cell, False, None, max_stuck)]
        case FetchKeyThenOpen(key_x=kx, key_y=ky, door_x=dx, door_y=dy):
            door = (dx, dy)
            legs: list[_Leg] = (
                [] if has_key else [_Walk((kx, ky), False, Tile.KEY, max_stuck), _Interact(("has_key", None))]
            )
            return [*legs, _Walk(door, True, Tile.DOOR, max_stuck), _Face(door), _Interact(("DOOR", door))]
        case OpenDoor(door_x=dx, door_y=dy):
            if not has_key:
                raise _Invalid("open_door without a key in hand")
            door = (dx, dy)
            return [_Walk(door, True, Tile.DOOR, max_stuck), _Face(door), _Interact(("DOOR", door))]
        case Wait(ticks=ticks):
            return [_Stay(ticks)]
    raise _Invalid(f"no plan for {type(call).__name__}")


class PlanFollower:
    """Steps one tool call's plan, one action per NPC tick."""

    def __init__(self, call: PlanCall, max_steps: int = 64, max_stuck: int = 3) -> None:
        self.call, self.max_steps, self.max_stuck = call, max_steps, max_stuck
        self.status = PlanStatus.RUNNING
        self.reason = ""
        """Why the plan is invalid (empty otherwise)."""
        self.steps = 0
        """Actions taken so far."""
        self._legs: list[_Leg] | None = None

    def step(self, view: NpcView) -> int | None:
        """This tick's action; None once the plan is done or invalid (see ``status`` and ``reason``)."""
        if self.status is not PlanStatus.RUNNING:
            return None
        try:
            if self._legs is None:
                self._legs = plan_legs(self.call, view.has_key, self.max_stuck)
            while self._legs:
                action = self._legs[0].act(view)
                if action is not None:
                    break
                self._legs.pop(0)
            else:
                self.status = PlanStatus.DONE
                return None
            if self.steps >= self.max_steps:
                raise _Invalid(f"too many steps ({self.max_steps})")
        except _Invalid as exc:
            self.status, self.reason = PlanStatus.INVALID, str(exc)
            return None
        self.steps += 1
        return int(action)
