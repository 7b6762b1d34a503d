"""The curriculum stage registry: six presets, each adding to the last.

| stage | name     | grid  | NPCs | adds                                                            |
|-------|----------|-------|------|-----------------------------------------------------------------|
| 0     | meadow   | 16x16 | 4    | food; survive by foraging                                       |
| 1     | walls    | 24x24 | 4    | random walls, obstacles and corridors                           |
| 2     | hazards  | 24x24 | 4    | fire, water, charging stations; battery drains with movement    |
| 3     | crowd    | 32x32 | 16   | scarce food, NPC-NPC blocking, signals heard by neighbours, respawn |
| 4     | locks    | 32x32 | 16   | vaults behind doors (keys) and lock terminals that re-arm; mazes |
| 5     | full     | 64x64 | 32   | all of the above plus day/night and weather                     |

`conf/world/stage{k}.yaml` mirror these presets for Hydra (a test keeps them equal).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from world.config import WorldConfig

STAGES: dict[int, WorldConfig] = {}

STAGES[0] = WorldConfig(
    stage=0, name="meadow", height=16, width=16, n_npcs=4, n_food=10, food_cap=12, food_regrow=0.3,
    lifeforce_decay=0.0105,
)
STAGES[1] = replace(
    STAGES[0], stage=1, name="walls", height=24, width=24, wall_density=0.06, wall_segments=10,
    n_food=18, food_cap=22, max_steps=250, lifeforce_decay=0.01,
)
STAGES[2] = replace(
    STAGES[1], stage=2, name="hazards", n_fire=16, n_water=6, n_chargers=4, battery_drain=0.01,
)
STAGES[3] = replace(
    STAGES[2], stage=3, name="crowd", height=32, width=32, n_npcs=16, wall_segments=16, n_food=48,
    food_cap=56, food_regrow=0.6, n_fire=24, n_water=8, n_chargers=6, signal_radius=3, respawn_delay=10,
)
STAGES[4] = replace(
    STAGES[3], stage=4, name="locks", n_vaults=6, lock_fraction=0.5, n_keys_extra=2, rearm_delay=20,
    wall_segments=20, n_food=40, max_steps=300, success_needs_unlock=True,
    # the cap counts every food item, and the vaults hold 9 each (54 at reset): 56 + 54 leaves the open
    # map stage 3's cap of 56 (with 56 the locked-away vault food stopped regrowth outside for half of
    # the env-ticks and NPCs starved: python -m benchmarks.starvation)
    food_cap=110,
)
STAGES[5] = replace(
    STAGES[4], stage=5, name="full", height=64, width=64, n_npcs=32, view_radius=4, wall_segments=72,
    n_food=150, food_cap=314, food_regrow=1.0, n_fire=80, n_water=30, n_chargers=20, n_vaults=16,
    n_keys_extra=6, max_steps=400, day_length=100, night_view_radius=2, weather=True, fog_view_radius=2,
    success_needs_unlock=False,
    # as stage 4: the cap counts its 16 vaults' 144 food items too, so 314 leaves the open map 170
)

STAGE_NAMES = {index: config.name for index, config in STAGES.items()}


def stage_config(stage: int | str, **overrides: Any) -> WorldConfig:
    """Return the preset of a stage (by index or name) with field overrides applied and validated."""
    if isinstance(stage, str):
        by_name = {config.name: index for index, config in STAGES.items()}
        if stage.isdigit():
            stage = int(stage)
        elif stage.removeprefix("stage").isdigit():
            stage = int(stage.removeprefix("stage"))
        elif stage in by_name:
            stage = by_name[stage]
        else:
            raise ValueError(f"stage={stage!r}: unknown stage; choose 0-5 or one of {sorted(by_name)}")
    if not isinstance(stage, int) or stage not in STAGES:
        raise ValueError(f"stage={stage!r}: unknown stage; choose one of {sorted(STAGES)}")
    unknown = sorted(set(overrides) - set(WorldConfig.field_names()))
    if unknown:
        raise ValueError(f"world.{unknown[0]}: unknown world field")
    return replace(STAGES[stage], **overrides)
