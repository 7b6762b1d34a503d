"""The brains a governor schedules in the in-process runtime: a checkpoint's frozen PPO brains, or the script.

A ``Driver`` proposes every NPC's action for the world's current tick (the brains' batched forward, or
the scripted heuristic), and runs the cells the governor reads (``bank``: collapse events and waves)
once per tick before the governed reflex sees them. The governor decides which proposals are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from agents.brain import Brain
from agents.layout import SlotLayout
from nervous.cells import CellBank
from nervous.config import NervousConfig
from train.loop import memory_resets
from train.nervous_link import WaveSenses, check_wave_width
from world import GridWorld
from world.heuristics import heuristic_policy


class Driver(Protocol):
    """Proposes every NPC's action for a world tick; owns the cell bank the governor reads."""

    name: str
    bank: CellBank

    def __call__(self, world: GridWorld) -> np.ndarray:
        """int64 [B, N]: the brains' proposals for this tick (cells stepped for it)."""
        ...


@dataclass
class ScriptedDriver:
    """The scripted heuristic (``world.heuristics``) as every NPC's brain; cells run for the governor."""

    bank: CellBank
    seed: int = 0
    name: str = "heuristic script"

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def __call__(self, world: GridWorld) -> np.ndarray:
        """The script's actions for this tick."""
        m = world.num_envs * world.num_npcs
        views, proprio = world.views.reshape(m, world.V, world.V), world.proprio.reshape(m, -1)
        self.bank.step(views, proprio, world.ticks)
        actions = heuristic_policy(views, proprio, world.action_mask.reshape(m, -1), self.rng)
        return np.asarray(actions, dtype=np.int64).reshape(world.num_envs, world.num_npcs)


class BrainDriver:
    """Frozen PPO brains (sampled actions), with the wave senses they were trained with.

    A memory brain (``brain.memory=gru``) carries its state from tick to tick, zeroed where an NPC is
    dead or its episode begins (``train.loop.memory_resets``), as in training and eval: its forward runs
    for every NPC at every tick, whether or not the governor uses the proposal."""

    def __init__(self, brain: Brain, nervous: NervousConfig, seed: int = 0, name: str = "brains") -> None:
        self.brain, self.name = brain, name
        check_wave_width(brain.proprio_size, nervous)
        self.senses = WaveSenses(CellBank(nervous.cell)) if nervous.cells else None
        self.bank = self.senses.bank if self.senses is not None else CellBank(nervous.cell)
        self.generator = torch.Generator().manual_seed(seed)
        self._layout: SlotLayout | None = None
        self._shape: tuple[int, int] | None = None
        self._state: torch.Tensor | None = None

    @torch.inference_mode()
    def __call__(self, world: GridWorld) -> np.ndarray:
        """The brains' sampled actions for this tick."""
        if self._layout is None or self._shape != (world.num_envs, world.num_npcs):
            self._layout = SlotLayout(self.brain.config.shared, world.num_envs, world.num_npcs)
            self._shape = (world.num_envs, world.num_npcs)
            self._state = self.brain.initial_state(self._layout.groups, self._layout.width)
        layout, state = self._layout, self._state
        assert state is not None
        proprio = world.proprio
        if self.senses is not None:
            proprio = np.concatenate([proprio, self.senses(world)], axis=-1)
        else:
            m = world.num_envs * world.num_npcs
            self.bank.step(world.views.reshape(m, world.V, world.V), world.proprio.reshape(m, -1),
                           world.ticks)
        action, _, _, self._state = self.brain.step(
            layout.to_groups(world.views), layout.to_groups(proprio), layout.to_groups(world.action_mask),
            state, layout.to_groups(memory_resets(world)), generator=self.generator)
        return np.asarray(layout.to_slots(action), dtype=np.int64)
