"""The world server: wakes each NPC's brain at its tick rate, runs every NPC's cells and nerves every tick,
applies fresh actions, and counts late and missing ones as STAY (real nats-server)."""

import asyncio
import logging
import time

import numpy as np
import pytest

from agents.world_server import WorldServer, WorldServerConfig
from nervous import subjects
from nervous.lifeforce import LifeforceConfig
from nervous.messages import Action, Command, Observation, Region, WaveBatch
from world import GridWorld, stage_config
from world.tiles import Action as Act


async def settle(bus, condition, timeout: float = 2.0) -> None:
    """Flush, then wait until the server's subscription callbacks made condition() true."""
    await bus.nc.flush()
    async def poll():
        while not condition():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout)


async def make_server(bus, n_npcs: int = 2, nerves: bool = False, stage: int = 0, escalator=None,
                      **changes) -> WorldServer:
    """A lockstep world server; without nerves unless asked, so the applied actions are the NPCs'."""
    config = WorldServerConfig(stage=stage, n_npcs=n_npcs, seed=1, clock="lockstep", nerves=nerves, **changes)
    server = WorldServer(config, bus, escalator=escalator)
    await server.start()
    return server


async def tick(server: WorldServer) -> None:
    """Wake the NPCs due at the current tick, then step it."""
    await server.publish_observations()
    server.step()


async def test_fresh_action_is_applied_and_observations_published(bus):
    server = await make_server(bus)
    got: list[Observation] = []
    await bus.subscribe(subjects.npc_obs(1), Observation, lambda msg, raw: got.append(msg))
    await server.publish_observations()
    await settle(bus, lambda: len(got) == 1)
    assert got[0].npc == 1 and got[0].tick == 0 and len(got[0].view) == server.world.V ** 2
    await bus.publish(subjects.npc_action(1), Action(npc=1, tick=0, action=Act.INTERACT))
    await settle(bus, lambda: server.pending_tick[1] == 0)
    server.step()
    assert server.applied.tolist() == [Act.STAY, Act.INTERACT]
    assert server.acted.tolist() == [0, 1] and server.tick == 1
    await server.stop()


async def test_late_action_means_stay_and_is_counted(bus):
    server = await make_server(bus)
    server.step()  # tick 0 passes with no actions
    await bus.publish(subjects.npc_action(0), Action(npc=0, tick=0, action=Act.SOUTH))  # names tick 0
    await settle(bus, lambda: server.late[0] == 1)
    y = server.world.pos_y[0, 0]
    server.step()
    assert server.applied[0] == Act.STAY and server.world.pos_y[0, 0] == y
    assert server.summary()[0]["late"] == 1
    await server.stop()


async def test_missing_action_of_a_woken_npc_is_a_missed_tick(bus):
    server = await make_server(bus)
    await server.publish_observations()
    for npc in (0, 1):
        await bus.publish(subjects.npc_action(npc), Action(npc=npc, tick=0, action=Act.STAY))
    await settle(bus, lambda: (server.pending_tick == 0).all())
    server.step()
    await server.publish_observations()
    assert server.woken.tolist() == [True, True]  # 20 Hz: due every tick
    await bus.publish(subjects.npc_action(1), Action(npc=1, tick=1, action=Act.STAY))  # npc 0 stays silent
    await settle(bus, lambda: server.pending_tick[1] == 1)
    server.step()
    summary = server.summary()
    assert (summary[0]["missed"], summary[1]["missed"]) == (1, 0)
    assert (summary[0]["ticks"], summary[1]["ticks"]) == (1, 2)
    await server.stop()


async def test_action_from_the_future_or_an_unknown_npc_is_rejected(bus):
    server = await make_server(bus)
    await bus.publish(subjects.npc_action(0), Action(npc=0, tick=5, action=Act.NORTH))
    await bus.publish(subjects.npc_action(1), Action(npc=7, tick=0, action=Act.NORTH))
    await settle(bus, lambda: server.bad_actions == 1 and server.spoofed[subjects.npc_action(1)] == 1)
    server.step()
    assert (server.applied == Act.STAY).all()
    await server.stop()


