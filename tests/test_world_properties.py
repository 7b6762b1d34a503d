"""Invariants of the batched core under arbitrary action sequences (hypothesis)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from world import GridWorld, stage_config
from world.tiles import BLOCKING, Tile

STAGE = st.sampled_from([0, 1, 2, 3, 4, 5])


def action_sequences(n_steps: int = 60):
    return st.integers(0, 2**31 - 1).map(lambda seed: np.random.default_rng(seed))


@settings(max_examples=25, deadline=None)
@given(stage=STAGE, seed=st.integers(0, 10_000), rng=action_sequences())
def test_no_npc_inside_a_blocking_cell_and_no_two_share_one(stage, seed, rng):
    world = GridWorld(stage_config(stage), num_envs=3, seed=seed)
    for _ in range(60):
        world.step(rng.integers(0, 7, (world.num_envs, world.num_npcs)))
        b = np.broadcast_to(np.arange(world.num_envs)[:, None], world.alive.shape)
        tiles = world.tiles[b, world.pos_y, world.pos_x][world.alive]
        assert not BLOCKING[tiles].any()
        flat = (b * world.cells + world.pos_y * world.Wp + world.pos_x)[world.alive]
        assert len(np.unique(flat)) == len(flat)


@settings(max_examples=25, deadline=None)
@given(
    stage=STAGE,
    seed=st.integers(0, 10_000),
    rng=action_sequences(),
    costs=arrays(np.float32, (2,), elements=st.floats(0, 0.5, width=32)),
)
def test_lifeforce_and_battery_stay_in_bounds(stage, seed, rng, costs):
    world = GridWorld(stage_config(stage), num_envs=2, seed=seed)
    for _ in range(60):
        world.charge(np.broadcast_to(costs[:, None], (2, world.num_npcs)))
        world.step(rng.integers(0, 7, (2, world.num_npcs)))
        assert (world.lifeforce >= 0).all() and (world.lifeforce <= 1).all()
        assert (world.battery >= 0).all() and (world.battery <= 1).all()
        assert (world.lifeforce[~world.alive] == 0).all()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), rng=action_sequences())
def test_keys_are_conserved(seed, rng):
    config = stage_config(4, max_steps=10_000)  # no episode reset inside the test
    world = GridWorld(config, num_envs=2, seed=seed)
    used = np.zeros(2, dtype=np.int64)
    for _ in range(150):
        doors_before = (world.tiles == Tile.DOOR).sum(axis=(1, 2))
        world.step(rng.choice([1, 2, 3, 4, 5, 5, 5], (2, world.num_npcs)))
        used += doors_before - (world.tiles == Tile.DOOR).sum(axis=(1, 2))
        on_map = (world.tiles == Tile.KEY).sum(axis=(1, 2))
        held = world.has_key.sum(axis=1)
        assert (on_map + held + used == config.n_keys).all()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), rng=action_sequences())
def test_dead_npcs_do_not_act(seed, rng):
    world = GridWorld(stage_config(2, lifeforce_decay=0.05, max_steps=10_000), num_envs=2, seed=seed)
    for _ in range(40):
        dead = ~world.alive
        y, x = world.pos_y.copy(), world.pos_x.copy()
        tiles = world.tiles.copy()
        key = world.has_key.copy()
        world.step(rng.integers(0, 7, (2, world.num_npcs)))
        dead &= ~world.env_done[:, None]  # an extinct env was reset: its slots start afresh
        assert (world.pos_y[dead] == y[dead]).all() and (world.pos_x[dead] == x[dead]).all()
        assert (world.has_key[dead] == key[dead]).all()
        assert (world.rewards[dead] == 0).all()
        assert not world.signalling[dead].any()
        # a dead NPC's cell is untouched by it (only regrowth may add food elsewhere)
        b = np.nonzero(dead)[0]
        changed = world.tiles[b, y[dead], x[dead]] != tiles[b, y[dead], x[dead]]
        assert not (changed & (world.tiles[b, y[dead], x[dead]] != Tile.FOOD)).any()
        # masks of the dead allow only STAY
        assert (world.action_mask[~world.alive][:, 1:] == 0).all()
