"""Live planner vision: in the live organism the world server's escalations look through the supervised
organ host over the bus, and the NPC is charged for each look once, by the host's charge.

Real parts: an embedded nats-server, the organism's supervisor, a real NPC process, the organ host as its
own supervised process with the shipped vision weights in its worker, the world server with the cortex
link (nyx engine) looking through ``BusOrgans`` as the cortex identity.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from agents.organism import Organism
from agents.supervisor import State
from governor.config import GovernorConfig
from nervous import subjects
from nervous.bus import Bus
from nervous.cells import CellBank
from nervous.cells.base import CellConfig
from nervous.lifeforce import LifeforceConfig
from nervous.messages import Command, OrganGate, Region, VisionReply, VisionRequest
from organs.config import CortexConfig
from organs.cortex.tools import FetchKeyThenOpen
from organs.link import CortexLink
from organs.vision.frames import render, window_pixels
from tests.cortex_fixtures import hand_made_world
from tests.live import organism_config, until
from tests.test_cortex_vision import CORRIDOR, DOOR, KEY, door_open

pytestmark = pytest.mark.slow
PER_ORGAN_CALL = 0.2



async def warm_vision(org: Organism) -> Bus:
    """Load the organ host's vision organ (its first load takes seconds) with one look at npc 0, asked as
    the cortex identity would; that identity's bus."""
    assert org.world is not None
    cortex = await org.connect_as("cortex")
    frame = org.world.world.frame(0)
    x, y = int(frame["npc_x"][0]), int(frame["npc_y"][0])
    pixels = window_pixels(render(frame), x, y).tobytes()
    warm = VisionRequest(npc=0, deadline_s=60, pixels=pixels)
    await cortex.request(subjects.organ("vision", "detect"), warm, VisionReply, timeout=60)
    return cortex


async def test_a_live_escalation_plans_with_a_key_only_the_bus_vision_organ_saw_and_pays_once(
        tmp_path: Path) -> None:
    config = organism_config(tmp_path, 1)
    config.organs = ["vision"]
    # a door in view with no key known asks the cortex (nervous.cells.key: key_wanted); the look may take
    # a while on a loaded machine, so its deadline is generous here (the default is 0.25 s)
    link = CortexLink(CortexConfig(backend="engine", vision_gate="open", vision_deadline_s=5.0), live=True)
    life = LifeforceConfig(per_tick=0.0, per_brain_call=0.0, per_escalation=0.0,
                           per_organ_call=PER_ORGAN_CALL)
    try:
        async with Organism(config, lifeforce=life, escalator=link) as org:
            sup, server = org.supervisor, org.world
            assert sup is not None and server is not None
            host = sup.children["organ-host"]
            running = asyncio.create_task(org.run(0))
            try:
                up = lambda: host.heard_since_start and host.state == State.RUNNING  # noqa: E731
                await until(up, 60, "the organ host up")
                await warm_vision(org)
                await until(lambda: server.organ_charges["applied"] == 1, 10, "the warm-up's charge")
                # the math gate opens, as a governor's command would open it
                supervisor = await org.connect_as("supervisor")
                await supervisor.publish(subjects.npc_command(0),
                                         Command(npc=0, tick=0, tick_rate=20, gates={Region.MATH: True}))
                await until(lambda: server.gates[0].any(), 10, "the math gate open")
                # the corridor: the door in view, the key six cells west, beyond the NPC's view
                server.world = hand_made_world(CORRIDOR)
                server.cells = CellBank(CellConfig(key_wanted=0.5))
                server.collapse.reset(1)
                server.held[:] = False
                start = float(server.world.lifeforce[0, 0])
                await until(lambda: link.plans, 10, "a plan")
                (follower, _), = link.plans.values()
                await until(lambda: door_open(server.world), 30, "the door opened by the plan")
            finally:
                org.stop.set()
                await asyncio.wait_for(running, 30)
            world = server.world
    finally:
        link.close()
    # the plan fetches the key only the vision organ saw, and the NPC opened the door with it
    assert follower.call == FetchKeyThenOpen(key_x=KEY[0], key_y=KEY[1], door_x=DOOR[0], door_y=DOOR[1])
    assert world.ep_opened[0, 0] == 1 and int(server.escalations[0]) >= 1
    looks = link.stats.vision_calls + link.totals.vision_calls
    assert looks >= 1 and link.stats.vision_cells >= 1
    # each look charged once: by the host's OrganCharge, applied by the world server (not by the link too)
    assert server.organ_charges["applied"] == 1 + looks
    spent = start - float(world.lifeforce[0, 0])
    decay = world.config.lifeforce_decay * int(world.t[0])
    assert spent == pytest.approx(decay + PER_ORGAN_CALL * looks, abs=0.02), (spent, decay, looks)
    assert np.isfinite(spent)


