"""The governor process (``python -m governor``): what it hears, decides and sends when; bad config, input.

The decision and re-send rules are tested in-process on a hand clock; one test runs the real process
on a real nats-server and talks to it as NPCs and cells would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.world_server import WorldServer, WorldServerConfig
from governor.config import GovernorConfig
from governor.service import GovernorService, GovernorServiceConfig, main
from nervous import subjects
from nervous.bus import Bus, BusConfig
from nervous.cells import CellBank
from nervous.collapse import CollapseConfig
from nervous.messages import (
    REGIONS,
    Action,
    Allocation,
    CollapseEvent,
    GateEvent,
    Heartbeat,
    NpcState,
    Observation,
    Region,
    WaveBatch,
    encode,
)
from nervous.server import EmbeddedServer

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state(npc: int, tick: int, tick_rate: int = 20, alive: bool = True) -> NpcState:
    return NpcState(npc=npc, tick=tick, lifeforce=0.9, battery=0.9, reward_rate=0.0, tick_rate=tick_rate,
                    cpu_use=0.02, alive=alive)


def math_waves(npc: int, tick: int, confidence: float = 0.6) -> WaveBatch:
    """Two cells on the math region of one NPC: 0.6 and 0.6 collapse to 0.84."""
    return WaveBatch.from_arrays(tick, ["math", "abacus"], [Region.MATH, Region.MATH], np.array([npc, npc]),
                                 np.array([0, 1]), np.array([confidence, confidence]), np.zeros(2))


BANK = CellBank()


def bank_waves(tick: int, fired: dict[int, dict[str, float]]) -> WaveBatch:
    """One tick's batch of the bank's cells, as the world server sends it (fired: {npc: {cell: conf}})."""
    rows = [(npc, BANK.names.index(cell), c) for npc, cells in fired.items() for cell, c in cells.items()]
    npc = np.array([r[0] for r in rows], dtype=np.int32)
    index = np.array([r[1] for r in rows], dtype=np.uint8)
    confidence = np.array([r[2] for r in rows], dtype=np.float32)
    return WaveBatch.from_arrays(tick, list(BANK.names), list(BANK.regions), npc, index, confidence,
                                 np.zeros(len(rows)))


def service(kind: str = "fixed", npcs: int = 2, **options: float) -> tuple[GovernorService, Clock]:
    clock = Clock()
    config = GovernorServiceConfig(governor=GovernorConfig(kind=kind), npcs=npcs, **options)  # type: ignore[arg-type]
    return GovernorService(config, clock=clock), clock


def step(gov: GovernorService) -> tuple[list[Allocation], list[tuple[str, GateEvent]]]:
    """One governor tick without a bus: the allocations due and the gate transitions."""
    return gov.plan()


def test_reports_become_allocations_and_a_collapse_opens_then_closes_a_gate() -> None:
    gov, _ = service("fixed")
    assert step(gov) == ([], [])  # heard from no one: nobody is told anything
    gov.observe_state(state(0, 100))
    gov.observe_state(state(1, 100))
    sent, gates = step(gov)
    told = [(a.npc, a.tick_rate, a.cpu_quota, a.llm_priority) for a in sent]
    assert told == [(0, 20, 100.0, 5), (1, 20, 100.0, 5)]
    assert gates == [] and not any(a.gates[Region.MATH] for a in sent)
    assert step(gov) == ([], [])  # nothing changed: nothing sent

    events = gov.observe_waves(math_waves(1, 101))
    assert [(e.npc, e.region, round(e.confidence, 2), e.cells) for e in events] == [
        (1, Region.MATH, 0.84, ["abacus", "math"])]
    sent, gates = step(gov)
    assert [(a.npc, a.gates[Region.MATH]) for a in sent] == [(1, True)]  # only the changed NPC
    [(subject, opened)] = gates
    assert subject == subjects.gate_open()
    assert (opened.npc, opened.region, opened.open) == (1, Region.MATH, True)
    assert opened.confidence == pytest.approx(0.84)

    gov.observe_state(state(0, 101 + GovernorConfig().collapse_hold_ticks))  # the collapse is no longer held
    sent, gates = step(gov)
    assert [(a.npc, a.gates[Region.MATH]) for a in sent] == [(1, False)]
    [(subject, closed)] = gates
    assert subject == subjects.gate_close()
    assert (closed.npc, closed.region, closed.open) == (1, Region.MATH, False)


def test_the_world_servers_batch_of_every_npc_collapses_at_once_on_a_rising_edge() -> None:
    gov, _ = service("fixed", npcs=3)
    for npc in range(3):
        gov.observe_state(state(npc, 10))
    step(gov)
    one_cell, two_cells = {"math": 0.6}, {"math": 0.6, "vault": 0.6}  # one cell never collapses alone
    events = gov.observe_waves(bank_waves(11, {0: one_cell, 1: two_cells, 2: {"battery": 0.9}}))
    assert [(e.npc, e.region, round(e.confidence, 2), e.cells, e.tick) for e in events] == [
        (1, Region.MATH, 0.84, ["math", "vault"], 11)]
    math = REGIONS.index(Region.MATH)
    assert gov.bank_waves[0, math] == pytest.approx(0.6) and gov.bank_waves[1, math] == pytest.approx(0.84)
    sent, gates = step(gov)
    assert [(a.npc, a.gates[Region.MATH]) for a in sent] == [(1, True)]
    assert [(e.npc, e.open) for _, e in gates] == [(1, True)]
    assert gov.observe_waves(bank_waves(12, {1: two_cells})) == []  # still above: no new event
    for tick in range(13, 13 + CollapseConfig().window_ticks):  # ticks with nothing fired: the waves die
        assert gov.observe_waves(bank_waves(tick, {})) == []
    assert gov.bank_waves[1, math] == 0.0
    assert [e.npc for e in gov.observe_waves(bank_waves(20, {1: two_cells}))] == [1]  # re-armed
    assert gov.wave_batches == 2 + CollapseConfig().window_ticks + 1 and gov.bad_inputs == 0


def test_a_full_refresh_and_a_resend_to_an_npc_that_did_not_take_its_rate() -> None:
    gov, clock = service("fixed", refresh_s=5.0, resend_s=1.0)
    gov.observe_state(state(0, 10))
    gov.observe_state(state(1, 10))
    assert len(step(gov)[0]) == 2
    gov.observe_state(state(0, 12, tick_rate=5))  # a restarted NPC, back at its start rate
    clock.now += 0.5
    assert step(gov)[0] == []  # sent half a second ago: the report may predate the command
    clock.now += 0.6
    assert [a.npc for a in step(gov)[0]] == [0]  # 1.1 s on, still at 5 Hz: sent again
    clock.now += 0.5
    assert step(gov)[0] == []
    clock.now += 3.5  # 5.1 s after the start: every living NPC, changed or not
    assert [a.npc for a in step(gov)[0]] == [0, 1]
    assert step(gov)[0] == []


def test_a_dead_npc_is_told_nothing_and_its_open_gate_closes() -> None:
    gov, _ = service("fixed")
    gov.observe_state(state(0, 50))
    gov.observe_state(state(1, 50))
    gov.observe_waves(math_waves(0, 50))
    sent, gates = step(gov)
    assert [a.npc for a in sent] == [0, 1] and [e.open for _, e in gates] == [True]
    gov.observe_state(state(0, 51, alive=False))
    sent, gates = step(gov)
    assert sent == []
    assert [(e.npc, e.open, e.reason) for _, e in gates] == [(0, False, "fixed: npc dead")]
    gov.observe_state(state(0, 60))  # born again: sent its allocation in full
    assert [a.npc for a in step(gov)[0]] == [0]


def math_gate_opened_with_trails(npcs: tuple[int, ...] = (0,)) -> tuple[GovernorService, list]:
    """A fixed governor recording trails (run live-1, stage 4) that opened NPC 0's math gate at tick 50."""
    gov, _ = service("fixed", trails=True, run="live-1", stage=4)
    recorded: list = []
    gov.trails = recorded.extend
    for npc in npcs:
        gov.observe_state(state(npc, 50))
    gov.observe_waves(math_waves(0, 50))
    step(gov)
    return gov, recorded


