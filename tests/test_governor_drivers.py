"""The governor's brain driver: frozen brains, a memory brain's state carried as in eval."""

from __future__ import annotations

import numpy as np
import torch

from agents.brain import Brain, BrainConfig
from agents.layout import SlotLayout
from governor.drivers import BrainDriver
from nervous.config import NervousConfig
from train.evaluate import _Actor
from world import GridWorld, stage_config
from world.tiles import PROPRIO_SIZE


def _brains(memory: str) -> Brain:
    torch.manual_seed(0)
    brain = Brain(BrainConfig(hidden=16, memory=memory), 16, proprio_size=PROPRIO_SIZE)
    brain.requires_grad_(False)
    return brain


def test_a_memory_brain_drives_with_its_state_carried_as_eval_carries_it() -> None:
    brain = _brains("gru")
    nervous = NervousConfig(cells=False)
    driver = BrainDriver(brain, nervous, seed=3)
    worlds = [GridWorld(stage_config(1), num_envs=2, seed=5) for _ in range(2)]
    for world in worlds:
        world.reset(seed=5)
    layout = SlotLayout(False, 2, worlds[1].num_npcs)
    actor = _Actor(brain, layout, greedy=False, generator=torch.Generator().manual_seed(3))
    driven, acted, states = [], [], []
    for _ in range(30):
        driven.append(driver(worlds[0]))
        acted.append(actor(worlds[1]))
        states.append(float(driver._state.abs().sum()))
        for world, actions in zip(worlds, (driven[-1], acted[-1]), strict=True):
            world.step(actions)
    np.testing.assert_array_equal(np.stack(driven), np.stack(acted))  # same draws, same memory, same world
    assert states[0] > 0 and len(set(states)) > 1  # the state moves from tick to tick


def test_a_memoryless_brain_still_drives() -> None:
    world = GridWorld(stage_config(0), num_envs=2, seed=1)
    world.reset(seed=1)
    actions = BrainDriver(_brains("none"), NervousConfig(cells=False), seed=0)(world)
    assert actions.shape == (2, world.num_npcs) and actions.dtype == np.int64
    assert ((actions >= 0) & (actions < world.action_mask.shape[-1])).all()
