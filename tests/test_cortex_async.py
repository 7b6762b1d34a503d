"""The live escalation path does not block, and a brain on a plan is not charged (both runtimes).

Real parts: a real nats-server (the ``bus`` fixture), the world server, the cell bank, the project's
embedded cortex server as its own process holding each answer ``SLOW_S`` seconds (``--delay-ms``, an
LLM's latency) reached by the real openai client, and the nyx engine in-process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from agents.world_server import WorldServer, WorldServerConfig
from nervous import subjects
from nervous.lifeforce import LifeforceConfig
from nervous.messages import REGIONS, Action, Command, Observation, Region, TrailEvent
from organs.config import CortexConfig
from organs.cortex.embedded import EmbeddedCortex
from organs.link import CortexLink
from organs.trails.recorder import TrailRecorder
from tests.test_cortex_link import DOOR, door_open, governed, keyed_room
from world.tiles import A, Tile

#: How long the slow cortex holds each answer.
SLOW_S = 1.0
#: The plan the keyed room's escalation brings: round the wall, open the door.
PLAN = [A.EAST, A.EAST, A.SOUTH, A.INTERACT]
BRAIN_CALL = 0.05


@pytest.fixture(scope="module")
def slow_cortex() -> Iterator[EmbeddedCortex]:
    """The embedded cortex answering each chat completion SLOW_S seconds late."""
    server = EmbeddedCortex(delay_ms=SLOW_S * 1000.0).start()
    try:
        yield server
    finally:
        server.stop()


async def settle(bus, condition, timeout: float = 5.0) -> None:
    """Flush, then wait until the server's subscription callbacks made condition() true."""
    await bus.nc.flush()

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def keyed_server(bus, link: CortexLink, clock: str = "lockstep", per_brain_call: float = 0.0,
                       on_frame=None) -> WorldServer:
    """A one-NPC world server in the keyed room (the math region collapses at once), its math gate open."""
    config = WorldServerConfig(stage=0, n_npcs=1, seed=1, clock=clock, nerves=True,
                               lifeforce=LifeforceConfig(per_brain_call=per_brain_call, per_escalation=0.2))
    server = WorldServer(config, bus, on_frame=on_frame, escalator=link)
    await server.start()
    server.world = keyed_room()
    command = Command(npc=0, tick=0, tick_rate=20, gates={Region.MATH: True})
    await bus.publish(subjects.npc_command(0), command)
    await settle(bus, lambda: server.gates.any())
    return server


def http_link(base_url: str, blocking: bool, **config: object) -> CortexLink:
    return CortexLink(CortexConfig(backend="http", base_url=base_url, outcome_ticks=20, **config),
                      blocking=blocking)


async def step(server: WorldServer, ticks: int = 1) -> None:
    """Wake the NPCs due and step the world, ticks times (lockstep)."""
    for _ in range(ticks):
        await server.publish_observations()
        server.step()