def test_with_trails_each_living_npcs_gate_transition_is_a_trail_event_with_its_inputs() -> None:
    from nervous.messages import TrailKind
    from nervous.trail_stream import trail_id

    gov, recorded = math_gate_opened_with_trails(npcs=(0, 1))
    [opened] = recorded
    assert opened.id == trail_id("live-1", 0, 50, TrailKind.GATE, "math", gov.decisions_made)
    assert opened.gate_open
    assert (opened.kind, opened.region, opened.npc, opened.tick, opened.stage) == (
        TrailKind.GATE, Region.MATH, 0, 50, 4)
    assert opened.inputs["collapse_math"] == pytest.approx(0.84, abs=1e-3) and "lifeforce" in opened.inputs
    gov.observe_state(state(0, 51, alive=False))
    _, gates = step(gov)
    assert [e.open for _, e in gates] == [False] and len(recorded) == 1  # a dead NPC's close: no decision


def test_a_gate_that_opens_and_closes_while_the_world_stalls_leaves_two_trail_events() -> None:
    gov, recorded = math_gate_opened_with_trails()
    decisions, features = gov.decide()  # the next decision, the world still at tick 50 ...
    decisions.gates[0] = False  # ... closes the gate (as a learned governor may, on its global context)
    assert [e.open for _, e in gov.gate_events(decisions, features)] == [False]
    opened, closed = recorded
    assert (opened.tick, closed.tick) == (50, 50) and (opened.gate_open, closed.gate_open) == (True, False)
    assert opened.id != closed.id  # one id would let the stream's dedup drop the close


