"""The PettingZoo wrapper passes the official API, seed and render tests on every stage."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test, render_test
from pettingzoo.utils.conversions import parallel_to_aec

from world import parallel_env
from world.tiles import NUM_ACTIONS

STAGES = range(6)


@pytest.mark.parametrize("stage", STAGES)
def test_parallel_api(stage):
    parallel_api_test(parallel_env(stage=stage), num_cycles=300)


@pytest.mark.parametrize("stage", STAGES)
def test_parallel_seed(stage):
    parallel_seed_test(lambda: parallel_env(stage=stage), num_cycles=100)


@pytest.mark.parametrize("stage", STAGES)
def test_render(stage):
    render_test(lambda render_mode=None: parallel_to_aec(parallel_env(stage=stage, render_mode=render_mode)))


@pytest.mark.parametrize("stage", [0, 5])
def test_rgb_array_is_hwc_uint8(stage):
    env = parallel_env(stage=stage, render_mode="rgb_array")
    env.reset(seed=1)
    image = env.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] == env.config.height * 8 and image.shape[1] == env.config.width * 8


def test_spaces_are_the_same_object_every_call():
    env = parallel_env(stage=2)
    assert env.observation_space("npc_1") is env.observation_space("npc_1")
    assert env.action_space("npc_0") is env.action_space("npc_0")
    assert env.action_space("npc_0").n == NUM_ACTIONS


def test_death_is_final_without_respawn():
    env = parallel_env(stage=0, lifeforce_decay=0.2, n_food=0, food_regrow=0.0)
    env.reset(seed=0)
    terminated = set()
    for _ in range(10):
        if not env.agents:
            break
        _, _, terms, _, infos = env.step({a: 0 for a in env.agents})
        terminated |= {a for a, t in terms.items() if t}
        assert all(infos[a]["died"] for a in terms if terms[a])
    assert terminated == set(env.possible_agents)
    assert env.agents == []
    assert env.step({}) == ({}, {}, {}, {}, {})  # nothing happens once the episode is over
    with pytest.raises(ValueError, match=r"actions\['npc_0'\]: the episode is over \(no agents left\)"):
        env.step({"npc_0": 0})


def test_respawn_keeps_agent_with_dead_flag():
    env = parallel_env(stage=3, lifeforce_decay=0.3, respawn_delay=2, n_food=0, food_regrow=0.0)
    env.reset(seed=0)
    saw_dead = saw_back = False
    for _ in range(12):
        _, _, terms, truncs, infos = env.step({a: 0 for a in env.agents})
        assert not any(terms.values())
        assert env.agents == env.possible_agents
        if infos["npc_0"]["dead"]:
            saw_dead = True
        elif saw_dead:
            saw_back = infos["npc_0"]["lifeforce"] > 0
    assert saw_dead and saw_back
