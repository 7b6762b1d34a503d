"""The governor's own process on the bus: NPC states and waves in; allocations, gate and collapse events out.

``python -m governor --url nats://HOST:PORT --npcs N --kind heuristic [--set field=value ...]`` governs NPCs
``0..N-1`` (``--config-json`` gives the whole ``GovernorConfig`` as JSON, ``--set`` changes one field,
its value read as YAML: ``--set tick_rates=[1,5,20]``; ``--kind`` wins over both). Started by the
organism's supervisor through the fork server as ``child_main(config)`` (``runtime=processes``).

What it hears:

- ``{env}.npc.*.state`` (``NpcState``): each report feeds ``GovernorInputs``; a report follows an
  action, so its tick counts as the NPC's latest brain call.
- ``{env}.nervous.cells.*.wave`` (``WaveBatch``): above all the world server's one batch per world
  tick, every NPC's waves of its cell bank (``agents.world_server``), taken at once by the in-process
  runtime's ``BatchCollapse``; waves of other cells (a cell service's) go through one ``WaveCollapse``
  per NPC. Both turn waves into ``CollapseEvent`` messages, which go into the inputs and out on
  ``{env}.thalamus.governor.collapse``. An NPC's wave column is the noisy-OR of its live waves (of the
  newest bank batch, and of the other cells at the newest tick heard from it). A batch that does not
  decode is refused by the bus with one line and counted (``bus.bad_messages``, in the heartbeat's
  ``errors``); waves for NPCs it does not govern are counted in ``bad_inputs`` with one line.

The world tick of a decision is the newest tick heard from any NPC. Every ``1 / governor_hz`` seconds
it decides for all NPCs at once with ``make_governor(config)`` and publishes on
``{env}.thalamus.governor.allocate``:

- the ``Allocation`` of every NPC whose decision changed since what it was last sent;
- every living NPC's allocation each ``refresh_s`` (a full refresh, so a restarted supervisor or NPC
  catches up), and at once an NPC's whose reported tick rate still differs from what it was sent
  ``resend_s`` after sending it (a restarted NPC starts at its configured rate).

Each gate transition goes out as a ``GateEvent`` on ``{env}.thalamus.gate.open`` / ``.close`` (the
confidence is that of the region's held collapse event); with ``trails`` each transition of a living
NPC is also a ``TrailEvent`` (its inputs that mattered: ``organs.trails.recorder.gate_inputs``) published
into the trails stream by a ``BusTrailSink`` in its own task; its outcome is measured by the world
server, which hears the event. Each NPC's vision organ gate that changed (``governor.organ_gates``: open
with its math or food gate while it can afford a look), and at each full refresh every living NPC's,
goes out as an ``OrganGate`` on ``{env}.organs.vision.gate``, which the organ host
(``organs.gate=governed``) and the live cortex link (``BusOrgans``) follow.

Each decision's latency, from taking the NPC states in to the last allocation out (``decision_ms``), is
logged as p50/p99 every ``LATENCY_LOG_EVERY`` decisions and when it stops. A ``Heartbeat`` goes out
every ``heartbeat_s`` on ``{env}.thalamus.governor.heartbeat`` (``requests``: decisions made,
``errors``: bad messages and reports for NPCs it does not govern), so the supervisor can tell a hung
governor.

NPCs it has not heard from yet (or that reported themselves dead) get no allocation: they keep what
they have. A governor that dies leaves every NPC on its last settings; a restarted one starts from
nothing and re-sends every living NPC's allocation once it has heard from it. A malformed message is
counted and logged (``nervous.bus``); a report for an NPC id it does not govern is counted and logged
with one line naming the field. SIGTERM or SIGINT drains the connection and exits 0. Bad config (an
unknown kind or field, a CPU budget below the NPCs' minimum quotas, ...): one ``error:`` line, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

from governor.baselines import Governor, make_governor
from governor.config import KINDS, GovernorConfig
from governor.decisions import Decisions
from governor.inputs import COLLAPSE, CPU_USE, GlobalContext, GovernorInputs, region_column
from governor.organ_gates import VISION
from nervous import subjects
from nervous.bus import Bus, BusConfig, BusError
from nervous.cells import CellBank
from nervous.cells.base import WaveArrays
from nervous.collapse import BatchCollapse, CollapseConfig, WaveCollapse
from nervous.messages import (
    REGIONS,
    Allocation,
    CollapseEvent,
    GateEvent,
    Heartbeat,
    NpcState,
    OrganGate,
    TrailEvent,
    TrailOutcome,
    WaveBatch,
)
from nervous.signals import stop_on_signals
from organs.trails.bus_sink import BusTrailSink
from organs.trails.recorder import gate_event

log = logging.getLogger(__name__)

#: Bad inputs logged one by one before the log thins out to every thousandth.
_LOG_FIRST = 10
#: Decisions between two log lines of the decision latency (and one when it stops).
LATENCY_LOG_EVERY = 20


def governor_config(data: dict[str, Any]) -> GovernorConfig:
    """A GovernorConfig from a dict; ValueError naming an unknown field."""
    known = GovernorConfig.field_names()
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"governor.{unknown[0]}: no such governor field (known: {', '.join(known)})")
    return GovernorConfig(**data)


@dataclass
class GovernorServiceConfig:
    """The governor process: which governor, over how many NPCs, on which bus, how often it re-sends."""

    governor: GovernorConfig = field(default_factory=GovernorConfig)
    """The governor itself (kind, cadence, CPU budget, parameters)."""
    npcs: int = 16
    """NPCs governed: ids 0..npcs-1."""
    url: str = ""
    """nats://host:port of the organism's bus."""
    refresh_s: float = 5.0
    """Seconds between two full refreshes (every living NPC's allocation, changed or not)."""
    resend_s: float = 1.0
    """Seconds after which an NPC whose reported tick rate differs from what it was sent is sent it again."""
    heartbeat_s: float = 0.5
    """Seconds between heartbeats."""
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    """How waves collapse into events (window, threshold, distinct cells)."""
    trails: bool = False
    """Publish every gate decision as a ``TrailEvent`` into the trails stream (decision trails)."""
    run: str = "organism"
    """Run name of the trail events (their ids and ``run`` column)."""
    stage: int = -1
    """Curriculum stage of the world, recorded with each trail event (-1: not known)."""

    def __post_init__(self) -> None:
        if isinstance(self.governor, dict):
            self.governor = governor_config(self.governor)
        if isinstance(self.collapse, dict):
            self.collapse = CollapseConfig(**self.collapse)
        if not isinstance(self.npcs, int) or isinstance(self.npcs, bool) or self.npcs < 1:
            raise ValueError(f"npcs={self.npcs!r}: must be an integer >= 1")
        for name in ("refresh_s", "resend_s", "heartbeat_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be > 0 seconds")
        self.governor.check_npcs(self.npcs)
        if self.trails and not (1 <= len(self.run) <= 64 and "\x00" not in self.run):
            raise ValueError(f"run={self.run!r}: with trails, must be 1-64 characters")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GovernorServiceConfig:
        """A config from a dict (the fork server's child config); ValueError naming an unknown field."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: no such field (known: {', '.join(sorted(known))})")
        return cls(**data)


class GovernorService:
    """One governor over N NPCs on the bus: hears states and waves, publishes decisions and events."""

    def __init__(self, config: GovernorServiceConfig, bus: Bus | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.bus = bus
        self.clock = clock
        c = config.governor
        self.governor: Governor = make_governor(c)
        self.npc_ids = tuple(range(config.npcs))
        self.inputs = GovernorInputs(c, self.npc_ids)
        n = config.npcs
        self.collapse = [WaveCollapse(config.collapse) for _ in range(n)]
        """Collapse of waves from other cells than the world's bank (cell services), per NPC."""
        self.streamed = np.zeros(n, dtype=bool)
        """NPCs some of whose waves came from other cells than the bank's."""
        bank = CellBank()
        self.bank = BatchCollapse(bank.names, bank.regions, config.collapse)
        """Collapse of the world server's batches of the bank's cells, all NPCs at once (as in-process)."""
        self.bank.reset(n)
        self.bank_waves = np.zeros((n, len(REGIONS)), dtype=np.float32)
        """Combined confidence per NPC and region of the newest bank batch."""
        self.wave_batches = 0
        """Wave batches taken."""
        self.heard_tick = np.full(n, -1, dtype=np.int64)
        """Newest world tick heard from each NPC (a state report or a wave)."""
        self.reported_rate = np.zeros(n, dtype=np.int64)
        """Tick rate each NPC last reported (0: none yet)."""
        self.tick = 0
        """Newest world tick heard from any NPC: the tick of the next decision."""
        self.sent = _nothing(n)
        """What each NPC was last sent (rows never sent are not alive here)."""
        self.sent_at = np.full(n, -np.inf)
        self.gates = np.zeros((n, len(REGIONS)), dtype=bool)
        """Gates as last decided, for the transitions."""
        self.next_refresh = clock() + config.refresh_s
        self.vision = np.zeros(n, dtype=bool)
        """Each NPC's vision organ gate as last decided (``governor.organ_gates``)."""
        self.organ_gates: list[OrganGate] = []
        """The ``OrganGate`` messages the last ``plan`` made: the vision gates that changed, and at a full
        refresh every living NPC's (a restarted organ host catches up)."""
        self.organ_gates_sent = 0
        self.decisions_made = 0
        self.allocations_sent = 0
        self.gate_events_sent = 0
        self.collapse_events_sent = 0
        self.bad_inputs = 0
        self.decision_ms: collections.deque[float] = collections.deque(maxlen=100_000)
        """Per decision: ms from taking the NPC states in to the last allocation and gate event handed to
        the bus client (the wait for the next governor tick is not in it)."""
        self.started = clock()
        self._seq = 0
        self.trails: Callable[[list[TrailEvent | TrailOutcome]], Any] | None = None
        """Where gate decisions go as trail events (a ``BusTrailSink``; None: not recorded)."""

    # -- what it hears ----------------------------------------------------------------------------

    def _bad(self, exc: ValueError) -> None:
        self.bad_inputs += 1
        if self.bad_inputs <= _LOG_FIRST or self.bad_inputs % 1000 == 0:
            log.warning("governor: %s (%d bad inputs)", exc, self.bad_inputs)

    def observe_state(self, msg: NpcState) -> None:
        """Take one NPC's state report (a report for an NPC not governed is counted and logged)."""
        try:
            self.inputs.observe_state(msg)
        except ValueError as exc:
            self._bad(exc)
            return
        i = self.inputs.slot[msg.npc]
        self.reported_rate[i] = msg.tick_rate
        self.heard_tick[i] = max(self.heard_tick[i], msg.tick)
        self.tick = max(self.tick, msg.tick)
        if msg.alive:
            called = np.zeros(len(self.npc_ids), dtype=bool)
            called[i] = True
            self.inputs.observe_brain_calls(called, msg.tick)

    def observe_waves(self, batch: WaveBatch) -> list[CollapseEvent]:
        """Take a batch of waves; the collapse events they complete (waves of NPCs not governed: counted)."""
        self.wave_batches += 1
        self.tick = max(self.tick, batch.tick)
        if tuple(batch.cells) == self.bank.cells and tuple(batch.regions) == self.bank.regions:
            return self._observe_bank(batch)
        events = []
        strangers = 0
        for wave in batch.waves():
            i = self.inputs.slot.get(wave.npc)
            if i is None:
                strangers += 1
                continue
            self.streamed[i] = True
            self.heard_tick[i] = max(self.heard_tick[i], wave.tick)
            event = self.collapse[i].add(wave)
            if event is not None:
                self.inputs.observe_collapse(event)
                events.append(event)
        self._strangers(strangers)
        return events

    def _strangers(self, count: int) -> None:
        if count:
            self._bad(ValueError(f"wave_batch.npc: {count} waves for NPCs not governed "
                                 f"(the governor knows {len(self.npc_ids)} NPCs)"))

    def _observe_bank(self, batch: WaveBatch) -> list[CollapseEvent]:
        """Take one world tick's batch of the bank's cells for all NPCs through ``BatchCollapse``."""
        npc, index, confidence, value = batch.arrays()
        n, c = len(self.npc_ids), len(self.bank.cells)
        governed = (npc >= 0) & (npc < n)  # the governor's slot of NPC id k is k
        self._strangers(int((~governed).sum()))
        rows, cols = npc[governed], index[governed]
        arrays = WaveArrays(tick=batch.tick, cells=self.bank.cells, regions=self.bank.regions,
                            value_scale=np.ones(c, dtype=np.float32),
                            confidence=np.zeros((n, c), dtype=np.float32),
                            value=np.zeros((n, c), dtype=np.float32), fired=np.zeros((n, c), dtype=bool))
        arrays.confidence[rows, cols] = confidence[governed]
        arrays.value[rows, cols] = value[governed]
        arrays.fired[rows, cols] = True
        self.bank_waves, new = self.bank.update(arrays)
        if not new.any():
            return []
        age = batch.tick - self.bank.tick
        live = (age >= 0) & (age < self.bank.config.window_ticks)
        events = []
        for i, r in np.argwhere(new).tolist():
            cells = [self.bank.cells[k] for k in np.flatnonzero(live[i] & self.bank.member[r]).tolist()]
            event = CollapseEvent(npc=self.npc_ids[i], region=REGIONS[r], cells=sorted(cells),
                                  tick=batch.tick, confidence=min(float(self.bank_waves[i, r]), 1.0))
            self.inputs.observe_collapse(event)
            events.append(event)
        return events

    # -- what it decides --------------------------------------------------------------------------

    def decide(self) -> tuple[Decisions, np.ndarray]:
        """(decisions, inputs array) for every NPC at the newest world tick heard."""
        waves = self.bank_waves.copy()
        for i in np.flatnonzero(self.inputs.alive & self.streamed & (self.heard_tick >= 0)).tolist():
            at = int(self.heard_tick[i])
            self.collapse[i].expire(at)
            streamed = [self.collapse[i].combined(self.npc_ids[i], region, at) for region in REGIONS]
            waves[i] = 1.0 - (1.0 - waves[i]) * (1.0 - np.asarray(streamed, dtype=np.float32))  # noisy-OR
        self.inputs.observe_waves(waves)
        cpu = float(self.inputs.state[self.inputs.alive, CPU_USE].sum())
        context = GlobalContext(tick=self.tick, cpu_in_use=cpu)
        features = self.inputs.features(context)
        decisions = self.governor.decide(features, context)
        self.decisions_made += 1
        return decisions, features

    def due_rows(self, d: Decisions, now: float) -> np.ndarray:
        """bool [N]: living NPCs to send an allocation to now (changed, refresh, or rate not taken)."""
        rows = d.changed(self.sent)
        if now >= self.next_refresh:
            rows |= d.alive
            self.next_refresh = now + self.config.refresh_s
        not_taken = (self.reported_rate > 0) & (self.reported_rate != self.sent.tick_rate)
        rows |= d.alive & self.sent.alive & not_taken & (now - self.sent_at >= self.config.resend_s)
        return rows

    def allocations_for(self, d: Decisions, rows: np.ndarray) -> list[Allocation]:
        """The Allocation messages of rows, and remember them as sent."""
        out = [a for a in d.to_allocations(self.npc_ids, self.tick) if rows[self.inputs.slot[a.npc]]]
        s = self.sent
        for name in ("tick_rate", "cpu_quota", "gates", "llm_priority"):
            getattr(s, name)[rows] = getattr(d, name)[rows]
        s.alive[:] = d.alive  # a row that died is sent again in full once it lives
        return out

    def gate_events(self, d: Decisions, features: np.ndarray) -> list[tuple[str, GateEvent]]:
        """(subject, GateEvent) of every gate that opened or closed since the last decision."""
        opened, closed = d.gates & ~self.gates, ~d.gates & self.gates
        self.gates = d.gates.copy()
        kind = self.config.governor.kind
        transitions = [(i, r, True) for i, r in np.argwhere(opened).tolist()]
        transitions += [(i, r, False) for i, r in np.argwhere(closed).tolist()]
        out = []
        trail: list[TrailEvent | TrailOutcome] = []
        for i, r, is_open in transitions:
            region = REGIONS[r]
            confidence = float(np.clip(features[i, region_column(COLLAPSE, region)], 0.0, 1.0))
            if is_open:
                reason = f"{kind}: collapse {confidence:.2f} on {region.value}"
            else:
                reason = f"{kind}: {'collapse over' if d.alive[i] else 'npc dead'}"
            event = GateEvent(npc=self.npc_ids[i], tick=self.tick, region=region, open=is_open,
                              confidence=confidence, reason=reason)
            out.append((subjects.gate_open() if is_open else subjects.gate_close(), event))
            if self.trails is not None and d.alive[i]:  # as in-process: a living NPC's decisions
                trail.append(gate_event(self.config.run, self.npc_ids[i], self.tick, region, is_open,
                                        features[i], stage=self.config.stage, decision=self.decisions_made))
        if trail and self.trails is not None:
            self.trails(trail)  # queued: published by the sink's own task
        return out

    # -- on the bus -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to every NPC's state reports and to every cell's waves."""
        bus = self._bus()
        await bus.subscribe(subjects.npc_states_pattern(), NpcState, self._on_state)
        await bus.subscribe(subjects.all_cell_waves_pattern(), WaveBatch, self._on_waves)
        await self.heartbeat()

    def _bus(self) -> Bus:
        if self.bus is None:
            raise BusError("governor: no bus")
        return self.bus

    def _on_state(self, msg: NpcState, raw: Any) -> None:
        self.observe_state(msg)

    async def _on_waves(self, batch: WaveBatch, raw: Any) -> None:
        for event in self.observe_waves(batch):
            await self._bus().publish(subjects.governor_collapse(), event)
            self.collapse_events_sent += 1

    def plan(self) -> tuple[list[Allocation], list[tuple[str, GateEvent]]]:
        """Decide once: the allocations due now and the (subject, GateEvent) transitions, taken as sent."""
        now = self.clock()
        d, features = self.decide()
        refresh = now >= self.next_refresh
        rows = self.due_rows(d, now)
        self.sent_at[rows] = now
        self.organ_gates = self.organ_gates_for(d, refresh)
        return self.allocations_for(d, rows), self.gate_events(d, features)

    def organ_gates_for(self, d: Decisions, refresh: bool) -> list[OrganGate]:
        """The ``OrganGate`` of every NPC whose vision gate changed (all living ones at a refresh)."""
        vision = d.organ_gates.get(VISION, np.zeros(len(d), dtype=bool))
        rows = (vision != self.vision) | (refresh & d.alive)
        self.vision = vision.copy()
        return [OrganGate(npc=self.npc_ids[i], organ=VISION, open=bool(vision[i]), tick=self.tick)
                for i in np.flatnonzero(rows).tolist()]

    async def step(self) -> list[Allocation]:
        """Decide once and publish the allocations due and the gate transitions; the allocations sent."""
        bus = self._bus()
        t0 = time.perf_counter()
        allocations, gate_events = self.plan()
        for organ_gate in self.organ_gates:  # first: a link escalating once its region gate opens knows it
            await bus.publish(subjects.organ_gate(organ_gate.organ), organ_gate)
            self.organ_gates_sent += 1
        subject = subjects.governor_allocate()
        for allocation in allocations:
            await bus.publish(subject, allocation)
            self.allocations_sent += 1
        for gate_subject, event in gate_events:
            await bus.publish(gate_subject, event)
            self.gate_events_sent += 1
        self.decision_ms.append(1000.0 * (time.perf_counter() - t0))
        return allocations

    def log_latency(self) -> None:
        """Log the decision latency so far (p50, p99 in ms)."""
        log.info("governor: decision latency p50 %.3f ms p99 %.3f ms over %d decisions (states in -> "
                 "allocations out)", self.decision_latency_ms(50), self.decision_latency_ms(99),
                 len(self.decision_ms))

    def decision_latency_ms(self, q: float) -> float:
        """The q-th percentile of ``decision_ms`` (nan before the first decision)."""
        return float(np.percentile(self.decision_ms, q)) if self.decision_ms else float("nan")

    async def heartbeat(self) -> None:
        """Publish one heartbeat: decisions made and bad inputs heard."""
        bus = self._bus()
        self._seq += 1
        errors = self.bad_inputs + sum(bus.bad_messages.values())
        await bus.publish(subjects.heartbeat("thalamus", "governor"), Heartbeat(
            domain="thalamus", service="governor", seq=self._seq, uptime_s=self.clock() - self.started,
            requests=self.decisions_made, errors=errors))

    async def run(self, stop: asyncio.Event) -> None:
        """Decide every 1 / governor_hz seconds and heartbeat every heartbeat_s until stop is set."""
        period = 1.0 / self.config.governor.governor_hz
        next_step = next_beat = self.clock()
        while not stop.is_set():
            delay = min(next_step, next_beat) - self.clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
            now = self.clock()
            try:
                if now >= next_step:
                    next_step = max(next_step + period, now)  # late: skip, do not catch up in a burst
                    await self.step()
                    if self.decisions_made % LATENCY_LOG_EVERY == 0:  # a killed governor leaves figures too
                        self.log_latency()
                if now >= next_beat:
                    next_beat = max(next_beat + self.config.heartbeat_s, now)
                    await self.heartbeat()
            except Exception as exc:  # disconnected beyond the pending buffer: try again next time
                log.debug("governor: publish failed: %s", exc)


