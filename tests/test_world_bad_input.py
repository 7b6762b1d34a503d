"""Bad input to the world raises ValueError naming the field or agent; nothing is clamped silently."""

import numpy as np
import pytest

from world import GridWorld, WorldConfig, parallel_env, stage_config


@pytest.mark.parametrize("stage", [6, -1, "stage9", "volcano", 2.5])
def test_unknown_stage(stage):
    with pytest.raises(ValueError, match="stage"):
        parallel_env(stage=stage)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("height", -4),
        ("width", 0),
        ("n_npcs", 0),
        ("view_radius", 0),
        ("max_steps", 0),
        ("wall_density", 1.5),
        ("food_regrow", -0.1),
        ("lifeforce_decay", -1.0),
        ("respawn_delay", -2),
        ("n_food", -3),
        ("night_view_radius", 9),
        ("fire_drain", float("nan")),
        ("height", 16.5),
    ],
)
def test_invalid_config_value_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"world\.{field}="):
        stage_config(0, **{field: value})


def test_more_npcs_than_free_cells():
    with pytest.raises(ValueError, match=r"world\.n_npcs="):
        stage_config(0, n_npcs=200)


def test_too_many_vaults():
    with pytest.raises(ValueError, match=r"world\.n_vaults="):
        stage_config(4, n_vaults=40)


def test_unknown_field():
    with pytest.raises(ValueError, match=r"world\.gravity: unknown"):
        stage_config(1, gravity=9.8)


def test_stage_names_and_indices_resolve():
    assert stage_config("crowd").stage == 3
    assert stage_config("stage4").stage == 4
    assert stage_config("2").name == "hazards"


def test_pettingzoo_action_out_of_range():
    env = parallel_env(stage=0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions\['npc_1'\]=7: out of range"):
        env.step({"npc_1": 7})
    with pytest.raises(ValueError, match=r"actions\['npc_0'\]=-1"):
        env.step({"npc_0": -1})


def test_pettingzoo_action_wrong_type_and_unknown_agent():
    env = parallel_env(stage=0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"actions\['npc_0'\]=1.5: must be an integer"):
        env.step({"npc_0": 1.5})
    with pytest.raises(ValueError, match=r"actions\['npc_9'\]: unknown agent"):
        env.step({"npc_9": 0})


def test_pettingzoo_action_for_terminated_agent():
    env = parallel_env(stage=0, lifeforce_decay=0.6, n_food=0, food_regrow=0.0, n_npcs=2)
    env.reset(seed=0)
    env.step({"npc_0": 0, "npc_1": 0})
    env.core.lifeforce[0, 1] = 1.0  # keep npc_1 alive so the episode goes on
    env.core.lifeforce[0, 0] = 0.1
    _, _, terms, _, _ = env.step({"npc_0": 0, "npc_1": 0})
    assert terms["npc_0"] and "npc_0" not in env.agents
    with pytest.raises(ValueError, match=r"actions\['npc_0'\]: agent is terminated"):
        env.step({"npc_0": 0})


def test_core_actions_shape_range_dtype():
    world = GridWorld(stage_config(0), num_envs=2, seed=0)
    with pytest.raises(ValueError, match="actions: shape"):
        world.step(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="actions: values must be in 0..6"):
        world.step(np.full((2, 4), 9))
    with pytest.raises(ValueError, match="actions: dtype float64"):
        world.step(np.zeros((2, 4)))


def test_core_bad_batch_and_bad_charge():
    with pytest.raises(ValueError, match="num_envs=0"):
        GridWorld(stage_config(0), num_envs=0)
    world = GridWorld(stage_config(0), num_envs=1)
    with pytest.raises(ValueError, match="cost: must be finite and >= 0"):
        world.charge(np.full((1, 4), -0.1, dtype=np.float32))
    with pytest.raises(ValueError, match="cost: shape"):
        world.charge(np.zeros(4, dtype=np.float32))


def test_bad_render_mode():
    with pytest.raises(ValueError, match="render_mode='ascii'"):
        parallel_env(stage=0, render_mode="ascii")


def test_world_config_validates_on_construction():
    with pytest.raises(ValueError, match=r"world\.width="):
        WorldConfig(width=2)
