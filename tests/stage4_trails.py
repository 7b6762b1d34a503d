"""A stage-4 run recorded into trails: the heuristic governor escalating to the nyx engine (test helper)."""

from __future__ import annotations

import numpy as np

from governor.config import GovernorConfig
from governor.runtime import GovernedReflex
from nervous.cells import CellBank
from nervous.lifeforce import LifeforceConfig
from organs.config import CortexConfig
from organs.link import CortexLink
from organs.trails.recorder import TrailRecorder
from world import GridWorld, stage_config


def record_stage4(recorder: TrailRecorder, ticks: int = 400) -> tuple[GridWorld, CortexLink, GovernedReflex]:
    """Drive 4 stage-4 envs (seed 2) with random brain actions for ticks, recording into recorder."""
    bank = CellBank()
    link = CortexLink(CortexConfig(backend="engine"), trails=recorder)
    world = GridWorld(stage_config(4), num_envs=4, seed=2)
    governed = GovernedReflex(GovernorConfig(kind="heuristic"), LifeforceConfig(), cells=bank, escalator=link,
                              trails=recorder)
    m = world.num_envs * world.num_npcs
    rng = np.random.default_rng(0)
    for _ in range(ticks):
        bank.step(world.views.reshape(m, world.V, world.V), world.proprio.reshape(m, -1), world.ticks)
        final, _ = governed(world, rng.integers(0, 5, size=(world.num_envs, world.num_npcs)))
        world.step(final)
    recorder.flush()
    return world, link, governed