def _nothing(n: int) -> Decisions:
    """Decisions of N rows none of which is alive: nothing sent yet."""
    return Decisions(tick_rate=np.zeros(n, dtype=np.int64), cpu_quota=np.zeros(n),
                     gates=np.zeros((n, len(REGIONS)), dtype=bool), llm_priority=np.zeros(n, dtype=np.int64),
                     alive=np.zeros(n, dtype=bool))


async def serve(config: GovernorServiceConfig, stop: asyncio.Event | None = None) -> int:
    """Run the governor on the bus until stop is set (or SIGTERM/SIGINT); the exit status."""
    service = GovernorService(config)  # bad config fails here, before the bus
    stop = stop or asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        stop_on_signals(stack, stop)
        service.bus = await stack.enter_async_context(Bus(BusConfig(url=config.url, name="governor")))
        if config.trails:
            sink = BusTrailSink(service.bus)
            sink.start()
            service.trails = sink
            stack.push_async_callback(sink.close)  # before the bus drains: what is queued goes out
        await service.start()
        log.info("governor %s over %d NPCs at %g Hz on %s", config.governor.kind, config.npcs,
                 config.governor.governor_hz, config.url)
        await service.run(stop)
    log.info("governor: stopped after %d decisions, %d allocations, %d gate events, %d bad inputs",
             service.decisions_made, service.allocations_sent, service.gate_events_sent, service.bad_inputs)
    service.log_latency()
    return 0