async def test_an_action_naming_another_npc_than_its_subject_is_rejected_counted_and_logged(bus, caplog):
    server = await make_server(bus)
    spoofed_on = subjects.npc_action(0)
    with caplog.at_level(logging.WARNING, logger="agents.world_server"):
        for _ in range(12):  # npc 0's subject claims to speak for npc 1
            await bus.publish(spoofed_on, Action(npc=1, tick=0, action=Act.NORTH))
        await bus.publish(subjects.npc_action(0), Action(npc=0, tick=0, action=Act.EAST))
        await settle(bus, lambda: server.spoofed[spoofed_on] == 12 and server.pending_tick[0] == 0)
    assert server.pending_tick[1] == -1  # nothing reached npc 1's slot
    server.step()
    assert server.applied.tolist() == [Act.EAST, Act.STAY] and server.acted.tolist() == [1, 0]
    assert server.spoofed == {spoofed_on: 12}
    assert server.summary()[0]["spoofed"] == 12 and server.summary()[1]["spoofed"] == 0
    lines = [r.getMessage() for r in caplog.records if "spoofed" in r.getMessage()]
    assert len(lines) == 10  # rate-limited: the first ten
    assert lines[0] == (f"{spoofed_on}: names npc 1, not npc 0 whose subject it is; "
                        "rejected (1 spoofed on this subject)")
    # npc 1's own subject still works
    await bus.publish(subjects.npc_action(1), Action(npc=1, tick=1, action=Act.WEST))
    await settle(bus, lambda: server.pending_tick[1] == 1)
    server.step()
    assert server.applied[1] == Act.WEST
    await server.stop()


async def test_malformed_action_bytes_do_not_stop_the_server(bus):
    server = await make_server(bus)
    subject = subjects.npc_action(0)
    before = bus.bad_messages[subject]
    await bus.nc.publish(subjects.npc_action(0), b"\x00garbage")
    await bus.nc.publish(subjects.npc_action(0), np.arange(10, dtype=np.uint8).tobytes())
    await settle(bus, lambda: bus.bad_messages[subject] == before + 2)
    await bus.publish(subjects.npc_action(0), Action(npc=0, tick=0, action=Act.EAST))
    await settle(bus, lambda: server.pending_tick[0] == 0)
    server.step()
    assert server.applied[0] == Act.EAST
    await server.stop()


async def test_observations_carry_the_worlds_action_mask(bus):
    server = await make_server(bus)
    got: list[Observation] = []
    await bus.subscribe(subjects.npc_obs(0), Observation, lambda msg, raw: got.append(msg))
    await server.publish_observations()
    await settle(bus, lambda: len(got) == 1)
    mask = np.frombuffer(got[0].action_mask, dtype=bool)
    np.testing.assert_array_equal(mask, server.world.action_mask[0, 0])
    await server.stop()


async def test_spread_observations_go_out_npc_after_npc_all_of_the_same_tick(bus):
    server = WorldServer(WorldServerConfig(stage=0, n_npcs=4, seed=1), bus)
    await server.start()
    got: dict[int, Observation] = {}
    for i in range(4):
        await bus.subscribe(subjects.npc_obs(i), Observation, lambda msg, raw: got.setdefault(msg.npc, msg))
    await server.publish_observations(spread_s=0.04)
    await settle(bus, lambda: len(got) == 4)
    assert {o.tick for o in got.values()} == {0}
    sent = server.obs_times[0]
    assert (sent - sent[0] >= 0.04 * np.arange(4) / 4 - 1e-3).all()  # NPC i not before i/4 of the spread
    # latency counts from an NPC's own observation, not from the first one of the tick
    await bus.publish(subjects.npc_action(3), Action(npc=3, tick=0, action=Act.STAY))
    await settle(bus, lambda: server.n_latency == 1)
    assert server.latencies_ms()[0] < (time.monotonic() - sent[0]) * 1000 - 25
    await server.stop()


def test_obs_spread_outside_a_tick_is_rejected():
    with pytest.raises(ValueError, match="runtime.organism.obs_spread=1.5"):
        WorldServerConfig(obs_spread=1.5)


def test_a_tick_rate_outside_1_to_20_hz_is_rejected():
    with pytest.raises(ValueError, match=r"world_server.tick_rate=0: must be an integer in 1\.\.20"):
        WorldServerConfig(tick_rate=0)


