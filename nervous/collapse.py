"""Wave collapse: waves on one region from different cells inside a time window amplify each other.

Rule: the live waves of one (NPC, region) combine as ``1 - prod_i (1 - c_i)`` (noisy-OR: the chance
that at least one of several independent detectors is right). The result lies in [0, 1], never falls
below the strongest single confidence, grows with each confidence, ignores order, and one wave
combines to itself. A wave is live for ``window_ticks`` ticks: at tick T a wave of tick t counts when
``0 <= T - t < window_ticks``; T is the newest tick seen, so late waves do not expire newer ones. A
newer wave from the same cell replaces that cell's older one (one cell cannot amplify itself). When
the combination reaches ``threshold`` with at least ``min_cells`` live cells, a ``CollapseEvent`` is
emitted once (rising edge); it re-arms when the combination falls below the threshold again.

``WaveCollapse`` works on streams of ``Wave`` messages (a governor service); ``BatchCollapse`` on the
``WaveArrays`` of a cell bank (the in-process runtime).

Which regions can collapse follows from the cell bank: a region needs ``min_cells`` (2) cells of its
own. Until the vault and key cells, every region had exactly one cell (battery/energy,
proximity/collision, smell/food, hazard/hazard, social/social, math/math), so no event ever fired and no
gate ever mattered. Rather than let one wave collapse alone (``min_cells=1`` would break the rule that
several independent detectors must agree), the math region - where the cortex helps: locks, doors and
keys - has three cells: ``math`` (the lock in reach), ``vault`` (a door or lock in sight) and ``key`` (a
key in hand or seen lately). It collapses when a vault is in sight with a key known (open it) or with a
lock in reach (answer it). The food region has ``smell`` (the nearest food in view), ``hunger``
(lifeforce low) and ``forage`` (food seen lately): it collapses when a hungry NPC has seen food lately,
and the cortex plans the way back to it. The other regions still have one cell each and never collapse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from nervous.cells.base import WaveArrays
from nervous.messages import REGIONS, CollapseEvent, Region, Wave, WaveBatch


@dataclass
class CollapseConfig:
    """How waves collapse."""

    window_ticks: int = 3
    """Ticks a wave stays live."""
    threshold: float = 0.75
    """Combined confidence at which a collapse event is emitted."""
    min_cells: int = 2
    """Distinct live cells needed for a collapse event."""


def combine(confidences: ArrayLike, axis: int = -1) -> np.ndarray:
    """Noisy-OR of confidences along axis: 1 - prod(1 - c)."""
    c = np.clip(np.asarray(confidences, dtype=np.float64), 0.0, 1.0)
    return 1.0 - np.prod(1.0 - c, axis=axis)


class WaveCollapse:
    """Collapse over a stream of Wave messages, per (NPC, region)."""

    def __init__(self, config: CollapseConfig | None = None) -> None:
        self.config = config or CollapseConfig()
        self._live: dict[tuple[int, Region], dict[str, tuple[float, int]]] = {}
        self._active: set[tuple[int, Region]] = set()
        self.now = 0

    def _live_waves(self, key: tuple[int, Region], tick: int) -> dict[str, tuple[float, int]]:
        """The waves of key live at tick; drops those that expired (keeps later ones)."""
        waves = self._live.get(key, {})
        w = self.config.window_ticks
        kept = {cell: (c, t) for cell, (c, t) in waves.items() if tick - t < w}
        if kept:
            self._live[key] = kept
        else:
            self._live.pop(key, None)
        return {cell: (c, t) for cell, (c, t) in kept.items() if t <= tick}

    def combined(self, npc: int, region: Region, tick: int) -> float:
        """The combined confidence of one NPC's region at tick."""
        waves = self._live_waves((npc, region), tick)
        return float(combine([c for c, _ in waves.values()])) if waves else 0.0

    def add(self, wave: Wave) -> CollapseEvent | None:
        """Take one wave; the collapse event it completes, if any."""
        key = (wave.npc, wave.region)
        self.now = max(self.now, wave.tick)
        waves = self._live.setdefault(key, {})
        old = waves.get(wave.cell)
        if old is None or old[1] <= wave.tick:
            waves[wave.cell] = (wave.confidence, wave.tick)
        waves = self._live_waves(key, self.now)
        value = float(combine([c for c, _ in waves.values()])) if waves else 0.0
        if value < self.config.threshold or len(waves) < self.config.min_cells:
            self._active.discard(key)
            return None
        if key in self._active:
            return None
        self._active.add(key)
        return CollapseEvent(
            npc=wave.npc, region=wave.region, confidence=min(value, 1.0), cells=sorted(waves), tick=self.now
        )

    def add_batch(self, batch: WaveBatch) -> list[CollapseEvent]:
        """Take every wave of a batch; the collapse events they complete."""
        return [e for w in batch.waves() if (e := self.add(w)) is not None]

    def expire(self, tick: int) -> None:
        """Drop waves that are no longer live at tick and re-arm regions that fell below threshold."""
        self.now = max(self.now, tick)
        for key in list(self._live):
            waves = self._live_waves(key, tick)
            if (
                len(waves) < self.config.min_cells
                or combine([c for c, _ in waves.values()]) < self.config.threshold
            ):
                self._active.discard(key)