def assign(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``field=value`` (value read as YAML) to a governor config dict."""
    name, eq, text = assignment.partition("=")
    if not eq or not name:
        raise ValueError(f"--set {assignment!r}: expected field=value")
    try:
        data[name.strip()] = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = str(exc).splitlines()[0]
        raise ValueError(f"governor.{name.strip()}={text!r}: not a value ({reason})") from None


def parse_config(argv: Sequence[str] | None = None) -> GovernorServiceConfig:
    """The service config from the command line; ValueError (one line naming the field) when bad."""
    p = argparse.ArgumentParser(prog="python -m governor", description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("NIMMERVERSE_BUS_URL", ""),
                   help="nats://host:port of the bus (default: NIMMERVERSE_BUS_URL)")
    p.add_argument("--npcs", type=int, default=16, help="NPCs governed: ids 0..N-1")
    p.add_argument("--kind", default=None, help=f"the governor: {', '.join(KINDS)}")
    p.add_argument("--config-json", default="", help="the whole GovernorConfig as JSON")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="one GovernorConfig field, its value as YAML (repeatable): --set tick_rates=[1,5,20]")
    p.add_argument("--refresh-s", type=float, default=5.0, help="seconds between full refreshes")
    p.add_argument("--heartbeat-s", type=float, default=0.5, help="seconds between heartbeats")
    p.add_argument("--trails", action="store_true", help="publish every gate decision as a trail event")
    p.add_argument("--run", default="organism", help="run name of the trail events")
    p.add_argument("--stage", type=int, default=-1, help="curriculum stage recorded with the trail events")
    a = p.parse_args(argv)
    try:
        data = json.loads(a.config_json) if a.config_json else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config-json: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("--config-json: must be a JSON object of GovernorConfig fields")
    for assignment in a.set:
        assign(data, assignment)
    if a.kind is not None:
        data["kind"] = a.kind
    if not a.url:
        raise ValueError("--url: required (nats://host:port of the organism's bus, or NIMMERVERSE_BUS_URL)")
    return GovernorServiceConfig(governor=governor_config(data), npcs=a.npcs, url=a.url,
                                 refresh_s=a.refresh_s, heartbeat_s=a.heartbeat_s, trails=a.trails, run=a.run,
                                 stage=a.stage)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m governor``: run the governor process; bad config is one ``error:`` line and exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s governor %(levelname)s %(message)s")
    try:
        subjects.env()
        return asyncio.run(serve(parse_config(argv)))  # the governor is built before the bus is reached
    except (ValueError, NotImplementedError, BusError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2


def child_main(config: dict[str, Any]) -> int:
    """Entry point in a process forked by a supervisor's fork server: a GovernorServiceConfig dict to an
    exit code (2 with one ``error:`` line for bad config)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s governor %(levelname)s %(message)s",
                        force=True)
    try:
        return asyncio.run(serve(GovernorServiceConfig.from_dict(config)))
    except (ValueError, NotImplementedError, BusError) as exc:
        log.error("error: %s", str(exc).splitlines()[0])
        return 2
