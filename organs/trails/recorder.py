"""Decision trails of the in-process runtime: gate decisions and escalations as events, outcomes K ticks on.

``TrailRecorder`` is fed by the governed reflex (``governor.runtime.GovernedReflex``): at every
governor tick the gates that changed (``gates``), at every escalation its situation, request, answer
and latency (``escalation``), and every world tick the world itself (``tick``), from which it measures
each event's outcome ``outcome_ticks`` later (reward earned, a door or lock opened, died). Messages go
to a sink in batches (``TrailWriter.write_many`` in-process, or a bus publisher), at most
``batch_size`` at a time and on ``flush``.

The live world server (``agents.world_server``) feeds one the same way, its sink an
``organs.trails.bus_sink.BusTrailSink``, and calls ``watch`` for each gate decision the governor
process published, so that its outcome is measured here too (from the tick the world heard it);
``gate_event`` builds that decision's event in the governor process.

NPC ids are slots of the batched world: env ``b``, slot ``n`` is NPC ``b * N + n``; ``world.ticks``
is the tick, so event ids (``nervous.trail_stream.trail_id``) are unique within a run.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from governor.inputs import (
    BATTERY,
    COLLAPSE,
    CPU_LOAD,
    LIFEFORCE,
    REWARD_RATE,
    TICK_RATE,
    WAVE,
    region_column,
)
from nervous import subjects
from nervous.messages import REGIONS, Region, TrailEvent, TrailKind, TrailOutcome
from nervous.trail_stream import trail_id
from world import GridWorld

#: Sink of trail messages (e.g. ``TrailWriter.write_many``).
Sink = Callable[[list[TrailEvent | TrailOutcome]], Any]


@dataclass
class _Pending:
    """An event waiting for its outcome, with its NPC's running totals at the event."""

    id: str
    env: int
    npc: int
    tick: int
    reward: float
    opened: int
    deaths: int


