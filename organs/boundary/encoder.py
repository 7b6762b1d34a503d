"""From an NPC's numbers to one schema-valid situation: the boundary's interface and its deterministic one.

``SituationEncoder`` turns ``NpcNumbers`` into a ``Situation``; a ``Boundary`` also says how it got it
(``situate`` -> ``Situated``: the fallback taken, if any, and the time it took). ``DeterministicEncoder``
is the default: plain arithmetic and a scan of the seen map, never a fallback. The model backend
(``organs.boundary.model.ModelBoundary``: a function-calling model over HTTP) is the other boundary, with
this encoder standing in whenever the model's answer is not a valid situation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from nervous.cells.math import read_problem
from nervous.messages import REGIONS, Region
from organs.boundary.schema import (
    MAP_LEGEND,
    MAX_MAP_SIDE,
    MAX_POINTS,
    SITUATION_VERSION,
    Body,
    Collapse,
    Facing,
    LockProblem,
    Point,
    RegionSignal,
    SeenMap,
    Situation,
)
from world.tiles import LOCK_OPS, PROPRIO_SIZE, P, Tile

_FACINGS = (Facing.NORTH, Facing.SOUTH, Facing.EAST, Facing.WEST)
#: (dx, dy) of each facing, in ``_FACINGS`` order.
_FACING_STEP = ((0, -1), (0, 1), (1, 0), (-1, 0))
_LEGEND = np.array([ord(MAP_LEGEND[code]) for code in range(len(Tile))], dtype=np.uint8)


@dataclass
class NpcNumbers:
    """What the NPC side knows of one NPC when a collapse reaches an open gate."""

    npc: int
    """The NPC's id."""
    tick: int
    """The world tick of the collapse."""
    x: int
    """Column of the NPC on its seen map."""
    y: int
    """Row of the NPC on its seen map."""
    proprio: np.ndarray
    """The world's proprio vector (float32 [PROPRIO_SIZE], ``world.tiles.Proprio`` layout)."""
    seen: np.ndarray
    """The NPC's seen map: tile codes (uint8 [H, W]), ``Tile.UNSEEN`` where it knows nothing."""
    region: Region
    """The region the cells collapsed on."""
    collapse_confidence: float
    """The collapse's amplified confidence in [0, 1]."""
    collapse_cells: list[str] = field(default_factory=list)
    """The cells that agreed."""
    confidence: np.ndarray = field(default_factory=lambda: np.zeros(len(REGIONS), dtype=np.float32))
    """The strongest wave confidence per region (float [6], ``nervous.messages.REGIONS`` order)."""
    value: np.ndarray = field(default_factory=lambda: np.zeros(len(REGIONS), dtype=np.float32))
    """The value of that wave per region (float [6]), in the cell's own units."""
    opened: int = 0
    """Doors and locks the NPC has opened this episode (the world's ``ep_opened``)."""


class SituationEncoder(Protocol):
    """Turns an NPC's numbers into one schema-valid situation."""

    def encode(self, numbers: NpcNumbers) -> Situation:
        """The situation of one NPC."""
        ...


@dataclass(frozen=True)
class Situated:
    """A situation and how the boundary came by it."""

    situation: Situation
    fallback: str = ""
    """'' when the boundary's own backend wrote it; else why the encoder stood in (``FALLBACK_KINDS`` of
    ``organs.boundary.model``: unreachable, bad_json, bad_situation, ...)."""
    detail: str = ""
    """One line on what went wrong ('' when nothing did)."""
    latency_s: float = 0.0
    """Seconds from the numbers to the situation."""


class Boundary(Protocol):
    """The boundary as the escalation path uses it: numbers in, a situation and its provenance out."""

    def situate(self, numbers: NpcNumbers) -> Situated:
        """The situation of one NPC, with the fallback taken (never raises for a model's trouble)."""
        ...

    def situate_many(self, batch: list[NpcNumbers]) -> list[Situated]:
        """The situations of several NPCs, in order (a model boundary asks for them concurrently)."""
        ...

    def close(self) -> None:
        """Release what the boundary holds (an HTTP client, an embedded server); safe to call twice."""
        ...


def _percent(value: float) -> int:
    return int(min(100, max(0, round(float(value) * 100))))


