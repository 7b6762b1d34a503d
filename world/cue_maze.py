"""The cue maze: a memory-needing toy world (a T-maze) built from the grid world's own mechanics.

Layout (unpadded, 5 x 7; ``#`` wall, ``.`` empty, ``S`` the start, ``F`` food, ``X`` fire)::

    #######
    #F...X#     the food lies at the end of one arm, fire at the other (drawn per episode)
    ###.###
    ###.###
    ###S###

One NPC starts at the bottom of the corridor. By day (ticks 0-1) its 7 x 7 view shows both arms'
ends, so it sees which side holds the food; then night falls (``day_length=4``: ticks 2-3) and its
view shrinks to its 8 neighbours (``night_view_radius=1``). It reaches the junction at tick 3, at
night, and must turn towards the food it saw two ticks before.

Success is the world's own: not dying. Lifeforce decays by 1/5.5 a tick, so the NPC starves at its
6th tick unless it eats then, and the only way is without a wasted tick: north three times, two
steps into the food's arm, interact. The wrong arm ends in fire, and turning back costs four ticks.

Why a memoryless policy cannot exceed chance (0.5): a successful episode's first three actions are
NORTH (any other legal action, STAY or SIGNAL, wastes a tick; the corridor's walls mask the rest).
Its observation at the junction (tick 3) is then the same whichever side holds the food: the view
shows walls, the corridor and two empty arm cells (the ends are two cells away, hidden by the
night), and the proprio (lifeforce, reward, time of day, facing north, no other NPC to hear) does
not depend on the side. A policy of the current observation alone turns west with some probability
p in both layouts, so its success is at most (p + (1 - p)) / 2 = 0.5. A brain that remembers the
day's view can reach 1.0.

Only the reset is new (``CueMazeWorld._reset_envs`` lays out the maze); stepping, night, eating,
fire and starvation are the GridWorld's. It is a test world (``Trainer(run, world_class=...)``), not
a curriculum stage.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from world.config import WorldConfig
from world.core import GridWorld
from world.tiles import T

#: The cue maze's world settings (the layout itself is `CueMazeWorld`'s).
CUE_MAZE = WorldConfig(
    stage=0, name="cue_maze", height=5, width=7, n_npcs=1, view_radius=3, max_steps=7, n_food=0,
    food_regrow=0.0, food_cap=0, lifeforce_decay=1 / 5.5, day_length=4, night_view_radius=1,
)

_ROWS = ("#######",
         "#.....#",
         "###.###",
         "###.###",
         "###.###")
_START = (4, 3)
_ENDS = ((1, 1), (1, 5))  # west, east


def cue_maze_config(**overrides: object) -> WorldConfig:
    """The cue maze's WorldConfig with field overrides (validated)."""
    return replace(CUE_MAZE, **overrides)


class CueMazeWorld(GridWorld):
    """GridWorld whose every episode is the cue maze, the food's side drawn from the world's generator."""

    def __init__(self, config: WorldConfig = CUE_MAZE, **kwargs: object) -> None:
        if (config.height, config.width, config.n_npcs) != (len(_ROWS), len(_ROWS[0]), 1):
            raise ValueError(f"world: the cue maze is {len(_ROWS)}x{len(_ROWS[0])} with 1 NPC, got "
                             f"{config.height}x{config.width} with {config.n_npcs}")
        super().__init__(config, **kwargs)  # type: ignore[arg-type]

    def _reset_envs(self, ids: np.ndarray) -> None:
        super()._reset_envs(ids)  # bodies, counters and the clock; the layout is replaced below
        r = self.r
        layout = np.array([[T.WALL if c == "#" else T.EMPTY for c in row] for row in _ROWS], dtype=np.uint8)
        #: food_west[b]: the food is at the west end of env b's maze this episode.
        self.food_west = getattr(self, "food_west", np.zeros(self.num_envs, dtype=bool))
        west = self.rng.random(len(ids)) < 0.5
        self.food_west[ids] = west
        for i, env in enumerate(ids):
            tiles = self.tiles[env]
            tiles[r:r + self.H, r:r + self.W] = layout
            food, fire = (_ENDS[0], _ENDS[1]) if west[i] else (_ENDS[1], _ENDS[0])
            tiles[food[0] + r, food[1] + r] = T.FOOD
            tiles[fire[0] + r, fire[1] + r] = T.FIRE
        self.pos_y[ids] = _START[0] + r
        self.pos_x[ids] = _START[1] + r
        self.food_count[ids] = 1
