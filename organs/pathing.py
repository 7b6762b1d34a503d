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
    return _search(free, [start], labelled=False)[0]


def labelled_distances(free: np.ndarray, sources: list[Cell]) -> tuple[np.ndarray, np.ndarray]:
    """Steps from the nearest source to every cell, and that source's index (int32 [H, W] each, -1
    unreachable). Sources need not be walkable themselves."""
    dist, label = _search(free, sources, labelled=True)
    assert label is not None
    return dist, label


def _search(free: np.ndarray, sources: list[Cell], labelled: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Multi-source BFS over flat lists with a blocked border (the hot loop of every plan)."""
    height, width = free.shape
    wp = width + 2  # a blocked border: no bounds checks in the loop
    grid = np.full((height + 2, wp), -2, dtype=np.int64)
    grid[1:-1, 1:-1] = np.where(free, -1, -2)
    dist = grid.reshape(-1).tolist()  # -2 blocked, -1 not reached yet, else steps
    label = [-1] * len(dist)
    queue = []
    for index, (sx, sy) in enumerate(sources):
        origin = (sy + 1) * wp + sx + 1
        if 0 <= sx < width and 0 <= sy < height and dist[origin] < 0 and label[origin] < 0:
            dist[origin], label[origin] = 0, index
            queue.append(origin)
    append = queue.append
    if labelled:
        for here in queue:  # a list iterator sees what is appended while it runs: a FIFO queue
            d, lab = dist[here] + 1, label[here]
            n = here - wp
            if dist[n] == -1:
                dist[n], label[n] = d, lab
                append(n)
            n = here + wp
            if dist[n] == -1:
                dist[n], label[n] = d, lab
                append(n)
            n = here + 1
            if dist[n] == -1:
                dist[n], label[n] = d, lab
                append(n)
            n = here - 1
            if dist[n] == -1:
                dist[n], label[n] = d, lab
                append(n)
    else:
        for here in queue:
            d = dist[here] + 1
            n = here - wp
            if dist[n] == -1:
                dist[n] = d
                append(n)
            n = here + wp
            if dist[n] == -1:
                dist[n] = d
                append(n)
            n = here + 1
            if dist[n] == -1:
                dist[n] = d
                append(n)
            n = here - 1
            if dist[n] == -1:
                dist[n] = d
                append(n)
    out = np.maximum(np.array(dist, dtype=np.int32).reshape(height + 2, wp)[1:-1, 1:-1], -1)
    if not labelled:
        return out, None
    return out, np.array(label, dtype=np.int32).reshape(height + 2, wp)[1:-1, 1:-1]


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
