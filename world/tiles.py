"""Cell codes, actions and the proprio layout: the world's observation contract.

An NPC's view is a ``(2r+1) x (2r+1)`` uint8 array of cell codes centred on the NPC. Codes were
chosen over one-hot channels because building them is one gather per NPC (98 bytes for r=3 against
2.3 kB of float channels; see ``benchmarks/world.py``); brains embed the codes themselves.

The centre cell shows the tile under the NPC itself (so it can see the food it stands on); every
other cell shows another NPC when one stands there, else the tile. Cells outside the grid read as
WALL; cells hidden by night or fog read as UNSEEN.
"""

from __future__ import annotations

from enum import IntEnum
from types import SimpleNamespace

import numpy as np


class Tile(IntEnum):
    """Codes of the tile layer and of the composite view."""

    EMPTY = 0
    WALL = 1
    FOOD = 2
    WATER = 3  # blocking lake; drink by interacting while facing it
    FIRE = 4  # passable hazard; drains lifeforce every tick stood on
    CHARGER = 5  # passable; interact on it to recharge the battery
    DOOR = 6  # blocking; interact while facing it with a key to open (the key is used up)
    KEY = 7  # passable; interact on it to pick it up (one key at a time)
    LOCK = 8  # blocking arithmetic lock terminal; interact when its display shows the answer
    NPC = 9  # another NPC (view only)
    NPC_SIGNAL = 10  # another NPC that signalled this tick (view only)
    UNSEEN = 11  # hidden by night or fog (view only)


NUM_CODES = len(Tile)

#: Tiles an NPC cannot enter.
BLOCKING = np.zeros(NUM_CODES, dtype=bool)
BLOCKING[[Tile.WALL, Tile.WATER, Tile.DOOR, Tile.LOCK, Tile.NPC, Tile.NPC_SIGNAL]] = True


class Action(IntEnum):
    """The discrete action space shared by every stage."""

    STAY = 0
    NORTH = 1  # y - 1
    SOUTH = 2  # y + 1
    EAST = 3  # x + 1
    WEST = 4  # x - 1
    INTERACT = 5  # eat / charge / pick up on own cell, else drink / open / answer on the cell in reach
    SIGNAL = 6  # broadcast: NPCs within the stage's signal radius see it this tick


NUM_ACTIONS = len(Action)

#: (dy, dx) per action; STAY, INTERACT and SIGNAL do not move.
MOVE_DY = np.array([0, -1, 1, 0, 0, 0, 0], dtype=np.int64)
MOVE_DX = np.array([0, 0, 0, 1, -1, 0, 0], dtype=np.int64)


class Proprio(IntEnum):
    """Index of each field in the proprio vector (float32, all in [-1, 1] except LAST_REWARD)."""

    LIFEFORCE = 0  # [0, 1]
    BATTERY = 1  # [0, 1]
    HAS_KEY = 2  # {0, 1}
    LAST_REWARD = 3  # reward of the previous tick
    DAY_SIN = 4  # day/night phase; (0, 1) when the stage has no day/night
    DAY_COS = 5
    NIGHT = 6  # {0, 1}
    FOG = 7  # {0, 1}
    RAIN = 8  # {0, 1}
    HEARD_SIGNAL = 9  # fraction of other NPCs within signal radius that signalled this tick
    FACING_LOCK = 10  # {0, 1}: the cell in reach (faced, else first adjacent) is a lock terminal
    LOCK_A = 11  # that lock's problem "a op b", a / 10
    LOCK_B = 12  # b / 10
    LOCK_OP = 13  # 0 = +, 0.5 = -, 1 = *
    LOCK_SHOWN = 14  # the answer the terminal displays this tick, / 100 (interact when it is right)
    TIME = 15  # episode progress t / max_steps
    FACING_N = 16  # one-hot facing direction (last move attempted)
    FACING_S = 17
    FACING_E = 18
    FACING_W = 19


PROPRIO_SIZE = len(Proprio)

#: Lock operations, in LOCK_OP order.
LOCK_OPS = ("+", "-", "*")

# Plain ints for the hot path: on Python 3.11 an Enum member lookup (Tile.FOOD) costs about a
# microsecond, a SimpleNamespace attribute a few tens of nanoseconds.
T = SimpleNamespace(**{member.name: int(member) for member in Tile})
"""``Tile`` members as plain ints (``T.FOOD == Tile.FOOD``)."""
A = SimpleNamespace(**{member.name: int(member) for member in Action})
"""``Action`` members as plain ints."""
P = SimpleNamespace(**{member.name: int(member) for member in Proprio})
"""``Proprio`` members as plain ints."""