def test_the_heuristic_slows_an_idle_npc_and_the_quota_follows() -> None:
    gov, _ = service("heuristic")
    gov.observe_state(state(0, 10))
    [allocation] = step(gov)[0]
    c = GovernorConfig()
    assert allocation.tick_rate == c.idle_tick_rate
    assert allocation.cpu_quota == pytest.approx(max(c.min_quota, c.max_quota * c.idle_tick_rate / 20))


def test_input_for_npcs_it_does_not_govern_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    gov, _ = service("fixed", npcs=2)
    with caplog.at_level(logging.WARNING, logger="governor"):
        gov.observe_state(state(7, 10))
        assert gov.observe_waves(math_waves(9, 10)) == []
    assert gov.bad_inputs == 2
    lines = [r.getMessage() for r in caplog.records]
    assert any("npc_state.npc=7: no such NPC" in m for m in lines), lines
    assert any("wave_batch.npc: 2 waves for NPCs not governed" in m for m in lines), lines
    assert not gov.inputs.alive.any() and step(gov) == ([], [])


@pytest.mark.parametrize(("argv", "field"), [
    (["--kind", "wise"], "governor.kind='wise'"),
    (["--npcs", "41"], "governor.cpu_budget=2.0: 41 NPCs"),  # 41 x 5 % > 2 cores
    (["--set", "tick_rates=[3]"], "governor.tick_rates=[3]"),
    (["--set", "wisdom=1"], "governor.wisdom: no such governor field"),
    (["--set", "min_quota=50", "--set", "max_quota=40"], "governor.max_quota=40"),
    (["--config-json", "[1]"], "--config-json"),
    (["--npcs", "0"], "npcs=0"),
])
def test_bad_config_is_one_error_line_and_status_2(argv: list[str], field: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "nats://127.0.0.1:1", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and field in err[0], err


def test_python_m_governor_without_a_bus_url_exits_2() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NIMMERVERSE_BUS_URL"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "governor", "--npcs", "2"], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: --url: required (nats://host:port of the organism's bus, "
                                   "or NIMMERVERSE_BUS_URL)")


