"""The world server: the authoritative grid world on the bus, with every NPC's reflexes (process runtime).

Lives above ``world`` (which knows nothing of the bus). Each world tick it steps one env of
``GridWorld``; clocks: ``realtime`` (a 20 Hz wall clock, ticks never wait for NPCs) or ``lockstep`` (a
tick waits until every NPC it woke has acted, or ``lockstep_timeout_s``).

The semantics are the in-process runtime's (``governor.runtime``), and so is the nervous system: one
``CellBank`` and one ``NerveBank`` batched over all N NPCs, as the trainer runs them
(``train.nervous_link``, ``governor.runtime.GovernedReflex``). Every world tick:

- the **cells** run over every NPC's senses, and their fired waves go out as **one** ``WaveBatch`` (all
  NPCs, column ``npc``; empty when none fired) on ``{env}.nervous.cells.bank.wave``, the governor's
  input;
- each NPC's **brain** is asked only when due at its tick rate r: the world sends the NPC its
  ``Observation`` once every ``p = ticks_per_action(hz, r)`` world ticks (``ceil(hz / r - 1/2)``:
  every ``20 / r`` at 20 Hz), at its own ticks: NPC i's are the ticks t with ``t % p == i % p``
  (``governor.runtime.own_tick``, as in-process), so the NPCs at one rate are staggered over its
  period (96 NPCs at 5 Hz: 24 wake-ups a tick, not 96 at one tick and none at the next three), and an
  NPC process wakes only at its brain ticks. A body that is born (tick 0, a respawn, a new episode)
  is woken at its first own tick from the current one on (at 20 Hz at once; a new episode's NPCs
  at 5 Hz over its first 4 ticks). The observation
  carries what the NPC needs between wake-ups: its reward summed since the last one, whether its slot
  ended meanwhile, the world's per-tick moving averages of its reward and nerve overrides (for its
  state report) and whether a nerve overrode its last brain action (kept out of its PPO loss);
- its **nerves** run over the proposed action, the brain's (``Action``, naming the observation's
  tick, arrived before the step) or else STAY: a nerve may move the NPC between brain calls (out of
  danger, round an obstacle, towards unvisited cells), as it may change a brain's action.
  ``reflexes`` counts the moves nerves made between brain calls.

With an ``escalator`` (the cortex link, ``organs.link.CortexLink``, ``cortex.backend=engine|http``) the
escalation path runs here too, as in-process: the cells' waves collapse (``BatchCollapse``), a
collapse waits up to ``collapse_hold_ticks`` for its gate (the gates of the NPC's last command) and is
offered once; an escalation costs ``lifeforce.per_escalation``; a plan that comes back replaces the
brain's action until it is done (nerves leave its steps alone). The live link is non-blocking
(``CortexLink(blocking=False)``, as ``train.modes`` makes it): a tick submits its escalations and goes
on, an answer becomes a plan at the first tick it is in (an NPC with a request in flight does not
escalate again; its death or birth discards the request), so a slow HTTP cortex never holds the world
clock. The plans are stepped when the tick's NPCs are woken (``wake``), and an NPC following a plan is
**not woken**: its brain is neither asked nor charged while the plan acts for it, and it is due again
(at once, its period having passed) the tick its plan ends. ``escalations`` and ``plan_ticks`` count
them per NPC.

There is no per-NPC-process reflex path any more: an NPC process that ran cells and nerves on an
observation every tick cost about 720 us per tick even at 2 Hz (decoding the observation alone about
340 us), so 64 NPCs missed 45-57 % of their ticks on 2 cores; batched here, all of them cost a few
microseconds per NPC (``governor.costs``).

With ``trails`` (a ``organs.trails.recorder.TrailRecorder`` whose sink is an
``organs.trails.bus_sink.BusTrailSink``, ``runtime.organism.trails=true``) the live organism writes
decision trails: the escalator records each escalation into it (``organs.link.TrailSink``), the
governor service publishes its gate decisions itself, and the world server hears those on
``{env}.trails.decision.event`` and measures every event's outcome ``trails.outcome_ticks`` world
ticks on (reward, lock opened, died), as the in-process recorder does. Each tick's messages are handed
to the sink, which publishes them into the trails stream in its own task: the tick never waits for
the broker, and what the stream did not take is counted there.

A woken NPC whose brain action did not arrive in time for its tick is a **missed tick** (counted from
its first action on; STAY applies); a late action (naming an earlier tick) is dropped and counted in
``late``. r is learned from the NPC's state reports and from the commands it is sent (it obeys them at
once); a command makes the NPC due no later than its next own tick at the new rate (within
``ticks_per_action`` ticks after the current one: a faster rate shortens the wait, a slower one keeps
it). A state report naming a tick before the world
heard the NPC's last command does not set its rate (it was sent before the NPC obeyed). Each brain
action is charged as one brain call (``lifeforce``, ``GridWorld.charge``), as training charges every
brain evaluation: an NPC slowed down by the governor thinks, and pays, less often; a reflex is free.
Each organ call the organ host served (its ``OrganCharge`` on ``{env}.organs.*.charge``) is charged to
the NPC that asked, paid at the next step (``organ_charges`` counts them).

An action or state report is taken only from its NPC's own subject: one on ``npc.{i}.action`` (or
``.state``) that names another NPC is rejected, counted per subject in ``spoofed`` and logged (the
first ten per subject, then every thousandth), naming both ids. ``acted`` counts brain calls. Latency
is measured from publishing an observation to receiving its action, for actions in time for their
tick and, apart, late ones (``latencies_ms``). ``on_frame(world, actions=, tick_rate=, cpu_use=)``
(e.g. ``train.live_feed.FramePublisher.maybe_publish``) is called after each step.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from governor.runtime import Escalator, own_tick
from nervous import subjects
from nervous.bus import Bus
from nervous.cells import CellBank
from nervous.collapse import BatchCollapse
from nervous.lifeforce import LifeforceConfig, lifeforce_cost
from nervous.messages import (
    REGIONS,
    Action,
    Command,
    NpcState,
    Observation,
    OrganCharge,
    TrailEvent,
    TrailKind,
)
from nervous.nerves import NerveBank, NerveConfig
from organs.trails.recorder import TrailRecorder
from world import GridWorld, stage_config
from world.tiles import Action as Act

log = logging.getLogger(__name__)

CLOCKS = ("realtime", "lockstep")
#: Ticks back for which the world remembers when it sent each observation (latency of late actions).
OBS_TIMES = 16
#: Weight of the newest world tick in the reward-rate and override-rate moving averages
#: (``governor.runtime.RATE_EMA``, ``governor.inputs.OVERRIDE_EMA``).
RATE_EMA = 0.05


@dataclass
class WorldServerConfig:
    """The world server of the process runtime."""

    stage: int = 3
    """Curriculum stage preset of the world."""
    n_npcs: int = 16
    """NPC slots (one NPC process each)."""
    seed: int = 0
    """World seed."""
    hz: float = 20.0
    """World ticks per second."""
    clock: str = "realtime"
    """realtime (wall clock) or lockstep (each tick waits for the due NPCs)."""
    lockstep_timeout_s: float = 0.5
    """Lockstep: longest wait for due NPCs before stepping anyway."""
    run: str = "organism"
    """Run name (frames subject)."""
    latency_samples: int = 200_000
    """Action latencies kept for percentiles."""
    obs_spread: float = 0.5
    """Realtime clock: fraction of a tick over which the observations go out, NPC after NPC (0: at once)."""
    lifeforce: LifeforceConfig = field(default_factory=LifeforceConfig)
    """What living and thinking cost: each fresh action is one brain call (as in training)."""
    tick_rate: int = 20
    """Every NPC's brain rate (Hz) until a command or its state report says otherwise."""
    nerves: bool = True
    """Run the NPCs' nerves (collision avoidance, exploration) every tick over their actions."""
    collapse_hold_ticks: int = 10
    """With an escalator: world ticks a collapse waits for its gate (``governor.collapse_hold_ticks``)."""
    llm_priority: int = 5
    """With an escalator: the LLM priority of every escalation (0-10)."""

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"runtime.organism.clock={self.clock!r}: must be one of {', '.join(CLOCKS)}")
        if not 1.0 <= self.hz <= 100.0:
            raise ValueError(f"world_server.hz={self.hz!r}: must be in 1..100")
        if not isinstance(self.n_npcs, int) or self.n_npcs < 1:
            raise ValueError(f"world_server.n_npcs={self.n_npcs!r}: must be an integer >= 1")
        if not isinstance(self.tick_rate, int) or not 1 <= self.tick_rate <= 20:
            raise ValueError(f"world_server.tick_rate={self.tick_rate!r}: must be an integer in 1..20")
        if not 0.0 <= self.obs_spread <= 0.9:
            raise ValueError(f"runtime.organism.obs_spread={self.obs_spread!r}: must be in 0..0.9 of a tick")


