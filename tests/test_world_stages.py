"""The stage registry: Hydra YAML equals the Python presets, and each stage adds to the last."""

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from world import STAGES, GridWorld, stage_config

CONF = Path(__file__).resolve().parents[1] / "conf" / "world"


@pytest.mark.parametrize("stage", range(6))
def test_yaml_matches_registry(stage):
    data = yaml.safe_load((CONF / f"stage{stage}.yaml").read_text())
    assert data == asdict(STAGES[stage])


def test_each_stage_adds_to_the_last():
    s = STAGES
    assert s[0].height == 16 and s[0].n_npcs == 4 and s[0].n_food > 0
    assert s[1].height == 24 and (s[1].wall_density > 0 or s[1].wall_segments > 0)
    assert s[2].n_fire > 0 and s[2].n_water > 0 and s[2].n_chargers > 0 and s[2].battery_drain > 0
    assert s[3].height == 32 and s[3].n_npcs == 16 and s[3].signal_radius > 0
    # scarcer food: less per NPC, at reset and in regrowth
    assert s[3].n_food / s[3].n_npcs < s[2].n_food / s[2].n_npcs
    assert s[3].food_regrow / s[3].n_npcs < s[2].food_regrow / s[2].n_npcs
    assert s[4].n_vaults > 0 and 0 < s[4].lock_fraction < 1 and s[4].n_keys > 0
    assert s[5].height == 64 and s[5].n_npcs == 32 and s[5].day_length > 0 and s[5].weather
    for k in range(1, 6):  # nothing a stage introduced disappears later
        for field in (
            "wall_segments",
            "n_fire",
            "n_water",
            "n_chargers",
            "battery_drain",
            "signal_radius",
            "n_vaults",
        ):
            if getattr(s[k - 1], field):
                assert getattr(s[k], field), f"stage {k} drops {field}"


@pytest.mark.parametrize(("stage", "outside"), [(4, 3), (5, 5)])
def test_vault_food_leaves_regrowth_on_the_open_map(stage: int, outside: int) -> None:
    """The food cap counts vault food (9 per vault, locked away): stage 4 keeps stage 3's cap outside,
    stage 5 its own 170, so food regrows from the start (with stage 4's old cap of 56 and 94 items at reset
    nothing grew)."""
    config = stage_config(stage)
    assert config.food_cap - 9 * config.n_vaults == (stage_config(3).food_cap if outside == 3 else 170)
    world = GridWorld(config, num_envs=8, seed=0)
    at_reset = world.food_count.copy()
    assert (at_reset == config.n_food + 9 * config.n_vaults).all()
    for _ in range(20):
        world.step(np.zeros((8, config.n_npcs), dtype=np.int64))
    assert (world.food_count > at_reset).all(), world.food_count - at_reset
