"""NervousConfig: the nervous system of one run (cells, nerves, lifeforce costs), as one config group."""

from __future__ import annotations

from dataclasses import dataclass, field

from nervous.cells.base import CellConfig
from nervous.lifeforce import LifeforceConfig
from nervous.nerves import NerveConfig


@dataclass
class NervousConfig:
    """What of the nervous system runs beside the brains (in-process runtime)."""

    cells: bool = True
    """Run the cell bank every tick; its wave features (confidence, value per cell) join the observation."""
    cell: CellConfig = field(default_factory=CellConfig)
    """Which cells run, and their thresholds."""
    nerves: NerveConfig = field(default_factory=NerveConfig)
    """Reflexes that may override the brains' actions (nerves.enabled=false for the ablation)."""
    lifeforce: LifeforceConfig = field(default_factory=LifeforceConfig)
    """Lifeforce cost of living and thinking, charged through the world's hook."""