def ticks_per_action(hz: float, rate: float) -> int:
    """World ticks between two actions of an NPC acting at rate Hz."""
    return max(1, math.ceil(hz / rate - 0.5))


class WorldServer:
    """One env of the grid world, with the NPCs' cells and nerves, driven by their brains on the bus."""

    def __init__(self, config: WorldServerConfig, bus: Bus,
                 on_frame: Callable[..., Any] | None = None, escalator: Escalator | None = None,
                 trails: TrailRecorder | None = None) -> None:
        self.config = config
        self.bus = bus
        self.on_frame = on_frame
        self.escalator = escalator
        self.trails = trails
        """Records escalations and measures every trail event's outcome (``organs.trails.recorder``)."""
        if trails is not None and escalator is not None and getattr(escalator, "trails", False) is None:
            escalator.trails = trails  # type: ignore[attr-defined]  # the link's TrailSink
        self.world = GridWorld(stage_config(config.stage, n_npcs=config.n_npcs), num_envs=1, seed=config.seed)
        self.cells = CellBank()
        self.nerves = NerveBank(NerveConfig(seed=config.seed)) if config.nerves else None
        n = config.n_npcs
        self.tick = 0
        self.pending = np.zeros(n, dtype=np.int64)
        self.pending_tick = np.full(n, -1, dtype=np.int64)
        self.applied = np.zeros(n, dtype=np.int64)
        self.rate = np.full(n, float(config.tick_rate), dtype=np.float32)
        self.cpu_use = np.zeros(n, dtype=np.float32)
        self.lag_ms_max = np.zeros(n, dtype=np.float32)
        self.last_acted = np.full(n, -1, dtype=np.int64)
        """World tick of each NPC's last brain call (-1: none yet)."""
        self.next_due = np.zeros(n, dtype=np.int64)
        """World tick at which each NPC's brain is next due."""
        self.woken = np.zeros(n, dtype=bool)
        """NPCs sent the current tick's observation (their brain is due at it)."""
        self.was_alive = np.zeros(n, dtype=bool)
        self.command_tick = np.full(n, -1, dtype=np.int64)
        """World tick at which each NPC's last command was heard (-1: none)."""
        self.acted = np.zeros(n, dtype=np.int64)
        """Brain calls applied per NPC."""
        self.reflexes = np.zeros(n, dtype=np.int64)
        """Moves the nerves made between brain calls, per NPC."""
        self.observations = np.zeros(n, dtype=np.int64)
        """Observations sent per NPC (its wake-ups)."""
        self.wakeups_per_tick = np.zeros(n + 1, dtype=np.int64)
        """World ticks by how many NPCs they woke (index: NPCs woken at the tick)."""
        self.wave_batches = 0
        """Wave batches published (one per world tick)."""
        self.reward_sum = np.zeros(n, dtype=np.float64)
        """World reward per NPC summed over the ticks so far."""
        self.reward_rate = np.zeros(n, dtype=np.float64)
        self.override_rate = np.zeros(n, dtype=np.float64)
        self.unsent_reward = np.zeros(n, dtype=np.float64)
        """Reward of each NPC since its last observation."""
        self.unsent_terminated = np.zeros(n, dtype=bool)
        self.unsent_truncated = np.zeros(n, dtype=bool)
        self.brain_overridden = np.zeros(n, dtype=bool)
        """A nerve (or a plan) changed the NPC's last brain action."""
        # --- the escalation path (with an escalator) -------------------------------------------------
        self.collapse = BatchCollapse(self.cells.names, self.cells.regions)
        self.collapse.reset(n)
        self.gates = np.zeros((n, len(REGIONS)), dtype=bool)
        """Each NPC's gates as its last command set them."""
        self.held = np.zeros((n, len(REGIONS)), dtype=bool)
        """Collapse events waiting for their gate (at most ``collapse_hold_ticks``)."""
        self.held_tick = np.zeros((n, len(REGIONS)), dtype=np.int64)
        self.escalations = np.zeros(n, dtype=np.int64)
        """Escalations to the cortex per NPC."""
        self.plan_ticks = np.zeros(n, dtype=np.int64)
        """Ticks each NPC followed a plan."""
        self._plan_actions = np.full(n, Act.STAY, dtype=np.int64)
        """The plans' actions at tick ``_followed`` (where ``_following``)."""
        self._following = np.zeros(n, dtype=bool)
        """NPCs a plan acts for at tick ``_followed`` (not woken, their brains not charged)."""
        self._followed = -1
        self.missed = np.zeros(n, dtype=np.int64)
        self.late = np.zeros(n, dtype=np.int64)
        self.lifeforce_sum = np.zeros(n, dtype=np.float64)
        self.deaths = np.zeros(n, dtype=np.int64)
        self.obs_times = np.zeros((OBS_TIMES, n), dtype=np.float64)
        """When each observation of the last ``OBS_TIMES`` ticks went out (row: tick % OBS_TIMES)."""
        self.latency = np.zeros(config.latency_samples, dtype=np.float64)
        self.latency_late = np.zeros(config.latency_samples, dtype=bool)
        self.n_latency = 0
        self.overruns = 0
        self.bad_actions = 0  # actions naming a tick not yet observed
        #: Per subject: messages on NPC i's action or state subject that named another NPC (rejected).
        self.spoofed: Counter[str] = Counter()
        self.organ_charges: Counter[str] = Counter()
        """Organ charges heard on ``{env}.organs.*.charge``: applied, and refused (no such NPC here)."""
        self._due_left = 0
        self._all_in = asyncio.Event()
        self._subs: list[Any] = []
        self._side = self.world.V
        life = config.lifeforce
        self._charges = life.per_tick > 0 or life.per_brain_call > 0

    # -- bus --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to every NPC's actions, state reports and commands (each handler knows whose subject)."""
        for i in range(self.config.n_npcs):
            self._subs.append(await self.bus.subscribe(subjects.npc_action(i), Action,
                                                       functools.partial(self._on_action, i)))
            self._subs.append(await self.bus.subscribe(subjects.npc_state(i), NpcState,
                                                       functools.partial(self._on_state, i)))
            self._subs.append(await self.bus.subscribe(subjects.npc_command(i), Command, self._on_command))
        self._subs.append(await self.bus.subscribe(subjects.all_organ_charges_pattern(), OrganCharge,
                                                   self._on_organ_charge))
        if self.trails is not None:  # the governor's gate decisions: their outcomes are measured here
            self._subs.append(await self.bus.subscribe(subjects.trail_event(), TrailEvent, self._on_trail))

    async def stop(self) -> None:
        """Unsubscribe."""
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    def _spoofed(self, i: int, named: int, subject: str) -> bool:
        """Whether a message on NPC i's subject names another NPC; if so count it and log (rate-limited)."""
        if named == i:
            return False
        n = self.spoofed[subject] = self.spoofed[subject] + 1
        if n <= 10 or n % 1000 == 0:  # under attack: the first ten, then every thousandth
            log.warning("%s: names npc %d, not npc %d whose subject it is; rejected (%d spoofed on this "
                        "subject)", subject, named, i, n)
        return True

    def _on_action(self, i: int, msg: Action, raw: Any) -> None:
        if self._spoofed(i, msg.npc, raw.subject):
            return
        if msg.tick == self.tick:
            if self.pending_tick[i] != self.tick:
                self._latency(i, msg, late=False)
                if self.woken[i]:
                    self._due_left -= 1
                    if self._due_left <= 0:
                        self._all_in.set()
            self.pending[i] = msg.action
            self.pending_tick[i] = msg.tick
        elif msg.tick < self.tick:
            self.late[i] += 1
            self._latency(i, msg, late=True)
            self.last_acted[i] = max(self.last_acted[i], msg.tick)
        else:
            self.bad_actions += 1

    def _latency(self, i: int, msg: Action, late: bool) -> None:
        """Keep the latency of an action (one of the last ``OBS_TIMES`` ticks'), while there is room."""
        n = self.n_latency
        if n < len(self.latency) and self.tick - msg.tick < OBS_TIMES:
            self.latency[n] = time.monotonic() - self.obs_times[msg.tick % OBS_TIMES, i]
            self.latency_late[n] = late
            self.n_latency += 1

    def _on_state(self, i: int, msg: NpcState, raw: Any) -> None:
        if self._spoofed(i, msg.npc, raw.subject):
            return
        if msg.tick >= self.command_tick[i]:  # a report from before the last command would undo it
            self.rate[i] = msg.tick_rate
        self.cpu_use[i] = msg.cpu_use
        self.lag_ms_max[i] = max(self.lag_ms_max[i], msg.lag_ms)

    def _on_command(self, msg: Command, raw: Any) -> None:
        # the NPC obeys a command on its own subject at once (and rejects one naming another NPC): a
        # faster rate shortens the wait for its next wake-up, a slower one keeps it
        i = msg.npc
        if i < self.config.n_npcs and raw.subject == subjects.npc_command(i):
            self.rate[i] = msg.tick_rate
            self.command_tick[i] = self.tick
            self.gates[i] = [bool(msg.gates.get(region, False)) for region in REGIONS]
            period = ticks_per_action(self.config.hz, msg.tick_rate)
            self.next_due[i] = min(self.next_due[i], int(own_tick(i, period, self.tick)))

    def _on_organ_charge(self, msg: OrganCharge, raw: Any) -> None:
        # an organ call the organ host served costs the asking NPC lifeforce, paid at the next world step
        if msg.npc >= self.config.n_npcs:
            self.organ_charges["refused"] += 1
            return
        cost = np.zeros((1, self.config.n_npcs), dtype=np.float32)
        cost[0, msg.npc] = msg.cost
        self.world.charge(cost)
        self.organ_charges["applied"] += 1

    def _on_trail(self, msg: TrailEvent, raw: Any) -> None:
        # another process's gate decision (the governor's): its outcome K ticks from now
        if msg.kind is TrailKind.GATE and msg.npc < self.config.n_npcs and self.trails is not None:
            self.trails.watch(self.world, 0, msg.npc, msg.id)

    # -- ticks ------------------------------------------------------------------------------------

    def step(self) -> None:
        """Count missed ticks, run the cells and the nerves over the brains' actions (STAY where none
        came), charge the brain calls, step the world."""
        w, tick = self.world, self.tick
        alive = w.alive[0]
        if self._followed != tick:  # stepped without waking first
            self._follow()
        following = self._following & alive
        brain = (self.pending_tick == tick) & ~following  # a plan acts for an NPC: no brain call to pay
        self.missed += self.woken & ~brain & (self.last_acted >= 0) & alive
        proposed = np.where(brain, self.pending, Act.STAY)
        self.acted += brain
        self.last_acted[brain] = tick
        # --- the NPCs' nervous system, batched as in-process ----------------------------------------
        views, proprio = w.views[0], w.proprio[0]
        self.cells.step(views, proprio, tick)
        escalated = self._escalate(alive)
        proposed = np.where(following, self._plan_actions, proposed)
        self.plan_ticks += following
        if self.nerves is not None:  # a plan's steps stand as they are
            final, over = self.nerves.apply(proposed, views, proprio, keep=following)
            over &= alive
        else:
            final, over = proposed, np.zeros_like(alive)
        self.applied[:] = final
        self.reflexes += over & ~brain
        self.brain_overridden[brain] = (over | following)[brain]
        self.override_rate += RATE_EMA * (over - self.override_rate)
        # --- what it costs, and the world's step ---------------------------------------------------
        if self._charges or escalated.any():  # an NPC that thinks at a lower tick rate pays for fewer calls
            w.charge(lifeforce_cost(self.config.lifeforce, ticks=1, brain_calls=brain, escalations=escalated,
                                    alive=alive)[None])
        w.step(self.applied[None])
        rewards = w.rewards[0]
        self.reward_sum += rewards
        self.reward_rate += RATE_EMA * (rewards - self.reward_rate)
        self.unsent_reward += rewards
        self.unsent_terminated |= w.terminals[0]
        self.unsent_truncated |= w.truncations[0]
        self.lifeforce_sum += w.lifeforce[0]
        self.deaths += w.died[0]
        if self.trails is not None:  # outcomes due, and this tick's events, to the sink (it never blocks)
            self.trails.tick(w)
            self.trails.flush()
        self.tick += 1
        if self.on_frame is not None:
            self.on_frame(w, actions=self.applied, tick_rate=self.rate, cpu_use=self.cpu_use)

    def _escalate(self, alive: np.ndarray) -> np.ndarray:
        """escalated bool [N] for this tick: the cells' collapses on open gates go to the escalator (held
        up to ``collapse_hold_ticks``, offered once), as in ``governor.runtime``."""
        n = len(alive)
        if self.escalator is None:
            return np.zeros(n, dtype=bool)
        waves = self.cells.last
        assert waves is not None
        combined, fired = self.collapse.update(waves)
        self.held |= fired & alive[:, None]
        self.held_tick[fired] = self.tick
        self.held &= self.tick - self.held_tick < self.config.collapse_hold_ticks
        requests = self.held & self.gates
        escalated = np.zeros(n, dtype=bool)
        if requests.any():
            self.held &= ~requests  # offered once: used up, escalated or not
            priority = np.full((1, n), self.config.llm_priority, dtype=np.int64)
            asked = self.escalator.escalate(self.world, requests[None], priority, combined[None], waves)
            escalated = asked[0]
            self.escalations += escalated
        return escalated

    def _follow(self) -> None:
        """The plans' actions at the current tick (``_plan_actions`` where ``_following``), stepped before
        its NPCs are woken: one a plan acts for is not; one whose plan ended is woken at once."""
        n = self.config.n_npcs
        self._followed = self.tick
        if self.escalator is None:
            self._following = np.zeros(n, dtype=bool)
            return
        planned, following = self.escalator.follow(self.world, np.full((1, n), Act.STAY, dtype=np.int64))
        self._plan_actions, self._following = planned[0], following[0] & self.world.alive[0]

    def wake(self) -> np.ndarray:
        """bool [N]: the NPCs whose brain is due at the current tick (each at its own ticks, a born body at
        its first from this one on) and no plan acts for; their next wake-up is their next own tick.
        Newborn bodies' cells and nerves forget their old lives, and their plans and cortex requests in
        flight are dropped."""
        w = self.world
        alive = w.alive[0]
        born = alive & ~self.was_alive
        if self.tick > 0 and w.env_done[0]:  # a new episode: every body is new, every cell forgets
            born |= alive
            self.cells.reset(np.ones(len(alive), dtype=bool))
        if born.any():
            for i in np.flatnonzero(born).tolist():  # at its first own tick from this one on
                period = ticks_per_action(self.config.hz, float(self.rate[i]))
                self.next_due[i] = own_tick(i, period, self.tick - 1)
            if self.nerves is not None:
                self.nerves.reset(born)
        if self.escalator is not None and (born | (self.was_alive & ~alive)).any():
            self.escalator.reset((born | (self.was_alive & ~alive))[None])  # plans die with their body
            self.held[born | ~alive] = False
        self.was_alive = alive.copy()
        self._follow()
        woken = alive & (self.tick >= self.next_due) & ~self._following
        for i in np.flatnonzero(woken).tolist():
            self.next_due[i] = own_tick(i, ticks_per_action(self.config.hz, float(self.rate[i])), self.tick)
        self.woken = woken
        self.wakeups_per_tick[int(woken.sum())] += 1
        return woken

    async def publish_observations(self, spread_s: float = 0.0) -> None:
        """Publish the last step's waves as one batch (every tick, fired or not: the governor's collapse
        ticks with it), and the current tick's observation of every NPC woken, the k-th of K at k / K of
        spread_s seconds."""
        if self.cells.last is not None:
            self.wave_batches += 1
            try:
                await self.bus.publish(subjects.cell_wave("bank"), self.cells.last.to_batch())
            except Exception as exc:  # broker away beyond the pending buffer: the governor misses a tick
                log.debug("wave publish failed: %s", exc)
        woken = np.flatnonzero(self.wake()).tolist()
        self._due_left = len(woken)
        self._all_in.clear()
        w = self.world
        t0 = time.monotonic()
        for k, i in enumerate(woken):
            if spread_s > 0.0 and k > 0:
                delay = t0 + spread_s * k / len(woken) - time.monotonic()
                if delay > 0.0:
                    await asyncio.sleep(delay)
            obs = Observation(npc=i, tick=self.tick, side=self._side, view=w.views[0, i].tobytes(),
                              proprio=w.proprio[0, i].tobytes(), reward=float(self.unsent_reward[i]),
                              action_mask=w.action_mask[0, i].tobytes(),
                              terminated=bool(self.unsent_terminated[i]),
                              truncated=bool(self.unsent_truncated[i]), sent=time.time(),
                              reward_rate=float(self.reward_rate[i]),
                              override_rate=float(np.clip(self.override_rate[i], 0.0, 1.0)),
                              overridden=bool(self.brain_overridden[i]))
            self.unsent_reward[i] = 0.0
            self.unsent_terminated[i] = self.unsent_truncated[i] = self.brain_overridden[i] = False
            self.observations[i] += 1
            self.obs_times[self.tick % OBS_TIMES, i] = time.monotonic()
            try:
                await self.bus.publish(subjects.npc_obs(i), obs)
            except Exception as exc:  # broker away beyond the pending buffer: the NPCs miss this tick
                log.debug("obs publish failed: %s", exc)

    async def run(self, stop: asyncio.Event, ticks: int | None = None) -> None:
        """Tick until stop is set (or for a number of ticks)."""
        period = 1.0 / self.config.hz
        spread = self.config.obs_spread * period if self.config.clock == "realtime" else 0.0
        await self.publish_observations(spread)
        next_t = time.monotonic() + period
        done = 0
        while not stop.is_set() and (ticks is None or done < ticks):
            if self.config.clock == "lockstep":
                if self._due_left > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._all_in.wait(), self.config.lockstep_timeout_s)
            else:
                delay = next_t - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        break
                elif delay < -period:
                    self.overruns += 1
                    next_t = time.monotonic()
                next_t += period
            self.step()
            await self.publish_observations(spread)
            done += 1

    # -- results ----------------------------------------------------------------------------------

    def latencies_ms(self, start: int = 0, late: bool = False) -> np.ndarray:
        """Observation-to-action latencies in ms, from sample start on: of the actions in time for their
        tick (late: of the late ones too)."""
        end = self.n_latency
        keep = np.ones(end - start, dtype=bool) if late else ~self.latency_late[start:end]
        return self.latency[start:end][keep] * 1000.0

    def summary(self) -> dict[int, dict[str, Any]]:
        """Per NPC: brain calls (``ticks``), reflexes, observations, missed, late, escalations, plan ticks,
        spoofed, reward, mean and final lifeforce, alive, deaths, worst lag."""
        t = max(self.tick, 1)
        return {i: {"ticks": int(self.acted[i]), "reflexes": int(self.reflexes[i]),
                    "observations": int(self.observations[i]),
                    "missed": int(self.missed[i]), "late": int(self.late[i]),
                    "escalations": int(self.escalations[i]), "plan_ticks": int(self.plan_ticks[i]),
                    "reward": round(float(self.reward_sum[i]), 4),
                    "spoofed": self.spoofed[subjects.npc_action(i)] + self.spoofed[subjects.npc_state(i)],
                    "lifeforce_mean": float(self.lifeforce_sum[i] / t),
                    "lifeforce": float(self.world.lifeforce[0, i]), "alive": bool(self.world.alive[0, i]),
                    "deaths": int(self.deaths[i]),
                    "lag_ms_max": round(float(self.lag_ms_max[i]), 2)}
                for i in range(self.config.n_npcs)}
