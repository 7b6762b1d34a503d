"""Scripted baselines: a uniform-random policy and a local-view heuristic, both over flat batches.

The heuristic sees exactly what a brain sees (view, proprio, action mask) and, per NPC:
  1. interacts when that pays: food or a key underfoot, a charger when the battery is low, water in
     reach when hungry, a door in reach with a key, a lock in reach whose display shows the answer
     (it does the arithmetic; while the display is wrong it waits);
  2. otherwise walks down a BFS distance field (computed inside the view, fire and blocking cells
     avoided) towards the nearest wanted cell: food, a key (none held), a door (key held), a lock,
     a charger (battery low), water (hungry, no food seen);
  3. otherwise takes a random safe step (a random walk).
It is the classic scripted forager: greedy on what it sees, no memory, no exploration strategy. A
brain sees the same inputs (its facing is in proprio), so it can learn to explore better.
"""

from __future__ import annotations

import numpy as np

from world.tiles import BLOCKING, LOCK_OPS, NUM_ACTIONS, Action, Proprio, Tile

_INF = np.int16(999)
#: Tiles that stop the heuristic's BFS (blocking, plus fire and what night hides).
_WALKABLE = ~BLOCKING.copy()
_WALKABLE[[Tile.FIRE, Tile.UNSEEN]] = False


def random_policy(action_mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform over the whole action space (masks ignored): the baseline a stage must beat."""
    return rng.integers(0, NUM_ACTIONS, action_mask.shape[:-1])


def distance_field(views: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Steps from every view cell to the nearest target cell, walking walkable cells (int16 [M, V, V])."""
    walkable = _WALKABLE[views]
    dist = np.where(targets, np.int16(0), _INF).astype(np.int16)
    V = views.shape[-1]
    for _ in range(2 * V):
        best = dist.copy()
        np.minimum(best[:, 1:, :], dist[:, :-1, :] + 1, out=best[:, 1:, :])
        np.minimum(best[:, :-1, :], dist[:, 1:, :] + 1, out=best[:, :-1, :])
        np.minimum(best[:, :, 1:], dist[:, :, :-1] + 1, out=best[:, :, 1:])
        np.minimum(best[:, :, :-1], dist[:, :, 1:] + 1, out=best[:, :, :-1])
        best = np.where(walkable | targets, best, _INF)
        if np.array_equal(best, dist):
            break
        dist = best
    return dist


def lock_answer_shown(proprio: np.ndarray) -> np.ndarray:
    """Whether the lock in reach displays its right answer (bool [M]); False with no lock in reach."""
    a = np.rint(proprio[:, Proprio.LOCK_A] * 10)
    b = np.rint(proprio[:, Proprio.LOCK_B] * 10)
    op = np.rint(proprio[:, Proprio.LOCK_OP] * (len(LOCK_OPS) - 1))
    answer = np.where(op == 0, a + b, np.where(op == 1, a - b, a * b))
    shown = np.rint(proprio[:, Proprio.LOCK_SHOWN] * 100)
    return (proprio[:, Proprio.FACING_LOCK] > 0.5) & (shown == answer)


def heuristic_policy(views: np.ndarray, proprio: np.ndarray, action_mask: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Scripted actions for flat batches: views [M, V, V], proprio [M, P], masks [M, A] -> int64 [M]."""
    M, V, _ = views.shape
    r = V // 2
    life = proprio[:, Proprio.LIFEFORCE]
    battery = proprio[:, Proprio.BATTERY]
    has_key = proprio[:, Proprio.HAS_KEY] > 0.5
    own = views[:, r, r]
    neighbours = np.stack([views[:, r - 1, r], views[:, r + 1, r], views[:, r, r + 1], views[:, r, r - 1]], 1)
    lock_near = proprio[:, Proprio.FACING_LOCK] > 0.5
    hungry = life < 0.85
    low_battery = battery < 0.35

    # 1. interactions that pay now
    can = action_mask[:, Action.INTERACT]
    near = lambda tile: (neighbours == tile).any(axis=1)  # noqa: E731
    interact = can & (
        (own == Tile.FOOD) | ((own == Tile.KEY) & ~has_key) | ((own == Tile.CHARGER) & (battery < 0.9))
        | (near(Tile.WATER) & hungry & ~lock_near) | (near(Tile.DOOR) & has_key & ~lock_near)
        | lock_answer_shown(proprio))
    wait_at_lock = lock_near & ~interact

    # 2. walk towards the nearest wanted cell
    wanted = views == Tile.FOOD
    wanted |= (views == Tile.KEY) & ~has_key[:, None, None]
    wanted |= (views == Tile.DOOR) & has_key[:, None, None]
    wanted |= views == Tile.LOCK
    wanted |= (views == Tile.CHARGER) & low_battery[:, None, None]
    no_food = ~(views == Tile.FOOD).any(axis=(1, 2))
    wanted |= (views == Tile.WATER) & (hungry & no_food)[:, None, None]
    wanted[:, r, r] = False
    dist = distance_field(views, wanted)
    step_dist = np.stack([dist[:, r - 1, r], dist[:, r + 1, r], dist[:, r, r + 1], dist[:, r, r - 1]], 1)
    safe = action_mask[:, Action.NORTH:Action.WEST + 1] & (neighbours != Tile.FIRE)
    step_dist = np.where(safe | (step_dist == 0), step_dist, _INF)
    # a target next door that blocks (water, door, lock) is reached by interacting, not moving
    step_dist = np.where(BLOCKING[neighbours] & (step_dist == 0), _INF, step_dist)
    best = step_dist.min(axis=1)
    ties = rng.random((M, 4)) * 0.5
    seek = np.argmin(step_dist + ties, axis=1) + Action.NORTH
    seeking = best < _INF

    # 3. explore: a random safe step (a random walk; no heading kept, no memory)
    scores = np.where(safe, rng.random((M, 4)), -1.0)
    explore = np.where(safe.any(axis=1), np.argmax(scores, axis=1) + Action.NORTH, Action.STAY)

    actions = np.where(seeking, seek, explore)
    actions = np.where(wait_at_lock, Action.STAY, actions)
    actions = np.where(interact, Action.INTERACT, actions)
    return actions.astype(np.int64)
