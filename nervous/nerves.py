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

``NerveConfig(enabled=False)`` (or per-nerve flags) switches them off for ablation. ``apply(...,
keep=mask)`` leaves the actions of masked rows as proposed (a cortex plan's steps: path-searched around
walls and fire, with deliberate turns towards a door or lock that collision avoidance would undo); their
moves are still remembered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from nervous.cells.base import MOVE_OFFSETS, check_senses, neighbours
from world.tiles import BLOCKING, A, T

#: Cells collision avoidance keeps NPCs out of: every blocking tile, and fire.
_UNSAFE = BLOCKING.copy()
_UNSAFE[T.FIRE] = True
#: Cells a move enters (the dead-reckoned position follows it).
_PASSABLE = ~BLOCKING
_DY = np.array([oy for oy, _ in MOVE_OFFSETS])
_DX = np.array([ox for _, ox in MOVE_OFFSETS])
#: int64 [5, 2]: (dy, dx) of each move N, S, E, W, then (0, 0) at index -1: staying put.
_STEP = np.array([*MOVE_OFFSETS, (0, 0)])
#: int64 [8]: by action code, the index of the move in N, S, E, W order, -1 when the action is no move.
#: Looked up with mode="clip": codes below 0 read as code 0 (STAY) and codes above 7 as code 7.
_MOVE_INDEX = np.full(8, -1)
_MOVE_INDEX[[A.NORTH, A.SOUTH, A.EAST, A.WEST]] = np.arange(4)
assert _MOVE_INDEX[0] == _MOVE_INDEX[7] == -1


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


class _Moves(NamedTuple):
    """Where a batch of actions goes."""

    move: np.ndarray
    """bool [M]: the action is a move."""
    index: np.ndarray
    """int64 [M]: the move's index in N, S, E, W order (-1 when not a move)."""
    ahead: np.ndarray
    """uint8 [M]: the tile code of the cell the move enters (the western one when not a move)."""


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
        self._rows = np.arange(num_npcs)

    def apply(
        self, actions: np.ndarray, views: np.ndarray, proprio: np.ndarray, keep: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(final int64[M] actions, overridden bool[M]) from proposed actions and senses; rows where
        keep bool[M] is set are left as proposed."""
        check_senses(views, proprio)
        proposed = np.asarray(actions, dtype=np.int64)
        if proposed.shape != (len(views),):
            raise ValueError(f"actions must be [M={len(views)}], got shape {proposed.shape}")
        if len(views) != self.num_npcs:
            self._resize(len(views))
        cfg = self.config
        around = neighbours(views)  # looked up once for all nerves
        free = np.ones(len(views), dtype=bool) if keep is None else ~np.asarray(keep, dtype=bool)
        final = proposed.copy()
        self.last_overrides = {}
        if cfg.enabled and cfg.exploration:
            final = self._explore(final, views, around, free)
        moves = self._moves(final, around)
        if cfg.enabled and cfg.collision_avoidance:
            final, moves = self._avoid(final, around, moves, free)
        self._remember(moves)
        return final, final != proposed

    def _moves(self, actions: np.ndarray, around: np.ndarray) -> _Moves:
        """Where actions go, given the tile codes around each NPC (``neighbours``)."""
        index = _MOVE_INDEX.take(actions, mode="clip")
        return _Moves(index >= 0, index, around[self._rows, index])

    def _avoid(self, actions: np.ndarray, around: np.ndarray, moves: _Moves,
               free: np.ndarray) -> tuple[np.ndarray, _Moves]:
        veto = moves.move & _UNSAFE[moves.ahead] & free
        out = actions.copy()
        if veto.any():
            pick = _pick(self.rng, ~_UNSAFE[around[veto]])
            out[veto] = np.where(pick >= 0, pick + A.NORTH, A.STAY)
            moves = self._moves(out, around)
        self.last_overrides["collision_avoidance"] = out != actions
        return out, moves

    def _explore(self, actions: np.ndarray, views: np.ndarray, around: np.ndarray,
                 free: np.ndarray) -> np.ndarray:
        m = len(actions)
        no_food = ~np.logical_or.reduce((views == T.FOOD).reshape(m, -1), axis=1)  # = .any(axis=1), unwrapped
        idle_or_move = actions <= A.WEST
        consider = no_food & idle_or_move & (self.rng.random(m) < self.config.explore_prob) & free
        out = actions.copy()
        rows = np.nonzero(consider)[0]
        if len(rows):
            k = self.config.memory_size
            ty = (self.pos[rows, 0, None] + _DY) % k
            tx = (self.pos[rows, 1, None] + _DX) % k
            seen = self.visits[rows[:, None], ty, tx].astype(np.float64)  # [R, 4]
            best = _pick(self.rng, ~_UNSAFE[around[rows]], seen)
            has = best >= 0
            proposed = actions[rows]  # <= WEST: STAY, a move, or below STAY
            is_move = proposed >= A.NORTH
            r = np.arange(len(rows))
            cur = np.where(is_move, seen[r, np.maximum(proposed - A.NORTH, 0)], np.inf)
            better = has & (seen[r, np.maximum(best, 0)] < cur)
            out[rows[better]] = best[better] + A.NORTH
        self.last_overrides["exploration"] = out != actions
        return out

    def _remember(self, moves: _Moves) -> None:
        # the dead-reckoned position follows moves into passable cells; the others step by (0, 0)
        self.pos += _STEP[np.where(_PASSABLE[moves.ahead], moves.index, -1)]
        self.pos %= self.config.memory_size
        cell = (self._rows, self.pos[:, 0], self.pos[:, 1])
        visits = self.visits[cell]
        self.visits[cell] = visits + (visits < 65535)  # count up, saturating
