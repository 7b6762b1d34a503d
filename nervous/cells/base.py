"""What every cell shares: its config, the view geometry, the Cell base class and WaveArrays.

A cell is a small state machine over M NPCs (M = B*N, flat). ``step(views, proprio, tick)`` takes
``views`` uint8 [M, V, V] of ``world.tiles.Tile`` codes centred on each NPC and ``proprio`` float32
[M, PROPRIO_SIZE] and returns ``(confidence float32[M] in [0, 1], value float32[M])``; no Python
loop over NPCs. A wave "fires" for an NPC when its confidence reaches ``CellConfig.fire_threshold``.

The hot path runs once per tick in every NPC process with M = 1, where numpy's per-call overhead
dominates: helpers here use plain ints (``world.tiles.T/A/P``) rather than Enum members, lookup
tables cached per view side, and as few numpy calls as the batched (large M) case allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import ClassVar

import numpy as np

from nervous.messages import Region, WaveBatch
from world.tiles import PROPRIO_SIZE, A


@dataclass
class CellConfig:
    """Which cells run and their thresholds."""

    cells: tuple[str, ...] = ("battery", "proximity", "smell", "hazard", "social", "math", "vault", "key",
                              "hunger", "forage")
    """Cells in the bank, in feature order (a brain's input width follows: two features per cell)."""
    fire_threshold: float = 0.05
    """Confidence at which a wave counts as fired (sent on the bus, counted in collapse)."""
    battery_low: float = 0.3
    """Battery cell: level (min of lifeforce and battery) entering LOW."""
    battery_critical: float = 0.1
    """Battery cell: level entering CRITICAL."""
    battery_hysteresis: float = 0.05
    """Battery cell: how far above a threshold the level must climb to leave its state."""
    hazard_decay: float = 0.5
    """Hazard cell: per-tick decay of the remembered hazard confidence."""
    math_max_factor: int = 5
    """Math cell: largest factor of a product it solves itself."""
    key_memory: float = 0.99
    """Key cell: per-tick decay of a key sighting's confidence (0: no memory)."""
    key_wanted: float = 0.0
    """Key cell: its confidence while a door is in view and no key is held or remembered (a key is
    wanted: with the vault cell the math region collapses, so the cortex - and its vision organ, which
    sees beyond the view - is asked where one lies); 0: such a door asks nothing."""
    hunger_level: float = 0.5
    """Hunger cell: lifeforce below which the NPC is hungry."""
    food_memory: float = 0.99
    """Forage cell: per-tick decay of a food sighting's confidence (0: no memory)."""
    extra: dict[str, float] = field(default_factory=dict)
    """Free per-experiment knobs for new cells (name -> value)."""

    def __post_init__(self) -> None:
        if isinstance(self.key_wanted, bool) or not 0.0 <= self.key_wanted <= 1.0:
            raise ValueError(f"nervous.cell.key_wanted={self.key_wanted!r}: must be in 0..1")


@cache
def geometry(side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dy, dx, manhattan distance) int arrays [side, side] relative to the view centre."""
    r = side // 2
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    return dy, dx, np.abs(dy) + np.abs(dx)


@cache
def proximity_weight(side: int) -> np.ndarray:
    """float32 [side, side]: 1 / (1 + manhattan distance) from the centre."""
    return (1.0 / (1.0 + geometry(side)[2])).astype(np.float32)


#: (row offset, col offset) of the cell each move enters, in Action order NORTH, SOUTH, EAST, WEST.
MOVE_OFFSETS = ((-1, 0), (1, 0), (0, 1), (0, -1))


@cache
def _neighbour_index(side: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) int arrays [4]: view indices of the cells north, south, east and west of the centre."""
    r = side // 2
    return np.array([r + oy for oy, _ in MOVE_OFFSETS]), np.array([r + ox for _, ox in MOVE_OFFSETS])


def neighbours(views: np.ndarray) -> np.ndarray:
    """uint8 [M, 4]: the tile codes north, south, east and west of each NPC."""
    rows, cols = _neighbour_index(views.shape[1])
    return views[:, rows, cols]


@cache
def _direction_table(side: int) -> np.ndarray:
    """int64 [side * side]: the move towards each view cell (flat index), INTERACT at the centre.

    Vertical moves win when the cell is as far up or down as sideways.
    """
    dy, dx, _ = geometry(side)
    by, bx = dy.reshape(-1), dx.reshape(-1)
    vertical = np.abs(by) >= np.abs(bx)
    out = np.where(vertical, np.where(by < 0, A.NORTH, A.SOUTH), np.where(bx > 0, A.EAST, A.WEST))
    return np.where((by == 0) & (bx == 0), A.INTERACT, out).astype(np.int64)


def direction_to(views: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """int64 [M]: the move towards each NPC's best-scoring view cell (INTERACT when it is the centre)."""
    m, side, _ = views.shape
    return _direction_table(side)[scores.reshape(m, -1).argmax(axis=1)]


def nearest(views: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """(closeness float32 [M], direction int64 [M]) of each NPC's nearest view cell showing tile.

    Closeness is 1 / (1 + manhattan distance), 0 when no such cell is visible; direction is the
    ``Action`` code that steps towards it (as ``direction_to``: ties go to the first cell in
    row-major order), 0 when none is visible.
    """
    m, side, _ = views.shape
    scores = ((views == tile) * proximity_weight(side)).reshape(m, -1)
    closeness = np.maximum.reduce(scores, axis=1)  # = scores.max(axis=1), without its Python wrapper
    return closeness, np.where(closeness > 0, direction_to(views, scores), 0)


def check_senses(views: np.ndarray, proprio: np.ndarray) -> None:
    """ValueError naming the argument when views/proprio are not flat [M, V, V] / [M, P] arrays."""
    if views.ndim != 3 or views.shape[1] != views.shape[2] or views.shape[1] % 2 == 0:
        raise ValueError(f"views must be [M, V, V] with odd V, got shape {views.shape}")
    if proprio.ndim != 2 or proprio.shape[0] != views.shape[0] or proprio.shape[1] < PROPRIO_SIZE:
        raise ValueError(f"proprio must be [M={views.shape[0]}, >={PROPRIO_SIZE}], got shape {proprio.shape}")


class Cell:
    """Base of all cells: a name, a region, a value scale for features and per-NPC state."""

    name: ClassVar[str]
    region: ClassVar[Region]
    value_scale: ClassVar[float] = 1.0

    def __init__(self, config: CellConfig | None = None) -> None:
        self.config = config or CellConfig()
        self.num_npcs = 0

    def reset(self, num_npcs: int) -> None:
        """Forget all per-NPC state and size it for num_npcs NPCs."""
        self.num_npcs = num_npcs

    def reset_npcs(self, mask: np.ndarray) -> None:
        """Forget the state of the NPCs where mask is True (episode end, respawn)."""

    def step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        """(confidence float32[M], value float32[M]) of this tick."""
        check_senses(views, proprio)
        conf, value = self.sense(views, proprio, tick)
        return np.clip(conf, 0.0, 1.0).astype(np.float32, copy=False), value.astype(np.float32, copy=False)

    def sense(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        """``step`` on senses already checked, before clipping and casting: (confidence, value) arrays [M].

        Resizes the per-NPC state when M changed. For callers that check the senses once for many
        cells and clip the confidences together (``CellBank``).
        """
        if len(views) != self.num_npcs:
            self.reset(len(views))
        return self._step(views, proprio, tick)

    def _step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> tuple[np.ndarray, np.ndarray]:
        """(confidence, value) [M] of any real dtype: fresh arrays, clipped and cast by the caller."""
        raise NotImplementedError


class RememberingCell(Cell):
    """A cell that remembers a sighting per NPC: its confidence when seen, decaying per tick after."""

    def reset(self, num_npcs: int) -> None:
        super().reset(num_npcs)
        self.memory = np.zeros(num_npcs, dtype=np.float32)

    def reset_npcs(self, mask: np.ndarray) -> None:
        self.memory[mask] = 0.0

    def remember(self, in_view: np.ndarray, sighting: float, decay: float) -> np.ndarray:
        """The memory after this tick: sighting where in view, else the last memory times decay."""
        self.memory = np.maximum(np.where(in_view, np.float32(sighting), np.float32(0.0)),
                                 self.memory * np.float32(decay))
        return self.memory


@dataclass
class WaveArrays:
    """The waves of a cell bank for one tick, as arrays over M NPCs and C cells."""

    tick: int
    cells: tuple[str, ...]
    regions: tuple[Region, ...]
    value_scale: np.ndarray
    """float32 [C]: multiplies value into the feature vector."""
    confidence: np.ndarray
    """float32 [M, C] in [0, 1]."""
    value: np.ndarray
    """float32 [M, C]: each cell's reading (see the cell's docstring)."""
    fired: np.ndarray
    """bool [M, C]: confidence reached the fire threshold."""

    def features(self) -> np.ndarray:
        """float32 [M, 2C]: confidences, then scaled values (zero where not fired)."""
        scaled = np.where(self.fired, self.value * self.value_scale, 0.0)
        return np.concatenate([self.confidence, scaled], axis=1).astype(np.float32)

    def to_batch(self, npc_ids: np.ndarray | None = None) -> WaveBatch:
        """The fired waves as one WaveBatch message (npc_ids maps row -> NPC id; default row index)."""
        rows, cols = np.nonzero(self.fired)
        ids = rows if npc_ids is None else np.asarray(npc_ids)[rows]
        return WaveBatch.from_arrays(
            self.tick,
            list(self.cells),
            list(self.regions),
            ids,
            cols,
            self.confidence[rows, cols],
            self.value[rows, cols],
        )