def _points(seen: np.ndarray, code: int, x: int, y: int) -> list[Point]:
    ys, xs = np.nonzero(seen == code)
    if len(xs) > MAX_POINTS:
        order = np.argsort(np.abs(xs - x) + np.abs(ys - y), kind="stable")[:MAX_POINTS]
        ys, xs = ys[order], xs[order]
    return [Point(x=int(px), y=int(py)) for px, py in zip(xs.tolist(), ys.tolist(), strict=True)]


class DeterministicEncoder:
    """The default boundary: exact arithmetic on the numbers, no model."""

    def situate(self, numbers: NpcNumbers) -> Situated:
        """The situation of one NPC, never a fallback."""
        started = time.perf_counter()
        situation = self.encode(numbers)
        return Situated(situation, latency_s=time.perf_counter() - started)

    def situate_many(self, batch: list[NpcNumbers]) -> list[Situated]:
        """The situations of several NPCs, in order."""
        return [self.situate(numbers) for numbers in batch]

    def close(self) -> None:
        """Nothing to release."""

    def encode(self, numbers: NpcNumbers) -> Situation:
        """The situation of one NPC (ValueError naming the field when the numbers do not fit the schema)."""
        seen = np.asarray(numbers.seen)
        proprio = np.asarray(numbers.proprio, dtype=np.float32)
        if seen.ndim != 2 or not (1 <= seen.shape[0] <= MAX_MAP_SIDE and 1 <= seen.shape[1] <= MAX_MAP_SIDE):
            raise ValueError(f"numbers.seen: shape {seen.shape} is not a map of 1..{MAX_MAP_SIDE} per side")
        if proprio.shape != (PROPRIO_SIZE,):
            raise ValueError(f"numbers.proprio: shape {proprio.shape}, expected ({PROPRIO_SIZE},)")
        height, width = seen.shape
        x, y = int(numbers.x), int(numbers.y)
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"numbers.x, numbers.y: ({x}, {y}) lies outside the {width}x{height} map")
        facing_index = int(np.argmax(proprio[P.FACING_N : P.FACING_W + 1]))
        body = Body(
            x=x,
            y=y,
            lifeforce=_percent(proprio[P.LIFEFORCE]),
            battery=_percent(proprio[P.BATTERY]),
            has_key=bool(proprio[P.HAS_KEY] > 0.5),
            facing=_FACINGS[facing_index],
            opened=int(min(99, max(0, int(numbers.opened)))),
        )
        lock = None
        if proprio[P.FACING_LOCK] > 0.5:
            where = self._lock_in_reach(seen, x, y, facing_index)
            if where is not None:
                a, b, op, shown = (int(v[0]) for v in read_problem(proprio[None, :]))
                lock = LockProblem(x=where[0], y=where[1], a=a, b=b, op=LOCK_OPS[op], shown=shown)
        signals = [
            RegionSignal(
                region=region, confidence=_percent(c), value=int(np.clip(round(float(v)), -9999, 9999))
            )
            for region, c, v in zip(REGIONS, numbers.confidence.tolist(), numbers.value.tolist(), strict=True)
            if c > 0
        ]
        rows = _LEGEND[seen].view(f"S{width}").reshape(-1)
        return Situation(
            version=SITUATION_VERSION,
            npc=int(numbers.npc),
            tick=int(numbers.tick),
            body=body,
            collapse=Collapse(
                region=Region(numbers.region),
                confidence=_percent(numbers.collapse_confidence),
                cells=list(numbers.collapse_cells),
            ),
            signals=signals,
            lock=lock,
            map=SeenMap(width=width, height=height, rows=[row.decode() for row in rows.tolist()]),
            keys=_points(seen, Tile.KEY, x, y),
            doors=_points(seen, Tile.DOOR, x, y),
            locks=_points(seen, Tile.LOCK, x, y),
            food=_points(seen, Tile.FOOD, x, y),
        )

    @staticmethod
    def _lock_in_reach(seen: np.ndarray, x: int, y: int, facing: int) -> tuple[int, int] | None:
        """The lock INTERACT would answer: the faced cell if a lock, else the first one (N, S, E, W)."""
        height, width = seen.shape
        for index in (facing, 0, 1, 2, 3):
            dx, dy = _FACING_STEP[index]
            nx, ny = x + dx, y + dy
            if 0 <= nx < width and 0 <= ny < height and seen[ny, nx] == Tile.LOCK:
                return nx, ny
        return None
