"""The governor's inputs: one float32 array [N, F] over NPC slots, the same for every governor.

``GovernorInputs`` is fed what the governor hears (``NpcState`` reports, ``CollapseEvent`` messages or
the batched collapse of the in-process runtime, wave confidences per region, nerve overrides, brain
calls, escalations, deaths and respawns) and ``features(context)`` writes the array. Rows follow the
order of ``npc_ids``; a dead (or never reported) NPC's row is all zeros but for the global columns.
Values are in natural units (the learned governor normalises them itself):

======================  ====================================================================
column                  meaning
======================  ====================================================================
ALIVE                   1 for a living NPC, 0 for a dead one
LIFEFORCE               last reported lifeforce, 0..1
BATTERY                 last reported battery, 0..1
REWARD_RATE             last reported reward rate (the NPC's moving average of reward per tick)
TICK_RATE               last reported brain tick rate, Hz
CPU_USE                 last reported CPU use, cores (1.0: one full core)
LAG_S                   last reported worst lag, seconds
OVERRIDE_RATE           moving average (0.05 per world tick) of ticks a nerve overrode the brain
SINCE_BRAIN_CALL_S      seconds since the NPC's last brain call, at most ``SINCE_CAP_S``
SINCE_ESCALATION_S      seconds since the NPC's last escalation, at most ``SINCE_CAP_S``
WAVE[region]            combined wave confidence per region (``nervous.collapse``), REGIONS order
COLLAPSE[region]        confidence of a collapse event on the region that fired within the last
                        ``governor.collapse_hold_ticks`` world ticks, else 0; REGIONS order
CPU_LOAD                CPU in use on the machine / ``governor.cpu_budget`` (same in every row)
CORTEX_QUEUE            cortex requests waiting in the client's queue (same in every row)
CORTEX_LATENCY_S        recent cortex latency, seconds (same in every row)
NPCS_ALIVE              fraction of NPC slots alive (same in every row)
======================  ====================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from governor.config import WORLD_HZ, GovernorConfig
from nervous.messages import REGIONS, CollapseEvent, NpcState, Region

NUM_REGIONS = len(REGIONS)
(ALIVE, LIFEFORCE, BATTERY, REWARD_RATE, TICK_RATE, CPU_USE, LAG_S, OVERRIDE_RATE, SINCE_BRAIN_CALL_S,
 SINCE_ESCALATION_S) = range(10)
WAVE = slice(10, 10 + NUM_REGIONS)
COLLAPSE = slice(WAVE.stop, WAVE.stop + NUM_REGIONS)
CPU_LOAD, CORTEX_QUEUE, CORTEX_LATENCY_S, NPCS_ALIVE = range(COLLAPSE.stop, COLLAPSE.stop + 4)
NUM_FEATURES = NPCS_ALIVE + 1
FEATURE_NAMES: tuple[str, ...] = (
    "alive", "lifeforce", "battery", "reward_rate", "tick_rate", "cpu_use", "lag_s", "override_rate",
    "since_brain_call_s", "since_escalation_s",
    *(f"wave_{r.value}" for r in REGIONS), *(f"collapse_{r.value}" for r in REGIONS),
    "cpu_load", "cortex_queue", "cortex_latency_s", "npcs_alive",
)
#: Seconds after which "time since" columns stop growing.
SINCE_CAP_S = 60.0
#: Weight of the newest world tick in the override rate's moving average.
OVERRIDE_EMA = 0.05
_NEVER = np.iinfo(np.int64).min // 2


def region_column(block: slice, region: Region) -> int:
    """The column of region inside the WAVE or COLLAPSE block."""
    return block.start + REGIONS.index(Region(region))


@dataclass(frozen=True)
class GlobalContext:
    """What the governor knows beyond the NPCs' own reports, at one governor tick."""

    tick: int
    """The world tick now."""
    cpu_in_use: float = 0.0
    """Cores in use on the machine (all NPCs and services)."""
    cortex_queue_depth: int = 0
    """Cortex requests waiting in the client's queue."""
    cortex_latency_s: float = 0.0
    """Recent cortex latency (e.g. the last escalations' mean), seconds."""


