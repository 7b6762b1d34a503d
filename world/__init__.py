"""The grid world: batched numpy core, PettingZoo env, curriculum stages, frame drawing.

`world` knows nothing of brains or of the bus (DESIGN: imports flow world <- nervous <- ...).
"""

from world.config import WorldConfig
from world.core import GridWorld
from world.curriculum import Curriculum, CurriculumConfig
from world.env import NimmerverseEnv, parallel_env
from world.stages import STAGES, stage_config

__all__ = ["GridWorld", "WorldConfig", "Curriculum", "CurriculumConfig", "NimmerverseEnv", "parallel_env",
           "STAGES", "stage_config"]