async def test_each_fresh_brain_call_is_charged_and_a_silent_npc_is_not(bus):
    life = LifeforceConfig(per_brain_call=0.1)
    server = await make_server(bus, n_npcs=3, lifeforce=life)
    before = server.world.lifeforce[0].copy()
    await bus.publish(subjects.npc_action(0), Action(npc=0, tick=0, action=Act.STAY))  # npcs 1, 2 stay silent
    await bus.publish(subjects.npc_action(1), Action(npc=1, tick=0, action=Act.INTERACT))
    await settle(bus, lambda: (server.pending_tick[:2] == 0).all())
    server.step()
    spent = before - server.world.lifeforce[0]
    assert spent[0] - spent[2] == pytest.approx(0.1, abs=1e-5) and spent[1] - spent[2] == pytest.approx(0.1)
    assert server.applied.tolist() == [Act.STAY, Act.INTERACT, Act.STAY]
    assert server.acted.tolist() == [1, 1, 0] and len(server.latencies_ms()) == 2
    await server.stop()


async def test_the_organ_hosts_charges_reach_the_asking_npcs_lifeforce(bus):
    from nervous.messages import OrganCharge

    server = await make_server(bus, n_npcs=3)
    before = server.world.lifeforce[0].copy()
    subject = subjects.organ_charge("vision")
    await bus.publish(subject, OrganCharge(npc=1, organ="vision", verb="detect", cost=0.1))
    await bus.publish(subject, OrganCharge(npc=7, organ="vision", verb="detect", cost=0.1))  # no such NPC
    await bus.nc.publish(subject, b"\x01not a charge")
    await settle(bus, lambda: server.organ_charges["applied"] == 1 and server.organ_charges["refused"] == 1
                 and bus.bad_messages[subject] == 1)  # the bad one counted, no crash
    server.step()
    spent = before - server.world.lifeforce[0]
    assert spent[1] - spent[0] == pytest.approx(0.1, abs=1e-5) and spent[2] == pytest.approx(spent[0])
    server.step()  # paid once: the next tick costs what any tick costs
    assert before[1] - server.world.lifeforce[0, 1] == pytest.approx(spent[1] + spent[0], abs=1e-5)
    await server.stop()


async def test_a_late_brain_call_at_2_hz_is_one_missed_tick_and_its_latency_is_kept_apart(bus):
    server = await make_server(bus, n_npcs=1)
    await bus.publish(subjects.npc_command(0), Command(npc=0, tick=0, tick_rate=2))  # a brain call every 10
    await settle(bus, lambda: server.rate[0] == 2)
    await server.publish_observations()
    await bus.publish(subjects.npc_action(0), Action(npc=0, tick=0, action=Act.STAY))
    await settle(bus, lambda: server.pending_tick[0] == 0)
    server.step()
    for _ in range(10):  # ticks 1-10: the call due at 10 is not in before the step
        await tick(server)
    await bus.publish(subjects.npc_action(0), Action(npc=0, tick=10, action=Act.EAST))  # during tick 11
    await settle(bus, lambda: server.late[0] == 1)
    for _ in range(9):  # ticks 11-19: not woken until 20, a period after the wake-up at 10
        await tick(server)
        assert not server.woken[0]
    assert server.summary()[0]["missed"] == 1 and server.acted[0] == 1
    assert server.observations[0] == 2
    on_time, every = server.latencies_ms(), server.latencies_ms(late=True)
    # the late answer's latency is kept apart from the on-time one's (its size is the machine's timing:
    # in lockstep a late answer may come sooner after its observation than the first one did)
    assert len(on_time) == 1 and len(every) == 2 and every[0] == on_time[0] and every[1] > 0
    await server.stop()


async def test_an_npc_at_5_hz_is_woken_every_4_ticks_with_the_reward_it_earned_meanwhile(bus):
    server = await make_server(bus, n_npcs=2, nerves=True)
    await bus.publish(subjects.npc_command(0), Command(npc=0, tick=0, tick_rate=5))
    await settle(bus, lambda: server.rate[0] == 5)
    got: list[Observation] = []
    await bus.subscribe(subjects.npc_obs(0), Observation, lambda msg, raw: got.append(msg))
    for _ in range(41):  # ticks 0..40
        await tick(server)
    await settle(bus, lambda: len(got) == 11)
    assert [o.tick for o in got] == list(range(0, 41, 4))
    assert server.observations.tolist() == [11, 41]  # npc 1 at 20 Hz: every tick
    # every tick's reward reaches the NPC once: what it was sent plus what waits for its next wake-up
    sent = sum(o.reward for o in got) + server.unsent_reward[0]
    assert sent == pytest.approx(server.reward_sum[0], abs=1e-4)
    await server.stop()