class GovernorInputs:
    """Collects what the governor hears about N NPCs and writes it as one float32 array [N, F]."""

    def __init__(self, config: GovernorConfig, npc_ids: Sequence[int], machines: int = 1) -> None:
        ids = [int(i) for i in npc_ids]
        if len(set(ids)) != len(ids):
            raise ValueError(f"npc_ids={ids!r}: an NPC id is named twice")
        if machines < 1 or len(ids) % machines:
            raise ValueError(f"machines={machines!r}: must be >= 1 and divide the {len(ids)} NPC slots")
        config.check_npcs(len(ids) // machines)  # each machine (env) has its own CPU budget
        self.machines = machines
        self.config = config
        self.npc_ids = tuple(ids)
        self.slot = {npc: i for i, npc in enumerate(ids)}
        n = len(ids)
        self.state = np.zeros((n, NUM_FEATURES), dtype=np.float32)
        """Per-NPC columns as last heard (global and time columns are written by ``features``)."""
        self.alive = np.zeros(n, dtype=bool)
        self.collapse_tick = np.full((n, NUM_REGIONS), _NEVER, dtype=np.int64)
        self.brain_call_tick = np.full(n, _NEVER, dtype=np.int64)
        self.escalation_tick = np.full(n, _NEVER, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.npc_ids)

    def _slot(self, npc: int, field: str) -> int:
        slot = self.slot.get(npc)
        if slot is None:
            raise ValueError(f"{field}={npc}: no such NPC (the governor knows {len(self)} NPCs)")
        return slot

    # --- life and death ------------------------------------------------------------------------
    def mark_alive(self, npc: int) -> None:
        """A (re)born NPC: alive, with nothing remembered of an earlier life."""
        i = self._slot(npc, "npc")
        self._forget(i)
        self.alive[i] = True

    def mark_dead(self, npc: int) -> None:
        """A dead NPC: its row is zeros until it is marked alive again."""
        i = self._slot(npc, "npc")
        self._forget(i)
        self.alive[i] = False

    def _forget(self, i: int) -> None:
        self.state[i] = 0.0
        self.collapse_tick[i] = _NEVER
        self.brain_call_tick[i] = _NEVER
        self.escalation_tick[i] = _NEVER

    def observe_alive(self, alive: np.ndarray) -> None:
        """Take who lives now, bool [N]: rows born or died since the last call are forgotten."""
        alive = np.asarray(alive, dtype=bool)
        changed = alive != self.alive
        if changed.any():
            rows = np.flatnonzero(changed)
            self.state[rows] = 0.0
            self.collapse_tick[rows] = _NEVER
            self.brain_call_tick[rows] = _NEVER
            self.escalation_tick[rows] = _NEVER
            self.alive = alive.copy()

    def forget_rows(self, rows: np.ndarray) -> None:
        """Forget the memory of rows bool [N] (their episode restarted); they stay as alive as they were."""
        rows = np.asarray(rows, dtype=bool)
        self.state[rows] = 0.0
        self.collapse_tick[rows] = _NEVER
        self.brain_call_tick[rows] = _NEVER
        self.escalation_tick[rows] = _NEVER

    def observe_bodies(self, lifeforce: np.ndarray, battery: np.ndarray, reward_rate: np.ndarray,
                       tick_rate: np.ndarray, cpu_use: np.ndarray) -> None:
        """Take every NPC's report at once, float [N] each (the in-process runtime's NpcState)."""
        alive = self.alive
        for column, values in ((LIFEFORCE, lifeforce), (BATTERY, battery), (REWARD_RATE, reward_rate),
                               (TICK_RATE, tick_rate), (CPU_USE, cpu_use)):
            self.state[:, column] = np.where(alive, np.asarray(values, dtype=np.float32), 0.0)

    # --- what NPCs report ------------------------------------------------------------------------
    def observe_state(self, msg: NpcState) -> None:
        """Take an NPC's report; a report with alive=False marks it dead."""
        i = self._slot(msg.npc, "npc_state.npc")
        if not msg.alive:
            self.mark_dead(msg.npc)
            return
        if not self.alive[i]:
            self.mark_alive(msg.npc)
        row = self.state[i]
        row[LIFEFORCE], row[BATTERY], row[REWARD_RATE] = msg.lifeforce, msg.battery, msg.reward_rate
        row[TICK_RATE], row[CPU_USE], row[LAG_S] = msg.tick_rate, msg.cpu_use, msg.lag_ms / 1000.0
        row[OVERRIDE_RATE] = msg.override_rate  # the live NPC's own moving average

    def observe_collapse(self, event: CollapseEvent) -> None:
        """Take one collapse event (a message of the process runtime)."""
        i = self._slot(event.npc, "collapse.npc")
        if not self.alive[i]:
            return
        column = region_column(COLLAPSE, event.region)
        r = column - COLLAPSE.start
        if event.tick >= self.collapse_tick[i, r]:
            self.collapse_tick[i, r] = event.tick
            self.state[i, column] = event.confidence

    def observe_collapses(self, fired: np.ndarray, confidence: np.ndarray, tick: int) -> None:
        """Take the collapse events of one world tick for all NPCs: fired bool [N, R], confidence [N, R]
        (``nervous.collapse.BatchCollapse.update`` gives both)."""
        fired = np.asarray(fired, dtype=bool) & self.alive[:, None]
        self.collapse_tick[fired] = tick
        self.state[:, COLLAPSE][fired] = np.asarray(confidence, dtype=np.float32)[fired]  # a view: in place

    def observe_waves(self, confidence: np.ndarray) -> None:
        """Take the combined wave confidence per region of all NPCs, float [N, R] in REGIONS order."""
        confidence = np.asarray(confidence, dtype=np.float32)
        if confidence.shape != (len(self), NUM_REGIONS):
            raise ValueError(f"waves: shape {confidence.shape}, expected ({len(self)}, {NUM_REGIONS})")
        self.state[:, WAVE] = np.where(self.alive[:, None], np.clip(confidence, 0.0, 1.0), 0.0)

    def observe_overrides(self, overridden: np.ndarray) -> None:
        """Take one world tick's nerve overrides, bool [N] (any nerve replaced the brain's action)."""
        hit = np.asarray(overridden, dtype=np.float32)
        rate = self.state[:, OVERRIDE_RATE]
        self.state[:, OVERRIDE_RATE] = np.where(self.alive, rate + OVERRIDE_EMA * (hit - rate), 0.0)

    def observe_brain_calls(self, called: np.ndarray, tick: int) -> None:
        """Take which NPCs' brains were called at world tick, bool [N]."""
        self.brain_call_tick[np.asarray(called, dtype=bool) & self.alive] = tick

    def observe_escalation(self, npc: int, tick: int) -> None:
        """Take one escalation of an NPC to the cortex at world tick."""
        i = self._slot(npc, "escalation.npc")
        self.escalation_tick[i] = max(self.escalation_tick[i], tick)

    # --- the array -----------------------------------------------------------------------------
    def features(self, context: GlobalContext) -> np.ndarray:
        """float32 [N, NUM_FEATURES]: every NPC's inputs at context.tick (columns: module docstring)."""
        out = self.state.copy()
        alive = self.alive
        out[:, ALIVE] = alive
        held = (context.tick - self.collapse_tick) < self.config.collapse_hold_ticks
        out[:, COLLAPSE] = np.where(held & alive[:, None], out[:, COLLAPSE], 0.0)
        for column, since in (
            (SINCE_BRAIN_CALL_S, self.brain_call_tick),
            (SINCE_ESCALATION_S, self.escalation_tick),
        ):
            seconds = np.clip((context.tick - since) / WORLD_HZ, 0.0, SINCE_CAP_S)
            out[:, column] = np.where(alive, seconds, 0.0)
        out[:, CPU_LOAD] = context.cpu_in_use / self.config.cpu_budget
        out[:, CORTEX_QUEUE] = context.cortex_queue_depth
        out[:, CORTEX_LATENCY_S] = context.cortex_latency_s
        out[:, NPCS_ALIVE] = alive.mean() if len(self) else 0.0
        if self.machines > 1:  # per machine: its own NPCs alive (CPU load: the caller's, per machine)
            per = alive.reshape(self.machines, -1).mean(axis=1)
            out[:, NPCS_ALIVE] = np.repeat(per, len(self) // self.machines)
        return out
