"""Banks give every NPC the same results whatever the batch, and the cell bank matches each cell's step."""

from collections.abc import Iterator

import numpy as np
import pytest

from nervous.cells import CellBank, make_cell
from nervous.nerves import NerveBank, NerveConfig
from world import GridWorld, stage_config


def world_senses(
    stage: int, ticks: int, seed: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per tick (views uint8[M, V, V], proprio float32[M, P], actions int64[M]) of random play."""
    world = GridWorld(stage_config(stage, n_npcs=16), num_envs=2, seed=seed)
    rng = np.random.default_rng(seed)
    b, n, side = world.num_envs, world.num_npcs, world.views.shape[-1]
    for _ in range(ticks):
        actions = rng.integers(0, 7, (b, n))
        views, proprio = world.views.reshape(-1, side, side), world.proprio.reshape(b * n, -1)
        yield views.copy(), proprio.copy(), actions.ravel()
        world.step(actions)


@pytest.mark.parametrize("stage", [3, 5])
def test_cell_bank_matches_each_cell_and_single_rows(stage: int) -> None:
    bank = CellBank()
    cells = [make_cell(name) for name in bank.names]
    singles = [CellBank() for _ in range(3)]  # M = 1 runtimes of rows 0..2
    for tick, (views, proprio, _) in enumerate(world_senses(stage, 40)):
        waves = bank.step(views, proprio, tick)
        for i, cell in enumerate(cells):
            conf, value = cell.step(views, proprio, tick)
            np.testing.assert_array_equal(conf, waves.confidence[:, i])
            np.testing.assert_array_equal(value, waves.value[:, i])
        for row, single in enumerate(singles):
            one = single.step(views[row : row + 1], proprio[row : row + 1], tick)
            np.testing.assert_array_equal(one.confidence, waves.confidence[row : row + 1])
            np.testing.assert_array_equal(one.value, waves.value[row : row + 1])
            np.testing.assert_array_equal(one.features(), waves.features()[row : row + 1])


def test_visit_memory_is_the_same_batched_and_per_row() -> None:
    config = NerveConfig(enabled=False)  # no random overrides: every row's memory follows its own moves
    bank = NerveBank(config)
    singles = [NerveBank(config) for _ in range(3)]
    for views, proprio, actions in world_senses(4, 60, seed=1):
        final, overridden = bank.apply(actions, views, proprio)
        np.testing.assert_array_equal(final, actions)
        assert not overridden.any()
        for row, single in enumerate(singles):
            single.apply(actions[row : row + 1], views[row : row + 1], proprio[row : row + 1])
    for row, single in enumerate(singles):
        np.testing.assert_array_equal(single.pos[0], bank.pos[row])
        np.testing.assert_array_equal(single.visits[0], bank.visits[row])
    assert bank.visits.sum() == 60 * len(actions)
