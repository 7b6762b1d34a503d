"""MultiprocessWorld: the batch split over worker processes behaves exactly like GridWorld slices."""

import hashlib
import os
import signal

import numpy as np
import pytest

from world import GridWorld, stage_config
from world.multiprocess import MultiprocessWorld, WorkerError

OUTPUTS = ("views", "proprio", "action_mask", "rewards", "terminals", "truncations", "died", "env_done",
           "alive", "lifeforce")


def test_one_worker_matches_a_gridworld_seeded_the_same_way():
    config = stage_config(3, max_steps=40)
    seed = int(np.random.SeedSequence(5).spawn(1)[0].generate_state(1)[0])
    reference = GridWorld(config, num_envs=3, seed=seed)
    rng = np.random.default_rng(0)
    with MultiprocessWorld(config, num_envs=3, seed=5, workers=1) as world:
        for _ in range(100):  # crosses two episode ends (autoreset)
            actions = rng.integers(0, 7, (3, config.n_npcs))
            reference.step(actions)
            world.step(actions)
            for name in OUTPUTS:
                np.testing.assert_array_equal(getattr(world, name), getattr(reference, name), err_msg=name)
        assert world.pop_stats() == pytest.approx(reference.pop_stats())
        frame, expected = world.frame(2), reference.frame(2)
        assert all(np.array_equal(frame[key], expected[key]) for key in expected)


def trace(seed: int) -> str:
    digest = hashlib.sha256()
    rng = np.random.default_rng(1)
    with MultiprocessWorld(stage_config(0), num_envs=6, seed=seed, workers=2) as world:
        for _ in range(300):
            world.step(rng.integers(0, 7, (6, 4)))
            digest.update(world.views.tobytes() + world.rewards.tobytes())
    return digest.hexdigest()


def test_same_seed_same_episodes_across_workers():
    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


def test_stats_aggregate_over_workers_and_charges_reach_every_env():
    config = stage_config(0, max_steps=10)
    with MultiprocessWorld(config, num_envs=5, seed=0, workers=2) as world:
        world.charge(np.full((5, 4), 0.2, dtype=np.float32))
        world.step(np.zeros((5, 4), dtype=np.int64))
        assert world.lifeforce == pytest.approx(1 - 0.2 - config.lifeforce_decay, abs=1e-5)
        for _ in range(9):
            world.step(np.zeros((5, 4), dtype=np.int64))
        assert world.env_done.all()
        stats = world.pop_stats()
        assert stats["episodes"] == 5 and stats["length"] == 10 and stats["success"] == 1.0
        assert world.pop_stats() == {"episodes": 0.0}


def test_bad_input_and_a_dead_worker_give_clear_errors():
    with pytest.raises(ValueError, match="workers=0"):
        MultiprocessWorld(stage_config(0), num_envs=4, workers=0)
    with pytest.raises(ValueError, match="num_envs=1"):
        MultiprocessWorld(stage_config(0), num_envs=1, workers=2)
    world = MultiprocessWorld(stage_config(0), num_envs=4, seed=0, workers=2)
    try:
        with pytest.raises(ValueError, match="actions: values must be in 0..6"):
            world.step(np.full((4, 4), 9))
        with pytest.raises(ValueError, match="env=9"):
            world.frame(9)
        os.kill(world._procs[1].pid, signal.SIGKILL)
        world._procs[1].join()
        with pytest.raises(WorkerError, match="world worker 1 exited"):
            world.step(np.zeros((4, 4), dtype=np.int64))
    finally:
        world.close()
    assert world._procs == []


def test_close_stops_every_worker():
    world = MultiprocessWorld(stage_config(0), num_envs=4, seed=0, workers=2)
    procs = list(world._procs)
    world.close()
    assert not any(proc.is_alive() for proc in procs)