async def test_npcs_at_one_rate_are_woken_staggered_over_its_period(bus):
    n = 8
    server = await make_server(bus, n_npcs=n)
    for i in range(n):
        await bus.publish(subjects.npc_command(i), Command(npc=i, tick=0, tick_rate=5))
    await settle(bus, lambda: (server.rate == 5).all())
    woken = []
    for _ in range(21):  # ticks 0..20
        await tick(server)
        woken.append(server.woken.copy())
    woken = np.array(woken)
    # born at tick 0 at 5 Hz: NPC i at ticks t % 4 == i % 4, two of the eight a tick, each once every 4 ticks
    assert woken.sum(axis=1).tolist() == [2] * 21
    for i in range(n):
        assert np.flatnonzero(woken[:, i]).tolist() == [t for t in range(21) if t % 4 == i % 4]
    await server.stop()


async def test_nerves_move_npcs_between_brain_calls_while_their_brains_sleep(bus):
    server = await make_server(bus, n_npcs=4, nerves=True, stage=5)
    # stage 5 as it was written for, little food smelled: its food cap before the vault food was added to it
    server.world = GridWorld(stage_config(5, n_npcs=4, food_cap=170), num_envs=1, seed=1)
    for i in range(4):
        await bus.publish(subjects.npc_command(i), Command(npc=i, tick=0, tick_rate=1))
    await settle(bus, lambda: (server.rate == 1).all())
    for _ in range(200):  # 10 s of world time at 1 Hz; the NPCs never answer
        await tick(server)
    assert server.acted.sum() == 0
    # once a second at each one's own tick (20 in 200 ticks), none while its body is dead
    assert ((server.observations >= 9) & (server.observations <= 11)).all()
    assert server.reflexes.sum() >= 10  # 35 at seed 1: exploration considers about one tick in five
    assert server.override_rate.max() > 0.0
    await server.stop()


async def test_one_wave_batch_of_every_npc_goes_out_per_world_tick(bus):
    server = await make_server(bus, n_npcs=6, nerves=True)
    got: list[WaveBatch] = []
    await bus.subscribe(subjects.cell_wave("bank"), WaveBatch, lambda msg, raw: got.append(msg))
    for _ in range(20):
        await tick(server)
    await server.publish_observations()  # the waves of the last step go out with the next observations
    await settle(bus, lambda: len(got) == 20)
    assert [b.tick for b in got] == list(range(20)) and server.wave_batches == 20
    assert tuple(got[0].cells) == server.cells.names
    fired = {int(n) for b in got for n in b.arrays()[0]}
    assert fired and fired <= set(range(6))
    last = server.cells.last
    assert len(got[-1]) == int(last.fired.sum())
    await server.stop()


async def test_a_state_report_naming_another_npc_than_its_subject_is_counted_not_applied(bus):
    from nervous.messages import NpcState

    server = await make_server(bus)
    report = dict(tick=0, lifeforce=0.5, battery=0.5, reward_rate=0.0, tick_rate=5, cpu_use=0.1)
    await bus.publish(subjects.npc_state(1), NpcState(npc=9, **report))  # an NPC this world does not have
    await bus.publish(subjects.npc_state(1), NpcState(npc=0, **report))  # npc 1 speaking for npc 0
    await bus.publish(subjects.npc_state(1), NpcState(npc=1, **report))
    await settle(bus, lambda: server.spoofed[subjects.npc_state(1)] == 2 and server.rate[1] == 5)
    assert server.rate[0] == 20.0
    await server.stop()


