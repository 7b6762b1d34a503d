"""The cortex link in the in-process runtime: collapse -> open gate -> cortex -> plan -> the NPC follows it.

Real parts throughout: the GridWorld, the cell bank, the heuristic governor, the nyx engine, and over HTTP
the real openai client against the project's embedded cortex server (a subprocess on loopback).
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time

import numpy as np
import pytest

from governor.config import GovernorConfig
from governor.runtime import GovernedReflex
from nervous.cells import CellBank
from nervous.lifeforce import LifeforceConfig
from nervous.nerves import NerveBank
from nervous.server import free_port
from organs.config import CortexConfig
from organs.link import CortexLink
from tests.cortex_fixtures import hand_made_world
from world import GridWorld
from world.tiles import A, Tile

#: A door two rows below the NPC, a wall between: the path goes round by the east.
ROOM = [
    "#########",
    "#.@.....#",
    "#.##....#",
    "####D####",
    "#.fff...#",
    "#########",
]
DOOR = (4, 3)
PER_ESCALATION = 0.2


def governed(link: CortexLink | None, **governor: object) -> tuple[GovernedReflex, CellBank]:
    bank = CellBank()
    config = dataclasses.replace(GovernorConfig(kind="heuristic"), **governor)
    lifeforce = LifeforceConfig(per_brain_call=0.0, per_escalation=PER_ESCALATION)
    return GovernedReflex(config, lifeforce, NerveBank(), cells=bank, escalator=link), bank


def keyed_room() -> GridWorld:
    world = hand_made_world(ROOM)
    world.has_key[0, 0] = True  # a key in hand, the door in sight: the math region collapses at once
    world.refresh()
    return world


def run(world: GridWorld, reflex: GovernedReflex, bank: CellBank, ticks: int) -> dict[str, list]:
    """Step with a brain that always proposes STAY; per tick the final action, plan mask, lifeforce spent."""
    out: dict[str, list] = {"action": [], "following": [], "spent": []}
    for _ in range(ticks):
        bank.step(world.views.reshape(-1, world.V, world.V), world.proprio.reshape(1, -1), world.ticks)
        before = float(world.lifeforce[0, 0])
        final, not_chosen = reflex(world, np.full((1, 1), A.STAY))
        world.step(final)
        out["action"].append(int(final[0, 0]))
        out["following"].append(bool(not_chosen[0, 0]) and int(final[0, 0]) != A.STAY)
        out["spent"].append(before - float(world.lifeforce[0, 0]))
    return out


def door_open(world: GridWorld) -> bool:
    x, y = DOOR
    return int(world.tiles[0, y + world.r, x + world.r]) == Tile.EMPTY


def test_a_math_collapse_through_an_open_gate_escalates_and_the_npc_follows_the_plan() -> None:
    world = keyed_room()
    # blind: the lifeforce below is the escalation's alone (a governed look, the default, costs more)
    link = CortexLink(CortexConfig(backend="engine", outcome_ticks=20, vision_gate="closed"))
    reflex, bank = governed(link)
    trace = run(world, reflex, bank, 30)
    stats = reflex.pop_stats()
    assert door_open(world) and world.ep_opened[0, 0] == 1  # the brain only ever proposed STAY
    assert trace["action"][0] == A.STAY  # the escalation tick is the brain's; the plan starts the next
    assert trace["action"][1:5] == [A.EAST, A.EAST, A.SOUTH, A.INTERACT]  # round the wall, open
    assert stats["cortex/escalations"] == stats["cortex/planned"] == stats["cortex/plans_done"] == 1
    assert stats["cortex/outcome_planned"] == 1 and stats["cortex/plans_invalid"] == 0
    # the outcome window holds the door's goal bonus, less the escalation's own lifeforce and the decay
    assert stats["cortex/outcome_reward"] == pytest.approx(1.0 - PER_ESCALATION, abs=0.05)
    assert stats["governor/escalations_per_100_ticks"] == pytest.approx(100 / 30)
    assert stats["governor/plan_tick_fraction"] > 0
    # lifeforce: the escalation tick paid per_escalation on top of a plain tick
    assert trace["spent"][0] == pytest.approx(trace["spent"][-1] + PER_ESCALATION, abs=1e-4)
    # what the live organism's summary reports: every stretch since the link was made, popped or not
    run(world, reflex, bank, 5)
    lifetime = link.lifetime_metrics()
    later = reflex.pop_stats()["cortex/escalations"]
    assert lifetime["cortex/escalations"] == stats["cortex/escalations"] + later
    assert lifetime["cortex/plans_done"] >= 1
    link.close()


def test_below_from_stage_the_link_asks_nothing_and_keeps_no_maps() -> None:
    world = keyed_room()
    stage = int(world.config.stage)
    link = CortexLink(CortexConfig(backend="engine", vision_gate="closed", from_stage=stage + 1))
    reflex, bank = governed(link)
    trace = run(world, reflex, bank, 30)
    assert reflex.pop_stats()["cortex/escalations"] == 0 and not any(trace["following"])
    assert not door_open(world) and link.seen is None  # the link never synced to this world
    link.close()
    link = CortexLink(CortexConfig(backend="engine", vision_gate="closed", from_stage=stage))
    reflex, bank = governed(link)
    run(keyed_room(), reflex, bank, 30)
    assert reflex.pop_stats()["cortex/escalations"] == 1  # at its stage the same room escalates
    link.close()


def test_a_low_battery_is_charged_at_a_seen_charger_before_the_door() -> None:
    """On an empty battery every step costs exhaustion_cost: the plan goes to the charger in sight first."""
    world = hand_made_world(["#########", "#.@.c...#", "#.##....#", "####D####", "#.fff...#", "#########"])
    world.has_key[0, 0] = True
    world.battery[0, 0] = 0.1
    world.refresh()
    link = CortexLink(CortexConfig(backend="engine"))
    reflex, bank = governed(link)
    trace = run(world, reflex, bank, 10)
    assert trace["action"][1:4] == [A.EAST, A.EAST, A.INTERACT]  # to the charger two cells east, charge
    assert world.battery[0, 0] == pytest.approx(1.0)
    assert reflex.pop_stats()["cortex/plans_done"] == 1 and not door_open(world)
    link.close()


def test_a_closed_gate_does_not_escalate() -> None:
    world = keyed_room()
    link = CortexLink(CortexConfig(backend="engine"))
    reflex, bank = governed(link, help_regions=["food"])  # the heuristic governor never opens math
    trace = run(world, reflex, bank, 30)
    stats = reflex.pop_stats()
    assert reflex.collapse is not None and reflex.collapse.active.any()  # the math region did collapse
    assert stats["cortex/escalations"] == 0 and stats["governor/gate_open_fraction"] == 0
    assert set(trace["action"]) == {A.STAY} and not door_open(world)
    assert max(trace["spent"]) < PER_ESCALATION


def test_the_http_backend_plans_through_the_real_embedded_server() -> None:
    link = CortexLink(CortexConfig(backend="http", outcome_ticks=20))
    server = link.backend.server  # started by the backend: no base_url given
    assert server is not None and server.process is not None
    try:
        world = keyed_room()
        reflex, bank = governed(link)
        trace = run(world, reflex, bank, 30)
        stats = reflex.pop_stats()
        assert door_open(world) and trace["action"][1:5] == [A.EAST, A.EAST, A.SOUTH, A.INTERACT]
        assert stats["cortex/outcome_planned"] == 1 and stats["cortex/plans_done"] == 1
        assert 0 < stats["cortex/latency_p50_ms"] < 2000
        assert link.backend.counts["planned"] == 1  # counted by the real CortexClient
    finally:
        link.close()
    assert server.process is None  # the embedded server is stopped with the link


def test_an_unreachable_cortex_falls_back_to_the_brain_counted_and_never_hangs(caplog) -> None:
    config = CortexConfig(backend="http", base_url=f"http://127.0.0.1:{free_port()}/v1", timeout_s=0.5,
                          retries=1, backoff_s=0.01, deadline_s=0.5, breaker_failures=4)
    link = CortexLink(config)
    try:
        reflex, bank = governed(link)
        worlds = [keyed_room() for _ in range(3)]
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="organs.link"):
            for world in worlds:  # one escalation each, two attempts: failed, failed (breaker opens), refused
                trace = run(world, reflex, bank, 12)
                assert set(trace["action"]) == {A.STAY}  # the brain goes on
        assert time.monotonic() - started < 10 * link.backend.wait_s
        stats = reflex.pop_stats()
    finally:
        link.close()
    assert stats["cortex/escalations"] == 3 and stats["cortex/planned"] == 0
    assert stats["cortex/outcome_failed"] == 2 and stats["cortex/outcome_breaker_open"] == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("\n" not in line for line in lines)  # one line per outcome kind
    assert "failed" in lines[0] and "Connection" in lines[0] and "brain goes on" in lines[0]


def test_plans_and_seen_maps_are_forgotten_when_an_npc_dies() -> None:
    world = keyed_room()
    link = CortexLink(CortexConfig(backend="engine"))
    reflex, bank = governed(link)
    run(world, reflex, bank, 3)
    assert link.plans and link.seen is not None and (link.seen.maps[0, 0] != Tile.UNSEEN).any()
    world.lifeforce[0, 0] = 0.001  # dies at the next tick
    run(world, reflex, bank, 2)
    assert not world.alive[0, 0] and not link.plans
    assert (link.seen.maps[0, 0] == Tile.UNSEEN).all()
    assert reflex.pop_stats()["cortex/plans_done"] == 0  # cut short, neither done nor invalid


def test_a_cortex_that_never_answers_costs_a_bounded_wait_then_the_brain_goes_on() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections queue up, nothing ever answers
        port = silent.getsockname()[1]
        config = CortexConfig(backend="http", base_url=f"http://127.0.0.1:{port}/v1", timeout_s=0.3,
                              retries=1, backoff_s=0.01, deadline_s=0.2)
        link = CortexLink(config)
        try:
            reflex, bank = governed(link)
            world = keyed_room()
            started = time.monotonic()
            trace = run(world, reflex, bank, 5)
            waited = time.monotonic() - started
            stats = reflex.pop_stats()
        finally:
            link.close()
    assert 0.3 <= waited < link.backend.wait_s + 1.0  # one attempt's timeout, then stale: no retry past it
    assert stats["cortex/escalations"] == 1 and stats["cortex/outcome_stale"] == 1
    assert set(trace["action"]) == {A.STAY}
