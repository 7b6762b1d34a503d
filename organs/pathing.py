"""Breadth-first paths over an NPC's seen map (uint8 tile codes, UNSEEN where it knows nothing).

Coordinates are ``(x, y)`` with ``map[y, x]``. Walkable: every tile that does not block, except fire
(it hurts) and unseen cells (unknown); cells where another NPC stood are walkable (NPCs move on).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from world.tiles import BLOCKING, MOVE_DX, MOVE_DY, Action, Tile

Cell = tuple[int, int]

_WALKABLE = ~BLOCKING.copy()
_WALKABLE[[Tile.FIRE, Tile.UNSEEN]] = False
_WALKABLE[[Tile.NPC, Tile.NPC_SIGNAL]] = True

#: The four moves in (action, dx, dy) form, in the world's N, S, E, W order.
MOVES: tuple[tuple[int, int, int], ...] = tuple(
    (int(a), int(MOVE_DX[a]), int(MOVE_DY[a])) for a in (Action.NORTH, Action.SOUTH, Action.EAST, Action.WEST)
)


def walkable(seen: np.ndarray) -> np.ndarray:
    """Which cells of a seen map a path may enter (bool [H, W])."""
    return _WALKABLE[seen]


def neighbours(cell: Cell, width: int, height: int) -> list[Cell]:
    """The in-bounds 4-neighbours of a cell, in N, S, E, W order."""
    x, y = cell
    return [(x + dx, y + dy) for _, dx, dy in MOVES if 0 <= x + dx < width and 0 <= y + dy < height]


def distances(free: np.ndarray, start: Cell) -> np.ndarray:
    """Steps from start to every cell over walkable cells (int32 [H, W], -1 unreachable)."""
    height, width = free.shape
    dist = np.full((height, width), -1, dtype=np.int32)
    sx, sy = start
    if not (0 <= sx < width and 0 <= sy < height):
        return dist
    flat_free = free.reshape(-1).tolist()
    flat = [-1] * (height * width)
    origin = sy * width + sx
    flat[origin] = 0
    queue = deque([origin])
    while queue:
        here = queue.popleft()
        d = flat[here] + 1
        y, x = divmod(here, width)
        if y > 0 and flat[here - width] < 0 and flat_free[here - width]:
            flat[here - width] = d
            queue.append(here - width)
        if y < height - 1 and flat[here + width] < 0 and flat_free[here + width]:
            flat[here + width] = d
            queue.append(here + width)
        if x < width - 1 and flat[here + 1] < 0 and flat_free[here + 1]:
            flat[here + 1] = d
            queue.append(here + 1)
        if x > 0 and flat[here - 1] < 0 and flat_free[here - 1]:
            flat[here - 1] = d
            queue.append(here - 1)
    dist.reshape(-1)[:] = flat
    return dist


def approach_cells(free: np.ndarray, target: Cell, adjacent: bool) -> list[Cell]:
    """Where to stand for a target: on it, or (adjacent) on a walkable 4-neighbour of it."""
    height, width = free.shape
    if not adjacent:
        return [target]
    return [c for c in neighbours(target, width, height) if free[c[1], c[0]]]


def nearest(dist: np.ndarray, cells: list[Cell]) -> Cell | None:
    """The reachable cell of ``cells`` with the fewest steps in ``dist`` (None if none is reachable)."""
    best, best_d = None, None
    for x, y in cells:
        d = int(dist[y, x])
        if d >= 0 and (best_d is None or d < best_d):
            best, best_d = (x, y), d
    return best


def first_step(free: np.ndarray, start: Cell, goals: list[Cell]) -> int | None:
    """The move action starting a shortest path from start to the nearest goal (STAY if already on one,
    None if no goal is reachable)."""
    if start in goals:
        return int(Action.STAY)
    height, width = free.shape
    # search backwards from the goals, then step downhill from start: one BFS for any number of goals
    dist = np.full((height, width), -1, dtype=np.int32)
    queue: deque[Cell] = deque()
    for gx, gy in goals:
        if 0 <= gx < width and 0 <= gy < height and dist[gy, gx] < 0:
            dist[gy, gx] = 0
            queue.append((gx, gy))
    sx, sy = start
    found = False
    while queue and not found:
        cell = queue.popleft()
        for nx, ny in neighbours(cell, width, height):
            if dist[ny, nx] >= 0:
                continue
            if (nx, ny) == start:
                dist[ny, nx] = dist[cell[1], cell[0]] + 1
                found = True
                break
            if free[ny, nx]:
                dist[ny, nx] = dist[cell[1], cell[0]] + 1
                queue.append((nx, ny))
    if not found:
        return None
    here = int(dist[sy, sx])
    for action, dx, dy in MOVES:
        nx, ny = sx + dx, sy + dy
        if 0 <= nx < width and 0 <= ny < height and dist[ny, nx] == here - 1:
            return action
    return None  # unreachable: a cell at distance d always has a neighbour at d - 1
