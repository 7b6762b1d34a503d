"""The governor sets organ gates (``governor.organ_gates``): the rule on hand-made inputs, the governor
service's ``OrganGate`` messages (and, over a real nats-server, the organ host and the live link
following them), and in-process ``cortex.vision_gate=governed`` looking only when the heuristic
governor's rule opens the gate."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from governor.baselines import make_governor
from governor.config import GovernorConfig
from governor.inputs import ALIVE, BATTERY, COLLAPSE, LIFEFORCE, NUM_FEATURES, GlobalContext, region_column
from governor.organ_gates import VISION
from governor.runtime import GovernedReflex
from nervous.bus import Bus, BusConfig
from nervous.cells import CellBank
from nervous.cells.base import CellConfig
from nervous.lifeforce import LifeforceConfig
from nervous.messages import REGIONS, OrganGate, Region
from nervous.server import EmbeddedServer
from organs.config import CortexConfig
from organs.cortex.tools import FetchKeyThenOpen
from organs.host.client import BusOrgans
from organs.host.lifecycle import OrganError
from organs.link import CortexLink
from tests.cortex_fixtures import hand_made_world
from tests.live import until
from tests.test_cortex_vision import CORRIDOR, DOOR, KEY
from tests.test_governor_service import math_waves, service, state, step
from world.tiles import A


def rows(*npcs: dict[str, float]) -> np.ndarray:
    """Inputs [N, F] of living NPCs: lifeforce, battery and held collapses by region name."""
    features = np.zeros((len(npcs), NUM_FEATURES), dtype=np.float32)
    for i, npc in enumerate(npcs):
        features[i, ALIVE] = npc.get("alive", 1.0)
        features[i, LIFEFORCE] = npc.get("lifeforce", 0.8)
        features[i, BATTERY] = npc.get("battery", 1.0)
        for region in Region:
            features[i, region_column(COLLAPSE, region)] = npc.get(region.value, 0.0)
    return features


@pytest.mark.parametrize("kind", ["heuristic", "fixed", "budget"])
def test_the_vision_gate_opens_with_the_math_gate_of_an_npc_that_can_afford_a_look(kind: str) -> None:
    governor = make_governor(GovernorConfig(kind=kind, cpu_budget=4.0))
    features = rows(
        {"math": 0.9},                                   # a door or lock to ask about: open
        {},                                              # nothing collapsed: closed
        {"math": 0.5},                                   # below the gate threshold: closed
        {"math": 0.9, "lifeforce": 0.05},                # about to starve: no look
        {"math": 0.9, "battery": 0.05},                  # its battery as low: no look
        {"math": 0.9, "alive": 0.0},                     # dead: closed
    )
    d = governor.decide(features, GlobalContext(tick=0))
    assert d.organ_gates[VISION].tolist() == [True, False, False, False, False, False]
    # the collapse over (used up or expired): the gate closes again
    d = governor.decide(rows({}, {}, {}, {}, {}, {}), GlobalContext(tick=10))
    assert not d.organ_gates[VISION].any()


def test_vision_regions_say_which_gates_open_vision_and_a_bad_one_is_named() -> None:
    food = rows({"food": 0.9, "lifeforce": 0.4})
    math_only = make_governor(GovernorConfig(kind="heuristic", vision_regions=["math"]))
    d = math_only.decide(food, GlobalContext(tick=0))
    assert d.gates[0].any() and not d.organ_gates[VISION][0]  # the food gate opens; vision stays shut
    both = make_governor(GovernorConfig(kind="heuristic"))  # the default: math and food
    assert both.decide(food, GlobalContext(tick=0)).organ_gates[VISION][0]
    never = make_governor(GovernorConfig(kind="heuristic", vision_regions=[]))
    assert not never.decide(rows({"math": 0.9}), GlobalContext(tick=0)).organ_gates[VISION].any()
    with pytest.raises(ValueError, match="vision_regions.*'sight' is no region"):
        GovernorConfig(vision_regions=["sight"])
    with pytest.raises(ValueError, match="vision_min_reserve.*must be in 0..1"):
        GovernorConfig(vision_min_reserve=2.0)


def test_the_governor_service_sends_an_organ_gate_when_it_changes_and_at_a_refresh() -> None:
    gov, clock = service("heuristic", npcs=2, refresh_s=30.0)
    gov.observe_state(state(0, 100))
    gov.observe_state(state(1, 100))
    step(gov)
    assert gov.organ_gates == []  # both closed, as they were: nothing to say
    gov.observe_waves(math_waves(1, 101))  # npc 1's math region collapses
    step(gov)
    assert [(g.npc, g.organ, g.open) for g in gov.organ_gates] == [(1, VISION, True)]
    step(gov)
    assert gov.organ_gates == []  # unchanged: nothing sent
    clock.now += 31.0  # a full refresh: every living NPC's gate again, the collapse long over
    gov.observe_state(state(0, 400))
    gov.observe_state(state(1, 400))
    step(gov)
    assert sorted((g.npc, g.open) for g in gov.organ_gates) == [(0, False), (1, False)]


def corridor_run(min_reserve: float) -> tuple[CortexLink, list[OrganGate], object]:
    """The heuristic governor in-process over the corridor (a door in view, its key beyond the view; the
    key cell wants a key at the door) with ``vision_gate=governed``: the link, the gates it was handed and
    its first plan."""
    world = hand_made_world(CORRIDOR)
    bank = CellBank(CellConfig(key_wanted=0.5))
    link = CortexLink(CortexConfig(backend="engine", vision_gate="governed"),
                      lifeforce=LifeforceConfig(per_organ_call=0.05))
    handed: list[OrganGate] = []
    take = link.organ_gate
    link.organ_gate = lambda gate: (handed.append(gate), take(gate))  # type: ignore[method-assign]
    config = dataclasses.replace(GovernorConfig(kind="heuristic"), vision_min_reserve=min_reserve)
    governed = GovernedReflex(config, LifeforceConfig(), cells=bank, escalator=link)
    first = None
    try:
        for _ in range(12):
            bank.step(world.views.reshape(-1, world.V, world.V), world.proprio.reshape(1, -1), world.ticks)
            final, _ = governed(world, np.full((1, 1), A.STAY))
            if first is None and link.plans:
                first = next(iter(link.plans.values()))[0].call
            world.step(final)
    finally:
        link.close()
    return link, handed, first


def test_in_process_governed_vision_looks_only_when_the_heuristic_rule_opens_the_gate() -> None:
    link, handed, plan = corridor_run(min_reserve=0.1)  # lifeforce 0.8: it can afford a look
    stats = link.totals
    stats.add(link.stats)
    assert [(g.npc, g.open) for g in handed][:1] == [(0, True)]
    assert stats.escalations == 1 and stats.vision_calls == 1 and stats.vision_refused == 0
    assert plan == FetchKeyThenOpen(key_x=KEY[0], key_y=KEY[1], door_x=DOOR[0], door_y=DOOR[1])

    link, handed, plan = corridor_run(min_reserve=0.9)  # the rule keeps it shut: the same escalation, blind
    stats = link.totals
    stats.add(link.stats)
    assert not any(g.open for g in handed)
    assert stats.escalations == 1 and stats.vision_calls == 0 and stats.vision_refused == 0
    assert not isinstance(plan, FetchKeyThenOpen)  # no key known without the look


async def test_the_governors_organ_gate_reaches_the_organ_host_and_the_live_link_over_the_bus(
        nats_server: EmbeddedServer, bus: Bus) -> None:
    from tests.test_organ_client import request, start_host

    stop, host = await start_host(bus, gate="governed")
    organs = BusOrgans([VISION], gate="governed", deadline_s=60.0)
    await asyncio.to_thread(organs.connect, BusConfig(url=nats_server.url, name="cortex"))
    try:
        gov, _ = service("heuristic", npcs=2)
        gov.bus = bus
        gov.observe_state(state(0, 100))
        gov.observe_state(state(1, 100))
        gov.observe_waves(math_waves(1, 101))  # npc 1's math region collapses: its math and vision gates open
        await gov.step()
        assert gov.organ_gates_sent == 1
        await until(lambda: organs.gate_open(1, VISION), 5, "the link hearing npc 1's vision gate")
        reply = await asyncio.to_thread(organs.call, VISION, "detect", request(1))
        assert reply.npc == 1 and reply.cost > 0  # the host heard it too: served
        assert not organs.gate_open(0, VISION)
        with pytest.raises(OrganError, match="gate of npc 0 is closed"):
            await asyncio.to_thread(organs.call, VISION, "detect", request(0))
    finally:
        organs.close()
        stop.set()
        assert await asyncio.wait_for(host, 30) == 0


def test_the_learned_governors_vision_gate_follows_its_own_math_gate_with_no_head_of_its_own() -> None:
    import torch

    from governor.learned import LearnedGovernor

    config = GovernorConfig(kind="learned", cpu_budget=4.0, greedy=True)
    governor = LearnedGovernor(config, seed=5)
    math = REGIONS.index(Region.MATH)
    with torch.no_grad():  # a network that learnt to open the math gate (a fresh one opens none)
        governor.net.gate.bias[math] = 10.0
    features = np.tile(rows({"math": 0.9}, {"math": 0.9, "lifeforce": 0.05}), (32, 1))
    d = governor.decide(features, GlobalContext(tick=0))
    affordable = np.arange(64) % 2 == 0
    assert d.gates[:, math].all()  # the network opened every math gate
    assert (d.organ_gates[VISION] == (d.gates[:, math] & affordable)).all()
    state = governor.state_dict()  # what a checkpoint holds: the network alone, no organ-gate head
    assert not any("organ" in key or "vision" in key for key in state)