async def step_while(server: WorldServer, busy: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Step the world 20 ms apart while busy() holds (an answer on its way), for limit_s at most."""
    started = time.monotonic()
    while busy() and time.monotonic() - started < limit_s:
        await step(server)
        await asyncio.sleep(0.02)


async def run_realtime(server: WorldServer, ticks: int) -> tuple[list[float], list[int]]:
    """Run the server's real 20 Hz clock for a number of ticks; when each tick ended and what was applied."""
    ended: list[float] = [time.monotonic()]  # the clock starts: tick 0 ends a period later
    applied: list[int] = []

    def on_frame(world, **_: object) -> None:
        ended.append(time.monotonic())
        applied.append(int(server.applied[0]))

    server.on_frame = on_frame
    ended[0] = time.monotonic()
    await asyncio.wait_for(server.run(asyncio.Event(), ticks=ticks), 30.0)
    return ended, applied


# -- a slow cortex and the world clock ------------------------------------------------------------------

@pytest.mark.parametrize("blocking", [False, True])
async def test_a_slow_cortex_holds_the_world_clock_only_when_blocking_and_its_plan_is_followed(
        bus, slow_cortex, blocking):
    link = http_link(slow_cortex.base_url, blocking, deadline_s=5.0)
    try:
        server = await keyed_server(bus, link, clock="realtime")
        ended, applied = await run_realtime(server, ticks=60)
    finally:
        link.close()
        await server.stop()
    gaps = np.diff(ended)
    assert server.escalations.tolist() == [1] and door_open(server.world)  # the answer became a plan...
    start = applied.index(PLAN[0])
    assert applied[start:start + 4] == PLAN and server.plan_ticks[0] == 4  # ...that was followed
    if blocking:  # the tick that escalated waited for the answer: the whole world stood still
        assert gaps.max() >= 0.9 * SLOW_S
        assert start == 1
    else:  # the world ticked on at 20 Hz (50 ms) while the answer was on its way
        assert gaps.max() < 0.6 * SLOW_S, f"longest tick gap {gaps.max():.3f} s"
        assert (ended[-1] - ended[0]) / (len(ended) - 1) < 0.1  # generous: other work shares the cores
        # the plan started at the first tick its answer was in, SLOW_S after the escalation (tick 0),
        # the world ticking on meanwhile (ended[i + 1]: when tick i ended)
        assert start >= 3 and ended[start + 1] - ended[1] >= 0.9 * SLOW_S
        assert link.totals.discarded == 0 and not link.inflight


async def test_an_answer_past_its_deadline_is_dropped_and_counted_as_stale(bus, slow_cortex):
    link = http_link(slow_cortex.base_url, blocking=False, deadline_s=0.3)  # asked now, answered at 1 s
    server = await keyed_server(bus, link)
    try:
        await step_while(server, lambda: not server.escalations.any() or bool(link.inflight))
        await step(server, 10)
        stats = link.pop_stats()
    finally:
        link.close()
        await server.stop()
    assert server.escalations.tolist() == [1] and not link.inflight
    assert link.backend.counts["planned"] == 1  # the cortex did answer with a plan...
    assert stats["cortex/stale_answers"] == 1 and stats["cortex/outcome_stale"] == 1  # ...too late
    assert stats["cortex/planned"] == 0 and not link.plans and server.plan_ticks[0] == 0
    assert not door_open(server.world)


async def test_a_request_in_flight_is_not_asked_again_and_the_npcs_death_discards_it(bus, slow_cortex):
    link = http_link(slow_cortex.base_url, blocking=False, deadline_s=5.0)
    server = await keyed_server(bus, link)
    recorded: list = []
    link.trails = TrailRecorder(recorded.extend, "discard-run", outcome_ticks=2)
    try:
        await server.publish_observations()
        server.step()
        assert server.escalations.tolist() == [1] and (0, 0) in link.inflight
        future = link.inflight[(0, 0)].future
        again = link.escalate(server.world, np.ones((1, 1, len(REGIONS)), dtype=bool), np.full((1, 1), 5),
                              np.ones((1, 1, len(REGIONS)), dtype=np.float32), server.cells.last)
        assert not again.any() and link.stats.escalations == 1  # in flight: not asked again, not charged
        server.world.lifeforce[0, 0] = 0.0001  # dies at the next step
        await step(server, 3)
        assert not server.world.alive[0, 0]
        assert not link.inflight and future.cancelled() and link.stats.discarded == 1
        await asyncio.sleep(SLOW_S + 0.2)  # past when the answer would have come
        await step(server, 3)
        stats = link.pop_stats()
    finally:
        link.close()
        await server.stop()
    assert stats["cortex/discarded"] == 1 and stats["cortex/escalations"] == 1
    assert sum(v for k, v in stats.items() if k.startswith("cortex/outcome_")) == 0  # no answer taken
    assert not link.plans and server.plan_ticks[0] == 0
    link.trails.flush()
    [event] = [m for m in recorded if isinstance(m, TrailEvent)]  # charged, so it leaves a trail
    assert (event.npc, event.kind, event.cortex_outcome) == (0, "escalation", "discarded")
    assert event.latency_ms > 0 and event.numbers and '"npc":0' in event.numbers.replace(" ", "")


async def test_the_engine_answers_a_non_blocking_live_link_in_time_for_the_next_tick(bus):
    link = CortexLink(CortexConfig(backend="engine", outcome_ticks=20), blocking=False)
    server = await keyed_server(bus, link)
    applied = []
    for _ in range(10):
        await server.publish_observations()
        server.step()
        applied.append(int(server.applied[0]))
    link.close()
    await server.stop()
    assert applied[1:5] == PLAN and door_open(server.world)  # as the blocking link's plan


# -- a brain on a plan is not woken, called nor charged ----------------------------------------------------

async def test_the_world_server_does_not_wake_nor_charge_an_npc_a_plan_acts_for(bus):
    link = CortexLink(CortexConfig(backend="engine", outcome_ticks=20))
    server = await keyed_server(bus, link, per_brain_call=BRAIN_CALL)

    async def brain(msg: Observation, raw) -> None:  # the NPC's brain answers every observation: STAY
        await bus.publish(subjects.npc_action(0), Action(npc=0, tick=msg.tick, action=A.STAY))

    await bus.subscribe(subjects.npc_obs(0), Observation, brain)
    woken, following, spent = [], [], []
    try:
        for _ in range(12):
            before = float(server.world.lifeforce[0, 0])
            await server.publish_observations()
            woken.append(bool(server.woken[0]))
            if server.woken[0]:
                await settle(bus, lambda: server.pending_tick[0] == server.tick)
            plan_ticks = int(server.plan_ticks[0])
            server.step()
            following.append(int(server.plan_ticks[0]) > plan_ticks)
            spent.append(before - float(server.world.lifeforce[0, 0]))
    finally:
        link.close()
        await server.stop()
    assert following == [False, True, True, True, True] + [False] * 7 and door_open(server.world)
    assert woken == [not f for f in following]  # woken the tick its plan ended (5), at 20 Hz every tick
    assert int(server.acted[0]) == 8 and int(server.observations[0]) == 8
    decay = spent[1]  # a plan tick: living costs, thinking does not
    assert spent[2:5] == pytest.approx([decay] * 3, abs=1e-6)
    assert spent[6] == pytest.approx(decay + BRAIN_CALL, abs=1e-4)  # the brain's back, and paid for


def test_the_governed_reflex_neither_calls_nor_charges_a_brain_a_plan_acts_for() -> None:
    world = keyed_room()
    link = CortexLink(CortexConfig(backend="engine", outcome_ticks=20))
    reflex, bank = governed(link)  # the heuristic governor: 5 Hz here, a brain call due every 4 ticks
    reflex.lifeforce = LifeforceConfig(per_brain_call=BRAIN_CALL, per_escalation=0.2)
    not_chosen, following, spent, called = [], [], [], []
    for _ in range(9):
        bank.step(world.views.reshape(-1, world.V, world.V), world.proprio.reshape(1, -1), world.ticks)
        before, calls = float(world.lifeforce[0, 0]), reflex.stats.brain_calls
        final, over = reflex(world, np.full((1, 1), A.STAY))
        world.step(final)
        not_chosen.append(bool(over[0, 0]))
        following.append(bool(reflex.following[0, 0]))
        spent.append(before - float(world.lifeforce[0, 0]))
        called.append(reflex.stats.brain_calls > calls)
    stats = reflex.stats
    link.close()
    assert (reflex.rate == 5).all() and following == [False] + [True] * 4 + [False] * 4 and door_open(world)
    # due at tick 4 while the plan acted: not called then, but the tick the plan ended (5), then at its
    # own ticks again (8: NPC 0's at 5 Hz are the multiples of 4, ``governor.runtime.own_tick``)
    assert [t for t, c in enumerate(called) if c] == [0, 5, 8] and stats.throttled == 0
    assert not_chosen[1:5] == [True] * 4  # plan samples stay out of the PPO loss
    decay = spent[1]  # a plan tick: living costs, thinking does not
    assert spent[2:5] == pytest.approx([decay] * 3, abs=1e-6)
    assert spent[5] == pytest.approx(decay + BRAIN_CALL, abs=1e-4)  # the brain's back, and paid for
    costs = reflex.costs  # simulated CPU: reflexes every tick, a brain call only when the brain was called
    cpu = 9 * costs.reflex_tick_s + 3 * costs.brain_call_s + costs.escalation_s
    assert stats.cpu_s == pytest.approx(cpu)


async def test_an_answer_whose_plan_no_longer_fits_is_dropped_at_once_and_counted(bus, slow_cortex):
    link = http_link(slow_cortex.base_url, blocking=False, deadline_s=5.0)
    server = await keyed_server(bus, link)
    try:
        await server.publish_observations()
        server.step()
        assert (0, 0) in link.inflight
        world = server.world  # while the cortex thinks, the door it will be asked to open opens by itself
        world.tiles[0, DOOR[1] + world.r, DOOR[0] + world.r] = Tile.EMPTY
        world.refresh()
        await step_while(server, lambda: bool(link.inflight))
        await step(server, 3)
        stats = link.pop_stats()
    finally:
        link.close()
        await server.stop()
    assert stats["cortex/planned"] == 1 and stats["cortex/stale_answers"] == 0  # in time, and a plan...
    assert stats["cortex/plans_invalid"] == stats["cortex/plans_invalid_at_start"] == 1  # ...that did not fit
    assert not link.plans and server.plan_ticks[0] == 0


async def test_a_slow_model_boundary_does_not_hold_the_live_tick_either(bus, slow_cortex):
    from organs.boundary.config import BoundaryConfig

    # the situation is written by the slow server's function-gemma model (SLOW_S), the plan by the engine
    boundary = BoundaryConfig(backend="model", base_url=slow_cortex.base_url, timeout_s=10.0)
    link = CortexLink(CortexConfig(backend="engine", outcome_ticks=20, deadline_s=5.0, boundary=boundary),
                      blocking=False)
    server = await keyed_server(bus, link)
    try:
        await server.publish_observations()
        started = time.monotonic()
        server.step()
        step_s = time.monotonic() - started
        assert server.escalations.tolist() == [1] and (0, 0) in link.inflight
        await step_while(server, lambda: bool(link.inflight))
        answered_s = time.monotonic() - started
        await step(server, 6)
        stats = link.pop_stats()
    finally:
        link.close()
        await server.stop()
    assert step_s < 0.5 * SLOW_S and answered_s >= 0.9 * SLOW_S  # the tick did not wait for the model
    assert link.boundary.counts["model"] == 1 and stats["cortex/boundary_fallbacks"] == 0
    assert stats["cortex/planned"] == 1 and door_open(server.world) and server.plan_ticks[0] == 4
