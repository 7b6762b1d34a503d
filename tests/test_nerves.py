"""Nerves: collision avoidance and exploration on hand-made senses, and the ablation switch."""

import numpy as np
import pytest

from nervous.nerves import NerveBank, NerveConfig
from tests.nervous_senses import at, senses
from world.tiles import Action, Proprio, Tile

N, S, E, W = Action.NORTH, Action.SOUTH, Action.EAST, Action.WEST


def avoid_only(seed: int = 0) -> NerveBank:
    return NerveBank(NerveConfig(exploration=False, seed=seed))


@pytest.mark.parametrize("tile", [Tile.WALL, Tile.NPC, Tile.NPC_SIGNAL, Tile.FIRE])
def test_collision_avoidance_redirects_moves_into_hard_obstacles(tile: Tile) -> None:
    views, proprio = senses(1)
    views[0][at(7, -1, 0)] = tile
    final, overridden = avoid_only().apply(np.array([N]), views, proprio)
    assert overridden[0] and final[0] in (S, E, W)


def test_redirect_picks_only_free_safe_moves_or_stays() -> None:
    views, proprio = senses(2)
    for dy, dx in ((-1, 0), (0, 1), (0, -1)):
        views[0][at(7, dy, dx)] = Tile.WALL
    views[0][at(7, 1, 0)] = Tile.FIRE  # south is fire: nothing safe left
    views[1][at(7, -1, 0)] = Tile.WALL
    views[1][at(7, 0, 1)] = Tile.WATER
    views[1][at(7, 0, -1)] = Tile.FIRE  # only south is safe
    final, overridden = avoid_only().apply(np.array([N, N]), views, proprio)
    np.testing.assert_array_equal(final, [Action.STAY, S])
    assert overridden.all()


def test_moves_into_water_doors_and_locks_are_vetoed_whatever_the_facing() -> None:
    views, proprio = senses(3)
    for i, tile in enumerate((Tile.WATER, Tile.DOOR, Tile.LOCK)):
        views[i][at(7, 0, 1)] = tile  # east
    proprio[1, Proprio.FACING_E] = 1.0
    final, overridden = avoid_only().apply(np.array([E, E, E]), views, proprio)
    assert (final != E).all() and overridden.all()


def test_kept_rows_stand_as_proposed_and_the_others_are_still_guarded() -> None:
    views, proprio = senses(2)
    views[:, *at(7, 0, 1)] = Tile.LOCK  # east of both: a plan turns towards it by bumping
    bank = NerveBank(NerveConfig(explore_prob=1.0))  # exploration would consider every row, every tick
    final, overridden = bank.apply(np.array([E, E]), views, proprio, keep=np.array([True, False]))
    assert final[0] == E and not overridden[0]
    assert final[1] != E and overridden[1]
    final, overridden = bank.apply(np.array([Action.STAY, Action.STAY]), views, proprio,
                                   keep=np.array([True, True]))
    np.testing.assert_array_equal(final, [Action.STAY, Action.STAY])  # a plan's wait is not explored away
    assert not overridden.any()


def test_safe_moves_and_non_moves_pass_untouched() -> None:
    views, proprio = senses(4)
    views[:, *at(7, -1, 0)] = Tile.WALL
    actions = np.array([S, Action.INTERACT, Action.SIGNAL, Action.STAY])
    final, overridden = avoid_only().apply(actions, views, proprio)
    np.testing.assert_array_equal(final, actions)
    assert not overridden.any()


def test_switched_off_nerves_change_nothing() -> None:
    views, proprio = senses(3)
    views[:, *at(7, -1, 0)] = Tile.WALL
    bank = NerveBank(NerveConfig(enabled=False, explore_prob=1.0))
    actions = np.array([N, N, Action.STAY])
    final, overridden = bank.apply(actions, views, proprio)
    np.testing.assert_array_equal(final, actions)
    assert not overridden.any()


def test_exploration_covers_more_ground_than_staying() -> None:
    views, proprio = senses(1, side=9)
    bank = NerveBank(NerveConfig(explore_prob=1.0, seed=3))
    for _ in range(30):
        final, overridden = bank.apply(np.array([Action.STAY]), views, proprio)
        assert overridden[0] and final[0] in (N, S, E, W)
    assert (bank.visits[0] > 0).sum() >= 25  # mostly new cells, not back and forth


def test_exploration_leaves_npcs_that_smell_food_alone() -> None:
    views, proprio = senses(2)
    views[0][at(7, 3, 3)] = Tile.FOOD
    bank = NerveBank(NerveConfig(explore_prob=1.0))
    final, overridden = bank.apply(np.array([Action.STAY, Action.STAY]), views, proprio)
    assert final[0] == Action.STAY and not overridden[0]
    assert overridden[1] and bank.last_overrides["exploration"][1]


def test_exploration_does_not_redirect_into_walls() -> None:
    views, proprio = senses(64)
    rng = np.random.default_rng(0)
    views[:] = np.where(rng.random(views.shape) < 0.5, Tile.WALL, Tile.EMPTY).astype(np.uint8)
    views[:, 3, 3] = Tile.EMPTY
    bank = NerveBank(NerveConfig(explore_prob=1.0))
    final, _ = bank.apply(np.zeros(64, dtype=np.int64), views, proprio)
    moved = (final >= N) & (final <= W)
    r = np.arange(64)
    dy = np.array([0, -1, 1, 0, 0, 0, 0])[final]
    dx = np.array([0, 0, 0, 1, -1, 0, 0])[final]
    assert np.all(views[r, 3 + dy, 3 + dx][moved] == Tile.EMPTY)


def test_bad_action_shape_is_rejected() -> None:
    views, proprio = senses(2)
    with pytest.raises(ValueError, match="actions"):
        NerveBank().apply(np.zeros(3, dtype=np.int64), views, proprio)