async def test_a_command_sets_the_rate_the_world_expects_at_once(bus):
    from nervous.messages import NpcState

    server = await make_server(bus)
    await bus.publish(subjects.npc_command(0), Command(npc=1, tick=0, tick_rate=2))  # the NPC rejects it
    await bus.publish(subjects.npc_command(1), Command(npc=1, tick=0, tick_rate=2))
    await settle(bus, lambda: server.rate[1] == 2)
    assert server.rate[0] == 20.0
    await server.publish_observations()
    for npc in (0, 1):
        await bus.publish(subjects.npc_action(npc), Action(npc=npc, tick=0, action=Act.STAY))
    await settle(bus, lambda: (server.pending_tick == 0).all())
    server.step()
    # born at tick 0, npc 1 is woken at once and then at its own ticks at 2 Hz: 1, 11, 21, ... (staggered)
    await server.publish_observations()
    assert server.woken.tolist() == [True, True]
    await bus.publish(subjects.npc_action(1), Action(npc=1, tick=1, action=Act.STAY))
    await settle(bus, lambda: server.pending_tick[1] == 1)
    server.step()
    for _ in range(9):  # npc 1 is not due again for 10 ticks: its silence is no missed tick
        await tick(server)
        assert not server.woken[1]
    assert server.summary()[1]["missed"] == 0 and server.summary()[0]["missed"] == 10
    # a report npc 1 sent at 20 Hz before it obeyed arrives after the command: it does not undo it
    report = dict(lifeforce=0.5, battery=0.5, reward_rate=0.0, cpu_use=0.1)
    await bus.publish(subjects.npc_state(1), NpcState(npc=1, tick=5, tick_rate=20, **report))
    await bus.publish(subjects.npc_state(1), NpcState(npc=1, tick=9, tick_rate=2, **report))
    await settle(bus, lambda: server.rate[1] == 2 and server.cpu_use[1] == pytest.approx(0.1))
    assert server.rate[1] == 2
    await bus.publish(subjects.npc_state(1), NpcState(npc=1, tick=10, tick_rate=5, **report))  # restarted
    await settle(bus, lambda: server.rate[1] == 5)
    await server.stop()


# -- the escalation path, live (the world server's cortex link) ---------------------------------------

async def test_a_collapse_through_a_commanded_open_gate_escalates_live_and_the_npc_follows_the_plan(bus):
    from organs.config import CortexConfig
    from organs.link import CortexLink
    from tests.test_cortex_link import PER_ESCALATION, door_open, keyed_room

    link = CortexLink(CortexConfig(backend="engine", outcome_ticks=20))
    life = LifeforceConfig(per_brain_call=0.0, per_escalation=PER_ESCALATION)
    server = await make_server(bus, n_npcs=1, nerves=True, lifeforce=life, escalator=link)
    server.world = keyed_room()  # a key in hand, the door in sight: the math region collapses at once
    await bus.publish(subjects.npc_command(0), Command(npc=0, tick=0, tick_rate=1, gates={Region.MATH: True}))
    await settle(bus, lambda: server.gates.any())
    spent, applied = [], []
    for _ in range(30):  # the NPC's brain never answers: STAY, unless a plan moves it
        before = float(server.world.lifeforce[0, 0])
        await tick(server)
        spent.append(before - float(server.world.lifeforce[0, 0]))
        applied.append(int(server.applied[0]))
    assert door_open(server.world) and server.world.ep_opened[0, 0] == 1
    assert server.escalations.tolist() == [1] and server.summary()[0]["escalations"] == 1
    assert applied[0] == Act.STAY and applied[1:5] == [Act.EAST, Act.EAST, Act.SOUTH, Act.INTERACT]
    assert server.plan_ticks[0] == 4 and server.acted[0] == 0
    assert spent[0] == pytest.approx(spent[-1] + PER_ESCALATION, abs=1e-4)  # the escalation is paid for
    link.close()
    await server.stop()


async def test_a_closed_gate_does_not_escalate_live(bus):
    from organs.config import CortexConfig
    from organs.link import CortexLink
    from tests.test_cortex_link import door_open, keyed_room

    link = CortexLink(CortexConfig(backend="engine"))
    server = await make_server(bus, n_npcs=1, escalator=link)
    server.world = keyed_room()
    for _ in range(30):
        await tick(server)
    assert server.escalations.tolist() == [0] and not door_open(server.world)
    assert server.collapse.active.any()  # it did collapse: the gate kept it from the cortex
    link.close()
    await server.stop()