async def test_live_governed_vision_the_governor_process_opens_the_gate_the_host_and_the_link_follow(
        tmp_path: Path) -> None:
    config = organism_config(tmp_path, 1)
    config.organs, config.organ_gate = ["vision"], "governed"
    config.governor = GovernorConfig(kind="heuristic", governor_hz=10.0)  # decides every 2 world ticks
    cortex_config = CortexConfig(backend="engine", vision_gate="governed", vision_deadline_s=5.0)
    link = CortexLink(cortex_config, live=True)
    gates: list[OrganGate] = []
    try:
        async with Organism(config, escalator=link) as org:
            sup, server = org.supervisor, org.world
            assert sup is not None and server is not None
            host = sup.children["organ-host"]
            running = asyncio.create_task(org.run(0))
            try:
                parts = [sup.children[name] for name in ("organ-host", "governor")]
                up = lambda: all(p.heard_since_start and p.state == State.RUNNING for p in parts)  # noqa: E731
                await until(up, 60, "the organ host and the governor up")
                # warm the organ through a gate the test opens and shuts again (as the governor would)
                governor = await org.connect_as("governor")
                subject = subjects.organ_gate("vision")
                await governor.publish(subject, OrganGate(npc=0, organ="vision", open=True))
                await until(lambda: link.organs.gate_open(0, "vision"), 10, "the warm-up gate")  # type: ignore[union-attr]
                cortex = await warm_vision(org)
                await cortex.subscribe(subject, OrganGate, lambda msg, raw: gates.append(msg))
                await cortex.flush()
                # the corridor: only the governor process opens npc 0's math and vision gates now; the
                # collapse waits 2 s for them (the governor's round trip through the supervisor under
                # load), and no nerve walks the NPC away from the door meanwhile
                server.config.collapse_hold_ticks = 40
                server.nerves = None
                server.world = hand_made_world(CORRIDOR)
                server.cells = CellBank(CellConfig(key_wanted=0.5))
                server.collapse.reset(1)
                server.held[:] = False
                await governor.publish(subject, OrganGate(npc=0, organ="vision", open=False, tick=7))
                looks = link.stats.vision_calls + link.totals.vision_calls
                keyed = lambda: any(isinstance(f.call, FetchKeyThenOpen) for f, _ in link.plans.values())  # noqa: E731
                await until(keyed, 20, lambda: f"a key plan (gates heard: {gates}, plans: {link.plans})")
                (follower, _), = link.plans.values()
            finally:
                org.stop.set()
                await asyncio.wait_for(running, 30)
    finally:
        link.close()
    shut = next(i for i, g in enumerate(gates) if g.tick == 7 and not g.open)  # the test's own
    assert any(g.npc == 0 and g.open for g in gates[shut + 1:]), gates  # the governor process reopened it
    assert follower.call == FetchKeyThenOpen(key_x=KEY[0], key_y=KEY[1], door_x=DOOR[0], door_y=DOOR[1])
    assert link.stats.vision_calls + link.totals.vision_calls > looks
    assert host.restarts == 0