class BatchCollapse:
    """Collapse over the WaveArrays of a cell bank, for all NPCs at once."""

    def __init__(
        self, cells: tuple[str, ...], regions: tuple[Region, ...], config: CollapseConfig | None = None
    ):
        self.config = config or CollapseConfig()
        self.cells, self.regions = cells, regions
        # [R, C] membership of each cell in each region
        self.member = np.array([[r == reg for r in regions] for reg in REGIONS], dtype=bool)
        #: Per region (REGIONS order) its cells' columns, in cell order.
        self.columns = [np.flatnonzero(row) for row in self.member]
        self.conf = np.zeros((0, len(cells)), dtype=np.float32)
        self.tick = np.zeros((0, len(cells)), dtype=np.int64)
        self.active = np.zeros((0, len(REGIONS)), dtype=bool)

    def reset(self, num_npcs: int) -> None:
        """Forget all waves and size the state for num_npcs NPCs."""
        self.conf = np.zeros((num_npcs, len(self.cells)), dtype=np.float32)
        self.tick = np.full((num_npcs, len(self.cells)), np.iinfo(np.int64).min // 2, dtype=np.int64)
        self.active = np.zeros((num_npcs, len(REGIONS)), dtype=bool)

    def update(self, waves: WaveArrays) -> tuple[np.ndarray, np.ndarray]:
        """(combined float32[M, R] per region in REGIONS order, new collapse events bool[M, R])."""
        if waves.confidence.shape[0] != self.conf.shape[0]:
            self.reset(waves.confidence.shape[0])
        fired = waves.fired
        np.copyto(self.conf, waves.confidence, where=fired)
        np.copyto(self.tick, waves.tick, where=fired)
        age = waves.tick - self.tick
        live = (age >= 0) & (age < self.config.window_ticks)
        miss = np.where(live, 1.0 - self.conf.astype(np.float64), 1.0)  # [M, C]
        # per region the product of its cells' misses, multiplied in cell order: the same float64 products
        # as multiplying all C columns with the other regions' cells read as 1.0, without an [M, R, C] array
        survive = np.ones((len(miss), len(REGIONS)), dtype=np.float64)
        count = np.zeros((len(miss), len(REGIONS)), dtype=np.int64)
        for r, columns in enumerate(self.columns):
            if len(columns):
                product = miss[:, columns[0]]
                for c in columns[1:]:
                    product = product * miss[:, c]
                survive[:, r] = product
                count[:, r] = live[:, columns].sum(axis=1)
        combined = (1.0 - survive).astype(np.float32)
        above = (combined >= self.config.threshold) & (count >= self.config.min_cells)
        new = above & ~self.active
        self.active = above
        return combined, new
