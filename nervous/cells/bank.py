"""CellBank: runs the configured cells over a batch of NPCs each tick and gathers their waves."""

from __future__ import annotations

import numpy as np

from nervous.cells.base import Cell, CellConfig, WaveArrays, check_senses
from nervous.cells.battery import BatteryCell
from nervous.cells.forage import ForageCell
from nervous.cells.hazard import HazardCell
from nervous.cells.hunger import HungerCell
from nervous.cells.key import KeyCell
from nervous.cells.math import MathCell
from nervous.cells.proximity import ProximityCell
from nervous.cells.smell import SmellCell
from nervous.cells.social import SocialCell
from nervous.cells.vault import VaultCell

#: Every cell, by name.
CELLS: dict[str, type[Cell]] = {
    c.name: c
    for c in (BatteryCell, ProximityCell, SmellCell, HazardCell, SocialCell, MathCell, VaultCell, KeyCell,
              HungerCell, ForageCell)
}


def make_cell(name: str, config: CellConfig | None = None) -> Cell:
    """One cell by name; ValueError naming it when unknown."""
    try:
        return CELLS[name](config)
    except KeyError:
        raise ValueError(f"cell {name!r} is not one of {', '.join(CELLS)}") from None


class CellBank:
    """The cells of one runtime, stepped together over flat [M, ...] senses."""

    def __init__(self, config: CellConfig | None = None) -> None:
        self.config = config or CellConfig()
        self.cells = [make_cell(name, self.config) for name in self.config.cells]
        self.names = tuple(c.name for c in self.cells)
        self.regions = tuple(c.region for c in self.cells)
        self.value_scale = np.array([c.value_scale for c in self.cells], dtype=np.float32)
        self.last: WaveArrays | None = None

    @property
    def feature_size(self) -> int:
        """Length F of the per-NPC wave feature vector (confidence and scaled value per cell)."""
        return 2 * len(self.cells)

    @property
    def feature_names(self) -> list[str]:
        """Names of the F features, in order."""
        return [f"{n}/confidence" for n in self.names] + [f"{n}/value" for n in self.names]

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget per-NPC cell state: of all NPCs, or of those where mask is True."""
        for cell in self.cells:
            if mask is None:
                cell.reset(cell.num_npcs)
            elif cell.num_npcs == len(mask):
                cell.reset_npcs(np.asarray(mask, dtype=bool))

    def step(self, views: np.ndarray, proprio: np.ndarray, tick: int) -> WaveArrays:
        """Run every cell on views uint8[M, V, V] and proprio float32[M, P]; the tick's waves.

        The same as each cell's ``Cell.step``, with the senses checked and the confidences clipped
        once for all cells.
        """
        check_senses(views, proprio)
        m = len(views)
        conf = np.empty((m, len(self.cells)), dtype=np.float32)
        value = np.empty((m, len(self.cells)), dtype=np.float32)
        for i, cell in enumerate(self.cells):
            conf[:, i], value[:, i] = cell.sense(views, proprio, tick)  # cast to float32 here
        conf.clip(0.0, 1.0, out=conf)
        self.last = WaveArrays(
            tick=tick,
            cells=self.names,
            regions=self.regions,
            value_scale=self.value_scale,
            confidence=conf,
            value=value,
            fired=conf >= self.config.fire_threshold,
        )
        return self.last

    def features(
        self, views: np.ndarray | None = None, proprio: np.ndarray | None = None, tick: int = 0
    ) -> np.ndarray:
        """float32 [M, F] wave features: of the last step, or of a new step when senses are given."""
        if views is not None and proprio is not None:
            return self.step(views, proprio, tick).features()
        if self.last is None:
            raise ValueError("features: no step yet; pass views and proprio")
        return self.last.features()
