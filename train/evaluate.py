"""Evaluate trained brains on a stage over many episodes, and record an episode replay for the viewer."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from agents.brain import Brain
from agents.layout import SlotLayout
from governor.config import GovernorConfig
from governor.runtime import GovernedReflex, Trails
from nervous.config import NervousConfig
from nervous.lifeforce import LifeforceConfig
from organs.config import CortexConfig
from train.loop import memory_resets
from train.nervous_link import Reflexes, WaveSenses, build_nervous, check_wave_width, close_nervous
from world import GridWorld, WorldConfig
from world.replay import ReplayWriter
from world.rollout import collect_episodes

#: Columns of the evaluation table, in order.
COLUMNS = ("success", "return", "length", "deaths", "food_eaten", "opened")


def check_fits(brain: Brain, config: WorldConfig) -> None:
    """Raise ValueError when the brain cannot drive this world's NPC slots."""
    if not brain.config.shared and config.n_npcs > brain.n_brains:
        raise ValueError(f"world.n_npcs={config.n_npcs}: the checkpoint holds only {brain.n_brains} brains "
                         "(one per NPC slot)")


class _Actor:
    """The brains' actions tick by tick, carrying their memory state between ticks."""

    def __init__(self, brain: Brain, layout: SlotLayout, greedy: bool, generator: torch.Generator,
                 senses: WaveSenses | None = None, reflex: Reflexes | GovernedReflex | None = None) -> None:
        self.brain, self.layout, self.greedy, self.generator = brain, layout, greedy, generator
        self.senses, self.reflex = senses, reflex
        self.state = brain.initial_state(layout.groups, layout.width)

    def __call__(self, world: GridWorld) -> np.ndarray:
        """This tick's actions [B, N] (after the reflexes)."""
        layout = self.layout
        proprio = world.proprio
        if self.senses is not None:
            proprio = np.concatenate([proprio, self.senses(world)], axis=-1)
        codes, proprio = layout.to_groups(world.views), layout.to_groups(proprio)
        mask = layout.to_groups(world.action_mask)
        reset = layout.to_groups(memory_resets(world))
        action, _, _, self.state = self.brain.step(codes, proprio, mask, self.state, reset,
                                                   generator=self.generator, greedy=self.greedy)
        actions = layout.to_slots(action)
        if self.reflex is not None:
            actions, _ = self.reflex(world, actions)
        return actions


def _nervous_parts(brain: Brain, nervous: NervousConfig | None, governor: GovernorConfig | None = None,
                   cortex: CortexConfig | None = None, trails: Trails | None = None
                   ) -> tuple[WaveSenses | None, Reflexes | GovernedReflex | None]:
    """The senses and reflexes the brain was trained with (under governor when given, escalating to the
    cortex when its backend is on, recording into trails when given); ValueError if its input width
    disagrees."""
    check_wave_width(brain.proprio_size, nervous)
    if nervous is not None:
        return build_nervous(nervous, governor, cortex, trails=trails)
    if governor is None:
        return None, None
    return None, GovernedReflex(governor, LifeforceConfig(), trails=trails)


@torch.inference_mode()
def evaluate_brain(brain: Brain, config: WorldConfig, episodes: int = 100, seed: int = 0,
                   greedy: bool = False, num_envs: int = 64,
                   nervous: NervousConfig | None = None,
                   governor: GovernorConfig | None = None,
                   cortex: CortexConfig | None = None, trails: Trails | None = None,
                   world_class: type[GridWorld] = GridWorld) -> dict[str, float]:
    """Run at least `episodes` episodes (whole batches) of a `world_class` world and return the world's
    episode means (with a
    governor, also its ``governor/`` figures: brain calls, CPU, escalations; with the cortex on, its
    ``cortex/`` figures); with trails (a ``TrailRecorder``) the gate decisions and escalations are
    recorded."""
    if episodes < 1:
        raise ValueError(f"episodes={episodes!r}: must be >= 1")
    check_fits(brain, config)
    senses, reflex = _nervous_parts(brain, nervous, governor, cortex, trails)
    try:
        world = world_class(config, num_envs=min(num_envs, episodes), seed=seed, autoreset=True)
        layout = SlotLayout(brain.config.shared, world.num_envs, world.num_npcs)
        generator = torch.Generator().manual_seed(seed)
        result = collect_episodes(world, _Actor(brain, layout, greedy, generator, senses, reflex), episodes)
        if isinstance(reflex, GovernedReflex):
            result.update(reflex.pop_stats())
    finally:
        close_nervous(reflex)
    return result


@torch.inference_mode()
def record_episode(brain: Brain, config: WorldConfig, path: str | os.PathLike, seed: int = 0,
                   greedy: bool = False, extra: dict | None = None,
                   nervous: NervousConfig | None = None, governor: GovernorConfig | None = None,
                  cortex: CortexConfig | None = None) -> Path:
    """Play one episode of one env and save it as a replay file (format: `world.replay`).

    With cells running, each frame carries the NPCs' wave confidences per cell, and with nerves the
    overrides, so the viewer shows ripples and override marks."""
    check_fits(brain, config)
    senses, reflex = _nervous_parts(brain, nervous, governor, cortex)
    try:
        return _record(brain, config, path, seed, greedy, extra, senses, reflex)
    finally:
        close_nervous(reflex)


def _record(brain: Brain, config: WorldConfig, path: str | os.PathLike, seed: int, greedy: bool,
            extra: dict | None, senses: WaveSenses | None, reflex: Reflexes | GovernedReflex | None) -> Path:
    world = GridWorld(config, num_envs=1, seed=seed, autoreset=False)
    layout = SlotLayout(brain.config.shared, 1, world.num_npcs)
    generator = torch.Generator().manual_seed(seed)
    bank = senses.bank if senses is not None else None
    extra = dict(extra or {}) | ({"cells": list(bank.names)} if bank is not None else {})
    regions = list(bank.regions) if bank is not None else None
    writer = ReplayWriter(config.stage, config.name, regions=regions, extra=extra)
    no_action = np.zeros(world.num_npcs, dtype=np.int8)

    def add(actions: np.ndarray, overridden: np.ndarray | None) -> None:
        waves = None
        if senses is not None:
            senses(world)  # this tick's waves (cached: computed once per tick)
            waves = senses.bank.last.confidence
        writer.add(world.frame(0), actions=actions, waves=waves, overrides=overridden)

    actor = _Actor(brain, layout, greedy, generator, senses, reflex)
    while True:
        actions = actor(world)
        add(actions[0], reflex.last_overridden[0] if reflex is not None else None)
        world.step(actions)
        if world.env_done[0]:
            break
    add(no_action, np.zeros(world.num_npcs, dtype=bool) if reflex is not None else None)  # the end
    return writer.save(path)


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per policy, the COLUMNS as columns."""
    header = f"{'policy':<12}" + "".join(f"{c:>12}" for c in COLUMNS)
    lines = [header, "-" * len(header)]
    for name, stats in rows.items():
        lines.append(f"{name:<12}" + "".join(f"{stats.get(c, float('nan')):>12.3f}" for c in COLUMNS))
    return "\n".join(lines)
