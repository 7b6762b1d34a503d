"""The nervous system plugged into the in-process trainer and evaluator (its `senses` and `reflex` seams).

- `WaveSenses`: runs the cell bank once per world tick over all B x N NPCs and returns its wave
  features [B, N, F] (F = 2 per cell: confidence and scaled value), appended to each NPC's proprio.
- `Reflexes`: applies the nerves to the brains' actions and reports which ones they overrode (kept
  out of the PPO loss: the brain did not choose them); it also charges the lifeforce of the tick's
  brain invocations (and `per_tick`) through `GridWorld.charge`: every live NPC's brain ran.
Cell and nerve memories of an env are forgotten when its episode ends.

With a governor, ``build_nervous`` gives the governor's reflex (``governor.runtime.GovernedReflex``), and
with ``cortex.backend`` engine or http its escalator is the cortex link (``organs.link.CortexLink``):
collapses through open gates become plans the NPCs follow. Whoever builds it calls ``close_nervous``.
"""

from __future__ import annotations

import numpy as np

from governor.config import GovernorConfig
from governor.runtime import GovernedReflex, Trails
from nervous.cells import CellBank
from nervous.config import NervousConfig
from nervous.lifeforce import LifeforceConfig, lifeforce_cost
from nervous.nerves import NerveBank
from organs.config import CortexConfig
from organs.link import make_link
from world import GridWorld
from world.tiles import PROPRIO_SIZE


def _flat_senses(world: GridWorld) -> tuple[np.ndarray, np.ndarray]:
    m = world.num_envs * world.num_npcs
    return world.views.reshape(m, world.V, world.V), world.proprio.reshape(m, -1)


def _ended_rows(world: GridWorld) -> np.ndarray | None:
    """NPC rows [B*N] of envs whose episode ended (and restarted) at the last tick, or None."""
    if world.ticks == 0 or not world.env_done.any():
        return None
    return np.repeat(world.env_done, world.num_npcs)


class WaveSenses:
    """Wave features of the cell bank, computed once per world tick."""

    def __init__(self, bank: CellBank) -> None:
        self.bank = bank
        self.size = bank.feature_size
        self._key: tuple[int, int] | None = None
        self._features: np.ndarray | None = None

    def __call__(self, world: GridWorld) -> np.ndarray:
        """float32 [B, N, F] wave features of the world's current senses."""
        key = (id(world), world.ticks)
        if key != self._key or self._features is None:
            ended = _ended_rows(world)
            if ended is not None:
                self.bank.reset(ended)
            views, proprio = _flat_senses(world)
            waves = self.bank.step(views, proprio, world.ticks)
            self._features = waves.features().reshape(world.num_envs, world.num_npcs, self.size)
            self._key = key
        return self._features


class Reflexes:
    """Nerves over the brains' actions, and the lifeforce the tick's thinking costs."""

    def __init__(self, nerves: NerveBank | None, lifeforce: LifeforceConfig) -> None:
        self.nerves = nerves
        self.lifeforce = lifeforce
        self.charges = lifeforce.per_tick > 0 or lifeforce.per_brain_call > 0
        #: Overrides of the last call, bool [B, N] (for replays and the viewer).
        self.last_overridden: np.ndarray | None = None

    def __call__(self, world: GridWorld, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(final actions [B, N], overridden [B, N]) for the brains' proposed actions."""
        if self.charges:
            world.charge(lifeforce_cost(self.lifeforce, ticks=1, brain_calls=1, alive=world.alive))
        if self.nerves is None:
            overridden = np.zeros(actions.shape, dtype=bool)
        else:
            ended = _ended_rows(world)
            if ended is not None:
                self.nerves.reset(ended)
            views, proprio = _flat_senses(world)
            final, overridden = self.nerves.apply(actions.reshape(-1), views, proprio)
            actions = final.reshape(actions.shape)
            overridden = overridden.reshape(actions.shape)
        self.last_overridden = overridden
        return actions, overridden


def build_nervous(
    config: NervousConfig, governor: GovernorConfig | None = None, cortex: CortexConfig | None = None,
    trails: Trails | None = None,
) -> tuple[WaveSenses | None, Reflexes | GovernedReflex | None]:
    """The trainer's (senses, reflex) for a run's nervous config; None where nothing runs.

    With a governor config the reflex is the governor's (``governor.runtime.GovernedReflex``): tick
    rates, quotas and gates over the nerves, and the lifeforce of brain calls and escalations; with a
    cortex config whose backend is not ``none`` (and cells running) its escalator is the cortex link."""
    senses = WaveSenses(CellBank(config.cell)) if config.cells else None
    nerves = NerveBank(config.nerves) if config.nerves.enabled else None
    if governor is not None:
        escalator = make_link(cortex, config.lifeforce) if cortex is not None and senses is not None else None
        if escalator is not None:
            escalator.trails = trails  # escalations go into the same decision trails as gate changes
        return senses, GovernedReflex(governor, config.lifeforce, nerves,
                                      cells=senses.bank if senses is not None else None, escalator=escalator,
                                      trails=trails)
    reflex = Reflexes(nerves, config.lifeforce)
    if nerves is None and not reflex.charges:
        reflex = None
    return senses, reflex


def close_nervous(reflex: object) -> None:
    """Release what a reflex holds (the cortex link's backend: a thread, an embedded server)."""
    close = getattr(reflex, "close", None)
    if close is not None:
        close()


def check_wave_width(proprio_size: int, nervous: NervousConfig | None) -> None:
    """Raise ValueError when a brain of proprio_size inputs does not take this nervous config's waves."""
    extra = CellBank(nervous.cell).feature_size if nervous is not None and nervous.cells else 0
    if proprio_size != PROPRIO_SIZE + extra:
        raise ValueError(f"nervous.cells: the brain takes {proprio_size - PROPRIO_SIZE} wave features, "
                         f"this nervous config gives {extra}")