class TrailRecorder:
    """Turns the in-process runtime's gate decisions and escalations into trail events and outcomes."""

    def __init__(self, sink: Sink, run: str, outcome_ticks: int = 40, batch_size: int = 512) -> None:
        if outcome_ticks < 1:
            raise ValueError(f"outcome_ticks={outcome_ticks!r}: must be >= 1")
        self.sink, self.run, self.outcome_ticks, self.batch_size = sink, run, outcome_ticks, batch_size
        self.env = subjects.env()
        self.buffer: list[TrailEvent | TrailOutcome] = []
        self.pending: deque[_Pending] = deque()
        """Events in tick order, waiting for their outcome."""
        self.events = 0
        self.outcomes = 0
        self._opened: np.ndarray | None = None
        # running totals per NPC since the recorder began: an outcome is the difference over its K ticks
        self._reward: np.ndarray | None = None
        self._openings: np.ndarray | None = None
        self._deaths: np.ndarray | None = None
        self._world: int | None = None
        self._now = 0
        """The newest world tick heard, and its world's NPCs per env (for outcomes cut short)."""
        self._num_npcs = 1
        self._watched: set[str] = set()
        """Ids of other processes' events waiting here for their outcome."""

    # --- events ----------------------------------------------------------------------------------
    def gates(self, world: GridWorld, before: np.ndarray, after: np.ndarray, features: np.ndarray) -> None:
        """Events for every living NPC's gate that changed: before, after bool [B, N, R]; inputs [B, N, F]."""
        changed = (before != after) & world.alive[..., None]
        for b, n, r in zip(*np.nonzero(changed), strict=True):
            region = REGIONS[int(r)]
            self._event(world, int(b), int(n), TrailKind.GATE, region.value, bool(after[b, n, r]),
                        inputs=gate_inputs(features[b, n], region))

    def escalation(self, world: GridWorld, env: int, npc: int, region: str, situation: str = "",
                   request: str = "", response: str = "", outcome: str = "", latency_ms: float = 0.0,
                   fallback: str = "", numbers: str = "", model: str = "") -> None:
        """One escalation of NPC slot npc in env through its open gate on region (request: the
        chat-completions body sent, as JSON; model: the model it asked)."""
        self._event(world, env, npc, TrailKind.ESCALATION, region, True, situation=situation,
                    cortex_request=request, cortex_response=response, cortex_outcome=outcome,
                    latency_ms=max(0.0, latency_ms), fallback=fallback, numbers=numbers,
                    cortex_model=model)

    def _event(self, world: GridWorld, env: int, npc: int, kind: TrailKind, region: str, gate_open: bool,
               **fields: Any) -> None:
        slot = env * world.num_npcs + npc
        tick = int(world.ticks)
        event_id = trail_id(self.run, slot, tick, kind, region)
        self.buffer.append(TrailEvent(id=event_id, run=self.run, env=self.env, npc=slot, tick=tick, kind=kind,
                                      region=region, gate_open=gate_open, at=time.time(),
                                      stage=int(world.config.stage), **fields))
        self._totals(world)
        assert self._reward is not None and self._openings is not None and self._deaths is not None
        self.pending.append(_Pending(event_id, env, npc, tick, float(self._reward[env, npc]),
                                     int(self._openings[env, npc]), int(self._deaths[env, npc])))
        self.events += 1
        if len(self.buffer) >= self.batch_size:
            self.flush()

    def watch(self, world: GridWorld, env: int, npc: int, event_id: str) -> bool:
        """Measure the outcome of an event another process recorded (the governor's gate decision), from
        this tick on; False when that id is already waiting (a republished event)."""
        self._totals(world)
        assert self._reward is not None and self._openings is not None and self._deaths is not None
        if event_id in self._watched:
            return False
        self._watched.add(event_id)
        self.pending.append(_Pending(event_id, env, npc, int(world.ticks), float(self._reward[env, npc]),
                                     int(self._openings[env, npc]), int(self._deaths[env, npc])))
        return True

    # --- outcomes --------------------------------------------------------------------------------
    def _totals(self, world: GridWorld) -> None:
        """Running totals for this world: zeros at first, and again for a new world (whose NPCs and ticks
        are not the old one's: events still waiting on the old world get their outcome cut short first)."""
        if self._world != id(world) or self._reward is None:
            self._settle(lambda p: True)
            self._world = id(world)
            self._now, self._num_npcs = int(world.ticks), world.num_npcs
            self._watched.clear()
            self._reward = np.zeros(world.alive.shape, dtype=np.float64)
            self._openings = np.zeros(world.alive.shape, dtype=np.int64)
            self._deaths = np.zeros(world.alive.shape, dtype=np.int64)
            self._opened = world.ep_opened.copy()

    def tick(self, world: GridWorld) -> None:
        """A world tick passed: its reward, deaths and openings go into running totals; emit due outcomes."""
        self._totals(world)
        assert self._reward is not None and self._openings is not None and self._deaths is not None
        opened_total = world.ep_opened
        opened = (opened_total > self._opened) | ((opened_total < self._opened) & (opened_total > 0))
        self._opened = opened_total.copy()
        self._reward += world.rewards
        self._openings += opened
        self._deaths += world.died
        self._now = now = int(world.ticks)
        self._settle(lambda p: now - p.tick >= self.outcome_ticks)
        if len(self.buffer) >= self.batch_size:
            self.flush()

    def _settle(self, due: Callable[[_Pending], bool]) -> None:
        """Emit the outcomes of waiting events, oldest first, while ``due`` says so (totals to now)."""
        while self.pending and due(self.pending[0]):
            p = self.pending.popleft()
            self._watched.discard(p.id)
            assert self._reward is not None and self._openings is not None and self._deaths is not None
            self.buffer.append(TrailOutcome(
                id=p.id, npc=p.env * self._num_npcs + p.npc, tick=self._now, after_ticks=self._now - p.tick,
                reward=float(self._reward[p.env, p.npc]) - p.reward,
                lock_opened=bool(self._openings[p.env, p.npc] > p.opened),
                died=bool(self._deaths[p.env, p.npc] > p.deaths), at=time.time()))
            self.outcomes += 1

    def finish(self) -> None:
        """The run ends: every waiting event gets its outcome over the ticks it had (``after_ticks`` below
        ``outcome_ticks`` says the window was cut short), and everything goes to the sink."""
        self._settle(lambda p: True)
        self.flush()

    def flush(self) -> None:
        """Hand the buffered messages to the sink."""
        if self.buffer:
            batch, self.buffer = self.buffer, []
            self.sink(batch)


def gate_inputs(row: np.ndarray, region: Region) -> dict[str, float]:
    """The governor's inputs that mattered for a gate decision on region: one NPC's feature row."""
    inputs = {"lifeforce": row[LIFEFORCE], "battery": row[BATTERY], "reward_rate": row[REWARD_RATE],
              "tick_rate": row[TICK_RATE], "cpu_load": row[CPU_LOAD],
              f"wave_{region.value}": row[region_column(WAVE, region)],
              f"collapse_{region.value}": row[region_column(COLLAPSE, region)]}
    return {k: float(v) for k, v in inputs.items()}


def gate_event(run: str, npc: int, tick: int, region: Region, gate_open: bool, row: np.ndarray,
               stage: int = -1, decision: int | None = None) -> TrailEvent:
    """The trail event of one gate decision made outside a batched world (the governor service, whose
    decision count tells two decisions at one world tick apart)."""
    return TrailEvent(id=trail_id(run, npc, tick, TrailKind.GATE, region.value, decision), run=run,
                      env=subjects.env(), npc=npc, tick=tick, kind=TrailKind.GATE, region=region,
                      gate_open=gate_open, inputs=gate_inputs(row, region), at=time.time(), stage=stage)
