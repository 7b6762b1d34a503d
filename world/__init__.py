"""The grid world: batched numpy core, PettingZoo env, curriculum stages, frame drawing.

`world` knows nothing of brains or of the bus (DESIGN: imports flow world <- nervous <- ...).
The PettingZoo wrapper (and with it gymnasium and pettingzoo) is imported on first use only, so
cell and NPC processes that need just the core start light.
"""

from typing import TYPE_CHECKING, Any

from world.config import WorldConfig
from world.core import GridWorld
from world.curriculum import Curriculum, CurriculumConfig
from world.stages import STAGES, stage_config

if TYPE_CHECKING:
    from world.env import NimmerverseEnv, parallel_env

__all__ = ["GridWorld", "WorldConfig", "Curriculum", "CurriculumConfig", "NimmerverseEnv", "parallel_env",
           "STAGES", "stage_config"]


def __getattr__(name: str) -> Any:
    if name in ("parallel_env", "NimmerverseEnv"):
        from world import env

        return getattr(env, name)
    raise AttributeError(f"module 'world' has no attribute {name!r}")
