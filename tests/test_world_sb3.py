"""The flat observation form and PettingZoo's documented route to Stable-Baselines3 (SuperSuit)."""

import numpy as np
import pytest
import supersuit as ss
from pettingzoo.test import parallel_api_test
from stable_baselines3 import PPO
from stable_baselines3.common.utils import set_random_seed

from world import parallel_env
from world.env import flat_layout


@pytest.mark.parametrize("stage", range(6))
def test_flat_observations_pass_the_pettingzoo_api_test(stage):
    parallel_api_test(parallel_env(stage=stage, obs="flat", max_steps=40), num_cycles=60)


def test_a_flat_observation_is_the_dict_one_concatenated():
    flat, nested = parallel_env(stage=2, obs="flat"), parallel_env(stage=2)
    a, _ = flat.reset(seed=3)
    b, _ = nested.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(30):
        layout = flat_layout(flat.config.view_size)
        for agent in b:
            assert flat.observation_space(agent).contains(a[agent])
            np.testing.assert_array_equal(a[agent][layout["view"]], b[agent]["view"].ravel())
            np.testing.assert_array_equal(a[agent][layout["proprio"]], b[agent]["proprio"])
            np.testing.assert_array_equal(a[agent][layout["action_mask"]], b[agent]["action_mask"])
        if not b:
            break
        actions = {agent: int(rng.integers(0, 7)) for agent in nested.agents}
        a, *_ = flat.step(actions)
        b, *_ = nested.step(actions)


def test_an_unknown_observation_form_is_refused_naming_the_argument():
    with pytest.raises(ValueError, match=r"^obs='image': choose one of dict, flat"):
        parallel_env(stage=0, obs="image")


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 2, 3])
def test_supersuit_black_death_to_sb3_ppo_trains_for_a_few_thousand_steps(stage):
    """The recipe in world/env.py's docstring: black_death -> vec env -> concat -> SB3 PPO."""
    env = ss.black_death_v3(parallel_env(stage=stage, obs="flat", max_steps=60))
    vec = ss.pettingzoo_env_to_vec_env_v1(env)
    vec = ss.concat_vec_envs_v1(vec, 2, num_cpus=1, base_class="stable_baselines3")
    n_agents = 2 * len(env.possible_agents)
    assert vec.num_envs == n_agents
    set_random_seed(0)  # not PPO(seed=...): SuperSuit's vec env has no seed() for SB3 to call
    model = PPO("MlpPolicy", vec, n_steps=64, batch_size=128, n_epochs=1, device="cpu", verbose=0)
    model.learn(total_timesteps=3000)
    assert model.num_timesteps >= 3000
    obs = vec.reset()
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (n_agents,) and ((0 <= actions) & (actions < 7)).all()
    vec.close()