async def test_the_governor_hears_one_wave_batch_per_world_tick_and_refuses_a_malformed_one(
        bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    npcs, ticks = 4, 30
    gov, _ = service("fixed", npcs=npcs)
    gov.bus = bus
    await gov.start()
    world = WorldServer(WorldServerConfig(stage=5, n_npcs=npcs, seed=2, clock="lockstep",
                                          lockstep_timeout_s=0.01), bus)
    await world.start()
    answered: list[int] = []

    async def think(msg, raw) -> None:  # every NPC's brain answers STAY when woken
        answered.append(msg.npc)
        await bus.publish(subjects.npc_action(msg.npc), Action(npc=msg.npc, tick=msg.tick, action=0))

    for i in range(npcs):
        await bus.subscribe(subjects.npc_obs(i), Observation, think)
    await world.run(asyncio.Event(), ticks=ticks)
    await bus.nc.flush()

    async def heard(count: int) -> None:
        while gov.wave_batches < count:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(heard(ticks), 10)  # the batches of ticks 0..ticks-1, one each
    assert gov.wave_batches == world.wave_batches == ticks and gov.tick == ticks - 1
    assert gov.bad_inputs == 0 and world.missed.sum() == 0 and len(answered) == world.observations.sum()

    subject = subjects.cell_wave("bank")
    good = encode(bank_waves(ticks, {0: {"math": 0.5}}))
    bad = good.replace(np.float32(0.5).tobytes(), np.float32(2.0).tobytes())  # confidence 2: not a confidence
    assert bad != good
    with caplog.at_level(logging.WARNING, logger="nervous.bus"):
        await bus.nc.publish(subject, bad)
        await bus.nc.publish(subject, b"\x93garbage")
        await bus.nc.flush()
        async def refused() -> None:
            while bus.bad_messages[subject] < 2:
                await asyncio.sleep(0.01)
        await asyncio.wait_for(refused(), 10)
    lines = [r.getMessage() for r in caplog.records if subject in r.getMessage()]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "bad WaveBatch" in lines[0] and "confidence" in lines[0]
    assert gov.wave_batches == ticks  # neither reached the governor
    await world.stop()


@pytest.mark.slow
async def test_the_governor_process_on_a_real_bus(nats_server: EmbeddedServer) -> None:
    heard: dict[str, list] = {"allocate": [], "open": [], "close": [], "collapse": [], "heartbeat": []}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "governor", "--url", nats_server.url, "--npcs", "2", "--kind", "fixed",
           "--set", "governor_hz=10", "--refresh-s", "1"]
    async with Bus(BusConfig(url=nats_server.url, name="test")) as bus:
        for key, subject, kind in (("allocate", subjects.governor_allocate(), Allocation),
                                   ("open", subjects.gate_open(), GateEvent),
                                   ("close", subjects.gate_close(), GateEvent),
                                   ("collapse", subjects.governor_collapse(), CollapseEvent),
                                   ("heartbeat", subjects.heartbeat("thalamus", "governor"), Heartbeat)):
            await bus.subscribe(subject, kind, lambda msg, raw, key=key: heard[key].append(msg))
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            async def until(check, what: str, timeout: float = 20.0) -> None:
                async def wait() -> None:
                    while not check():
                        assert proc.poll() is None, f"the governor exited {proc.returncode}"
                        await asyncio.sleep(0.02)
                try:
                    await asyncio.wait_for(wait(), timeout)
                except TimeoutError:
                    raise AssertionError(f"timed out waiting for {what}") from None

            await until(lambda: heard["heartbeat"], "the first heartbeat")
            tick = 200
            for npc in (0, 1):
                await bus.publish(subjects.npc_state(npc), state(npc, tick))
            await bus.nc.publish(subjects.npc_state(1), b"\x93garbage")  # counted, not fatal
            await bus.publish(subjects.npc_state(5), state(5, tick))  # not governed: counted
            await until(lambda: {a.npc for a in heard["allocate"]} == {0, 1}, "an allocation for each NPC")
            assert all(a.tick_rate == 20 and a.tick == tick for a in heard["allocate"])

            await bus.publish(subjects.cell_wave("bank"), math_waves(1, tick + 1))
            await until(lambda: heard["collapse"] and heard["open"], "a collapse event and a gate opening")
            assert (heard["open"][0].npc, heard["open"][0].region) == (1, Region.MATH)
            await until(lambda: any(a.npc == 1 and a.gates[Region.MATH] for a in heard["allocate"]),
                        "npc 1 told its math gate is open")

            for npc in (0, 1):  # the world moves on: the collapse is no longer held
                await bus.publish(subjects.npc_state(npc), state(npc, tick + 30))
            await until(lambda: heard["close"], "the gate closing")
            closed = heard["close"][0]
            assert (closed.npc, closed.region, closed.open) == (1, Region.MATH, False)
            n = len([a for a in heard["allocate"] if a.npc == 0])
            await until(lambda: len([a for a in heard["allocate"] if a.npc == 0]) > n, "a full refresh", 5)
            await until(lambda: heard["heartbeat"][-1].errors >= 2, "the bad inputs counted in the heartbeat")
            assert heard["heartbeat"][-1].requests > 0
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
    log = out.decode()
    assert proc.returncode == 0, log[-3000:]
    assert "npc_state.npc=5: no such NPC" in log and "bad NpcState" in log
    latency = re.search(r"decision latency p50 ([\d.]+) ms p99 ([\d.]+) ms over (\d+) decisions", log)
    assert latency is not None, log[-2000:]
    p50, p99, decisions = float(latency[1]), float(latency[2]), int(latency[3])
    assert decisions > 0 and 0.0 < p50 <= p99 < 500.0  # at 10 Hz; a decision for 2 NPCs takes well under
