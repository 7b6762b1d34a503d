"""Evaluation of brains and the replay round-trip."""

import numpy as np
import pytest
import torch

from agents.brain import Brain, BrainConfig
from agents.layout import SlotLayout
from train.evaluate import _Actor, evaluate_brain, format_table, record_episode
from world import GridWorld, stage_config
from world.replay import load_replay


def test_evaluate_brain_runs_whole_episodes_and_reports_world_stats():
    brain = Brain(BrainConfig(hidden=16), 4)
    stats = evaluate_brain(brain, stage_config(0, max_steps=20), episodes=10, seed=3)
    assert stats["episodes"] >= 10
    assert 0.0 <= stats["success"] <= 1.0 and stats["length"] <= 20
    again = evaluate_brain(brain, stage_config(0, max_steps=20), episodes=10, seed=3)
    assert again == stats  # fixed seed, same numbers
    greedy = evaluate_brain(brain, stage_config(0, max_steps=20), episodes=4, seed=3, greedy=True)
    assert greedy["episodes"] >= 4


def test_a_per_npc_brain_refuses_a_world_with_more_slots():
    with pytest.raises(ValueError, match=r"^world\.n_npcs=16"):
        evaluate_brain(Brain(BrainConfig(hidden=8), 4), stage_config(3), episodes=1)
    shared = Brain(BrainConfig(hidden=8, shared=True), 4)  # one brain drives any number of slots
    assert evaluate_brain(shared, stage_config(3, max_steps=5), episodes=1)["episodes"] >= 1


def test_record_episode_round_trips_through_the_replay_format(tmp_path):
    brain = Brain(BrainConfig(hidden=16), 4)
    config = stage_config(0, max_steps=15)
    path = record_episode(brain, config, tmp_path / "r.npz", seed=1, extra={"note": "test"})
    replay = load_replay(path)
    assert replay.stage == 0 and replay.name == "meadow" and replay.extra == {"note": "test"}
    T = len(replay)
    assert 2 <= T <= 16 and replay.arrays["t"][0] == 0
    assert replay.arrays["tiles"].shape == (T, 16, 16) and replay.arrays["actions"].shape == (T, 4)
    assert np.all(np.diff(replay.arrays["t"]) == 1)
    frame = replay.frame(0)
    assert frame["alive"].all() and frame["stage"] == 0


def test_a_memory_brain_evaluates_and_records_carrying_its_state(tmp_path):
    brain = Brain(BrainConfig(hidden=16, memory="gru"), 4, generator=torch.Generator().manual_seed(0))
    config = stage_config(0, max_steps=20)
    stats = evaluate_brain(brain, config, episodes=8, seed=3)
    assert stats["episodes"] >= 8 and stats == evaluate_brain(brain, config, episodes=8, seed=3)
    world = GridWorld(config, num_envs=2, seed=0)
    actor = _Actor(brain, SlotLayout(False, 2, 4), False, torch.Generator().manual_seed(0))
    world.step(actor(world))
    first = actor.state.clone()
    world.step(actor(world))
    assert first.abs().sum() > 0 and not torch.equal(actor.state, first)  # carried from tick to tick
    replay = load_replay(record_episode(brain, config, tmp_path / "m.npz", seed=1))
    assert len(replay) == 21 and replay.arrays["actions"].shape == (21, 4)


def test_format_table_has_a_row_per_policy():
    table = format_table({"brain": {"success": 0.5, "return": -1.0, "length": 200.0}, "random": {}})
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["policy", "success", "return", "length"]
    assert lines[2].split()[:2] == ["brain", "0.500"] and lines[3].split()[1] == "nan"


def test_eval_uses_sampled_actions_by_default_and_seeded():
    torch.manual_seed(0)
    brain = Brain(BrainConfig(hidden=8), 4)
    a = evaluate_brain(brain, stage_config(0, max_steps=10), episodes=2, seed=5)
    b = evaluate_brain(brain, stage_config(0, max_steps=10), episodes=2, seed=5)
    assert a == b
