"""Nerves: reflexes composed from cells that may override the brain's proposed actions.

``NerveBank(NerveConfig()).apply(actions, views, proprio) -> (final_actions, overridden)`` over flat
int[M] actions, uint8[M, V, V] views and float32[M, P] proprio. ``overridden`` bool[M] marks the
NPCs whose action a nerve changed, so the brain can learn from it (e.g. as an observation feature
or a penalty); ``bank.last_overrides`` holds the mask per nerve. Nerves run in this order:

- ``exploration``: when the smell cell senses no food, with probability ``explore_prob`` an NPC
  that proposed STAY or a move towards a well-visited cell is sent to the least-visited free
  neighbour instead. Visits are counted in a per-NPC ``memory_size`` x ``memory_size`` torus
  around a dead-reckoned position (the world does not tell NPCs where they are).
- ``collision_avoidance`` (last, so it also guards exploration): a move into any blocking cell
  (wall, water, door, lock, another NPC) or into fire is redirected to a random free, fire-free
  neighbour (STAY if there is none). No bump is ever needed: INTERACT reaches water, doors and
  locks in any adjacent cell without turning (`world.core`).

``NerveConfig(enabled=False)`` (or per-nerve flags) switches them off for ablation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nervous.cells.base import MOVE_OFFSETS, check_senses, neighbours, tile_mask
from nervous.cells.proximity import blocked_moves
from world.tiles import BLOCKING, Action, Tile

#: Cells collision avoidance keeps NPCs out of: every blocking tile, and fire.
_UNSAFE = BLOCKING.copy()
_UNSAFE[Tile.FIRE] = True
_DY = np.array([oy for oy, _ in MOVE_OFFSETS])
_DX = np.array([ox for _, ox in MOVE_OFFSETS])


@dataclass
class NerveConfig:
    """Which reflexes run."""

    enabled: bool = True
    """Master switch; False turns every nerve off (ablation)."""
    collision_avoidance: bool = True
    """Redirect moves into blocking cells (walls, water, doors, locks, NPCs) and fire."""
    exploration: bool = True
    """Bias NPCs that smell no food towards less-visited cells."""
    explore_prob: float = 0.2
    """Per-tick probability that the exploration nerve considers an NPC."""
    memory_size: int = 32
    """Side of the per-NPC visit memory (a torus in dead-reckoned coordinates)."""
    seed: int = 0
    """Seed of the nerves' random choices."""


def unsafe_moves(views: np.ndarray) -> np.ndarray:
    """bool [M, 4]: moves (N, S, E, W) collision avoidance vetoes."""
    return _UNSAFE[neighbours(views)]


def free_moves(views: np.ndarray) -> np.ndarray:
    """bool [M, 4]: moves that enter a passable, fire-free cell."""
    return ~blocked_moves(views) & (neighbours(views) != Tile.FIRE)


def _pick(rng: np.random.Generator, allowed: np.ndarray, cost: np.ndarray | None = None) -> np.ndarray:
    """Per row the index of an allowed column with the lowest cost (random tie-break); -1 if none."""
    score = rng.random(allowed.shape) * 0.5 + (0.0 if cost is None else cost)
    score = np.where(allowed, score, np.inf)
    best = score.argmin(axis=1)
    return np.where(allowed.any(axis=1), best, -1)


class NerveBank:
    """The reflexes of one runtime, applied over a batch of NPCs."""

    def __init__(self, config: NerveConfig | None = None) -> None:
        self.config = config or NerveConfig()
        self.rng = np.random.default_rng(self.config.seed)
        self.num_npcs = 0
        self.last_overrides: dict[str, np.ndarray] = {}

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget visit memories: of all NPCs, or of those where mask is True."""
        if mask is None or len(mask) != self.num_npcs:
            self._resize(self.num_npcs)
            return
        self.visits[mask] = 0
        self.pos[mask] = 0

    def _resize(self, num_npcs: int) -> None:
        k = self.config.memory_size
        self.num_npcs = num_npcs
        self.visits = np.zeros((num_npcs, k, k), dtype=np.uint16)
        self.pos = np.zeros((num_npcs, 2), dtype=np.int64)

    def apply(
        self, actions: np.ndarray, views: np.ndarray, proprio: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(final int64[M] actions, overridden bool[M]) from proposed actions and senses."""
        check_senses(views, proprio)
        proposed = np.asarray(actions, dtype=np.int64)
        if proposed.shape != (len(views),):
            raise ValueError(f"actions must be [M={len(views)}], got shape {proposed.shape}")
        if len(views) != self.num_npcs:
            self._resize(len(views))
        cfg = self.config
        final = proposed.copy()
        self.last_overrides = {}
        if cfg.enabled and cfg.exploration:
            final = self._explore(final, views)
        if cfg.enabled and cfg.collision_avoidance:
            final = self._avoid(final, views)
        self._remember(final, views)
        return final, final != proposed

    def _avoid(self, actions: np.ndarray, views: np.ndarray) -> np.ndarray:
        move = (actions >= Action.NORTH) & (actions <= Action.WEST)
        unsafe = unsafe_moves(views)
        rows = np.nonzero(move)[0]
        veto = np.zeros(len(actions), dtype=bool)
        veto[rows] = unsafe[rows, actions[rows] - Action.NORTH]
        out = actions.copy()
        if veto.any():
            pick = _pick(self.rng, free_moves(views[veto]))
            out[veto] = np.where(pick >= 0, pick + Action.NORTH, Action.STAY)
        self.last_overrides["collision_avoidance"] = out != actions
        return out

    def _explore(self, actions: np.ndarray, views: np.ndarray) -> np.ndarray:
        m = len(actions)
        no_food = ~tile_mask(views, Tile.FOOD).reshape(m, -1).any(axis=1)
        idle_or_move = actions <= Action.WEST
        consider = no_food & idle_or_move & (self.rng.random(m) < self.config.explore_prob)
        out = actions.copy()
        rows = np.nonzero(consider)[0]
        if len(rows):
            k = self.config.memory_size
            ty = (self.pos[rows, 0, None] + _DY) % k
            tx = (self.pos[rows, 1, None] + _DX) % k
            seen = self.visits[rows[:, None], ty, tx].astype(np.float64)  # [R, 4]
            free = free_moves(views[rows])
            best = _pick(self.rng, free, seen)
            has = best >= 0
            proposed = actions[rows]
            is_move = proposed >= Action.NORTH
            cur = np.where(is_move, seen[np.arange(len(rows)), np.clip(proposed - 1, 0, 3)], np.inf)
            better = has & (seen[np.arange(len(rows)), np.maximum(best, 0)] < cur)
            out[rows[better]] = best[better] + Action.NORTH
        self.last_overrides["exploration"] = out != actions
        return out

    def _remember(self, actions: np.ndarray, views: np.ndarray) -> None:
        move = (actions >= Action.NORTH) & (actions <= Action.WEST)
        j = np.clip(actions - Action.NORTH, 0, 3)
        moved = move & ~blocked_moves(views)[np.arange(len(actions)), j]
        k = self.config.memory_size
        self.pos[moved, 0] = (self.pos[moved, 0] + _DY[j[moved]]) % k
        self.pos[moved, 1] = (self.pos[moved, 1] + _DX[j[moved]]) % k
        rows = np.arange(len(actions))
        visits = self.visits[rows, self.pos[:, 0], self.pos[:, 1]]
        self.visits[rows, self.pos[:, 0], self.pos[:, 1]] = np.minimum(visits.astype(np.int64) + 1, 65535)
