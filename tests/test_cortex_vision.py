"""The cortex planner looks through the vision organ: plans that see beyond the NPC's view, paid in lifeforce.

Real parts: a hand-made GridWorld, the cell bank's waves, the nyx engine, the organ host's state machine
in-process with the shipped vision weights (loaded on first use), the world's renderer.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from nervous.cells import CellBank
from nervous.lifeforce import LifeforceConfig
from nervous.messages import REGIONS, OrganGate, OrganState, Region
from organs.config import CortexConfig
from organs.cortex.tools import FetchKeyThenOpen
from organs.host.config import OrganHostConfig
from organs.host.inproc import InProcessHost
from organs.link import CortexLink
from tests.cortex_fixtures import hand_made_world
from world import GridWorld
from world.tiles import A, Tile

#: A corridor: the door three cells east of the NPC (in its view), a key six cells west (beyond its view
#: radius of 3, inside the vision organ's 15x15 window).
CORRIDOR = [
    "#################",
    "#.....k.....@..D#",
    "#################",
]
KEY, DOOR = (6, 1), (15, 1)
PER_ORGAN_CALL = 0.05
MATH = REGIONS.index(Region.MATH)


def escalate_and_follow(link: CortexLink, world: GridWorld, ticks: int) -> list[float]:
    """Escalate NPC 0's math region once, then follow whatever plan came back; lifeforce spent per tick."""
    bank = CellBank()
    spent = []
    for tick in range(ticks):
        views = world.views.reshape(-1, world.V, world.V)
        waves = bank.step(views, world.proprio.reshape(1, -1), world.ticks)
        if tick == 0:
            requests = np.zeros((1, 1, len(REGIONS)), dtype=bool)
            requests[0, 0, MATH] = True
            confidence = np.full((1, 1, len(REGIONS)), 0.9, dtype=np.float32)
            escalated = link.escalate(world, requests, np.full((1, 1), 5), confidence, waves)
            assert escalated[0, 0]
        actions, _ = link.follow(world, np.full((1, 1), A.STAY))
        before = float(world.lifeforce[0, 0])
        world.step(actions)
        spent.append(before - float(world.lifeforce[0, 0]))
    return spent


def door_open(world: GridWorld) -> bool:
    x, y = DOOR
    return int(world.tiles[0, y + world.r, x + world.r]) == Tile.EMPTY


def corridor_link(gate: str) -> CortexLink:
    return CortexLink(CortexConfig(backend="engine", vision_gate=gate),
                      lifeforce=LifeforceConfig(per_organ_call=PER_ORGAN_CALL))


def test_the_key_only_vision_sees_makes_the_plan_and_the_look_costs_per_organ_call() -> None:
    runs = {}
    for gate in ("closed", "open"):
        world = hand_made_world(CORRIDOR)
        link = corridor_link(gate)
        try:
            spent = escalate_and_follow(link, world, 40)
            plan_calls = [follower.call for follower, _ in link.plans.values()]
            stats = link.pop_stats()
            runs[gate] = (world, spent, stats, link.organ_states())
        finally:
            link.close()
        assert stats["cortex/planned"] == 1, stats
        assert not plan_calls  # the plan ended within the 40 ticks
    closed_world, closed_spent, closed_stats, closed_organs = runs["closed"]
    open_world, open_spent, open_stats, open_organs = runs["open"]
    # without vision the NPC knows no key: it never opens the door
    assert not closed_world.has_key[0, 0] and not door_open(closed_world)
    assert closed_stats["cortex/vision_calls"] == 0 and closed_organs == {}
    # with vision the plan fetches the key it never saw, walks back and opens the door
    assert door_open(open_world) and open_world.ep_opened[0, 0] == 1
    assert open_stats["cortex/vision_calls"] == 1 and open_stats["cortex/plans_done"] == 1
    assert open_stats["cortex/vision_cells"] >= 1  # the key's cell at least, learnt only from the organ
    assert open_organs == {"vision": "READY"}  # loaded on first use, kept warm
    # the look cost exactly per_organ_call, paid at the next step, on the NPC that asked
    assert open_spent[0] - closed_spent[0] == pytest.approx(PER_ORGAN_CALL, abs=1e-5)


def test_the_plan_names_the_key_vision_saw() -> None:
    world = hand_made_world(CORRIDOR)
    link = corridor_link("open")
    try:
        escalate_and_follow(link, world, 1)
        (follower, _), = link.plans.values()
        assert link.seen is not None and int(link.seen.maps[0, 0, KEY[1], KEY[0]]) == Tile.KEY
    finally:
        link.close()
    assert follower.call == FetchKeyThenOpen(key_x=KEY[0], key_y=KEY[1], door_x=DOOR[0], door_y=DOOR[1])


class SlowSeam:
    """The in-process organ host behind a seam that takes ``delay_s`` longer per call: a busy organ host."""

    def __init__(self, host: InProcessHost, delay_s: float) -> None:
        self.host, self.delay_s = host, delay_s
        self.caller_charges = host.caller_charges

    def call(self, organ: str, verb: str, request: object) -> object:
        time.sleep(self.delay_s)
        return self.host.call(organ, verb, request)

    def __getattr__(self, name: str) -> object:
        return getattr(self.host, name)


def test_a_non_blocking_link_looks_in_its_worker_and_the_plan_still_names_the_key_vision_saw() -> None:
    """The live link's tick only cuts the window; the organ's call (here 0.5 s slow, plus its first load)
    runs in the link's worker, and its detections reach both the situation and the NPC's seen map."""
    world = hand_made_world(CORRIDOR)
    link = CortexLink(CortexConfig(backend="engine", vision_gate="open"),
                      lifeforce=LifeforceConfig(per_organ_call=PER_ORGAN_CALL), blocking=False)
    assert isinstance(link.organs, InProcessHost)
    link.organs = SlowSeam(link.organs, 0.5)  # type: ignore[assignment]
    bank = CellBank()
    try:
        views = world.views.reshape(-1, world.V, world.V)
        waves = bank.step(views, world.proprio.reshape(1, -1), world.ticks)
        requests = np.zeros((1, 1, len(REGIONS)), dtype=bool)
        requests[0, 0, MATH] = True
        confidence = np.full((1, 1, len(REGIONS)), 0.9, dtype=np.float32)
        started = time.monotonic()
        assert link.escalate(world, requests, np.full((1, 1), 5), confidence, waves)[0, 0]
        took = time.monotonic() - started
        for _ in range(500):  # STAY while the answer is on its way
            actions, following = link.follow(world, np.full((1, 1), A.STAY))
            if following.any():
                break
            world.step(np.full((1, 1), A.STAY))
            time.sleep(0.02)
        (follower, _), = link.plans.values()
        stats = link.pop_stats()
    finally:
        link.close()
    assert took < 0.4, f"the tick waited {took:.2f} s for the look"
    assert follower.call == FetchKeyThenOpen(key_x=KEY[0], key_y=KEY[1], door_x=DOOR[0], door_y=DOOR[1])
    assert link.seen is not None and int(link.seen.maps[0, 0, KEY[1], KEY[0]]) == Tile.KEY
    assert stats["cortex/vision_calls"] == 1 and stats["cortex/vision_refused"] == 0


def test_a_governed_gate_makes_no_organ_call_until_an_organ_gate_opens_it() -> None:
    host = InProcessHost(OrganHostConfig(organs=["vision"], loader="inproc", gate="governed",
                                         lifeforce=LifeforceConfig(per_organ_call=PER_ORGAN_CALL)))
    link = CortexLink(CortexConfig(backend="engine", vision_gate="governed"), organs=host)
    try:
        world = hand_made_world(CORRIDOR)
        spent = escalate_and_follow(link, world, 1)
        stats = link.pop_stats()
        assert stats["cortex/vision_calls"] == 0 and stats["cortex/vision_refused"] == 0  # not even asked
        assert host.pop_events() == [] and host.pop_charges() == []  # never loaded, nothing charged
        assert spent[0] < PER_ORGAN_CALL and not isinstance(
            next(iter(link.plans.values()))[0].call, FetchKeyThenOpen)

        link.organ_gate(OrganGate(npc=0, organ="vision", open=True))
        world = hand_made_world(CORRIDOR)
        spent = escalate_and_follow(link, world, 1)
        assert link.pop_stats()["cortex/vision_calls"] == 1
        states = [e.state for e in host.pop_events()]
        assert states == [OrganState.LOADING, OrganState.READY, OrganState.PROCESSING, OrganState.READY]
        (charge,) = host.pop_charges()
        assert charge.npc == 0 and charge.cost == pytest.approx(PER_ORGAN_CALL)
        assert spent[0] >= PER_ORGAN_CALL
    finally:
        link.close()
    assert host.state("vision") == OrganState.UNLOADED  # closing the link unloads its organs


def test_an_idle_organ_unloads_after_its_time_on_the_hosts_clock() -> None:
    now = [0.0]
    host = InProcessHost(OrganHostConfig(organs=["vision"], loader="inproc", unload_after_s=30.0),
                         clock=lambda: now[0])
    link = CortexLink(CortexConfig(backend="engine", vision_gate="open"), organs=host)
    try:
        world = hand_made_world(CORRIDOR)
        escalate_and_follow(link, world, 2)
        assert link.organ_states() == {"vision": "READY"}
        now[0] = 29.0
        escalate_and_follow(link, hand_made_world(CORRIDOR), 1)  # a new world: the link syncs and reaps
        assert link.organ_states() == {"vision": "READY"}  # used again at 29 s: warm
        now[0] = 29.0 + 30.0
        link.follow(world, np.full((1, 1), A.STAY))  # the next world tick reaps
        assert link.organ_states() == {"vision": "UNLOADED"}
    finally:
        link.close()


def test_corrupt_vision_weights_are_counted_logged_once_and_the_planner_goes_on(tmp_path, caplog) -> None:
    corrupt = tmp_path / "vision.pt"
    corrupt.write_bytes(b"not a weight file")
    link = CortexLink(CortexConfig(backend="engine", vision_gate="open", vision_weights=str(corrupt)))
    try:
        with caplog.at_level(logging.WARNING, logger="organs.link"):
            for _ in range(2):
                escalate_and_follow(link, hand_made_world(CORRIDOR), 1)
        stats = link.pop_stats()
    finally:
        link.close()
    assert stats["cortex/vision_refused"] == 2 and stats["cortex/vision_calls"] == 0
    assert stats["cortex/planned"] == 2  # the escalations went on with what the NPC saw itself
    lines = [r.getMessage() for r in caplog.records if r.name == "organs.link"]
    assert len(lines) == 1 and str(corrupt) in lines[0] and "\n" not in lines[0]


def test_a_bad_vision_gate_or_a_missing_weight_file_is_one_line_naming_the_field(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"^cortex.vision_gate='maybe': must be one of closed, open, gov"):
        CortexConfig(vision_gate="maybe")
    missing = str(tmp_path / "nowhere.pt")
    with pytest.raises(ValueError, match=r"^cortex.vision_weights='.*nowhere.pt': no such file$"):
        CortexConfig(backend="engine", vision_gate="open", vision_weights=missing)


def test_training_and_eval_wire_the_runs_organ_cost_into_the_links_organ_host() -> None:
    from governor.config import GovernorConfig
    from nervous.config import NervousConfig
    from train.nervous_link import build_nervous, close_nervous

    nervous = NervousConfig(lifeforce=LifeforceConfig(per_organ_call=0.3))
    _, reflex = build_nervous(nervous, GovernorConfig(kind="heuristic"),
                              CortexConfig(backend="engine", vision_gate="open"))
    try:
        organs = reflex.escalator.organs  # type: ignore[union-attr]
        assert organs is not None and organs.host.config.lifeforce.per_organ_call == 0.3
        assert organs.host.config.loader == "inproc" and organs.gate_open(5, "vision")
    finally:
        close_nervous(reflex)
    _, reflex = build_nervous(nervous, GovernorConfig(kind="heuristic"),
                              CortexConfig(backend="engine", vision_gate="closed"))
    assert reflex.escalator.organs is None  # type: ignore[union-attr]  # closed: no organ host at all
    close_nervous(reflex)
    _, reflex = build_nervous(nervous, GovernorConfig(kind="heuristic"), CortexConfig(backend="engine"))
    try:  # the default, governed: an organ host that serves no NPC until the governor opens its gate
        organs = reflex.escalator.organs  # type: ignore[union-attr]
        assert organs is not None and not organs.gate_open(5, "vision")
        assert organs.states() == {"vision": "UNLOADED"}  # nothing loaded before the first look
    finally:
        close_nervous(reflex)
    _, reflex = build_nervous(nervous, GovernorConfig(kind="heuristic"), CortexConfig())
    assert reflex.escalator is None  # type: ignore[union-attr]  # backend none: no link, no organ host
    close_nervous(reflex)


def test_the_live_organism_serves_vision_when_the_cortex_looks_and_its_link_looks_over_the_bus() -> None:
    from agents.organism import OrganismConfig
    from organs.host.client import BusOrgans
    from organs.link import make_link
    from train.modes import live_organs

    closed = CortexConfig(backend="engine", vision_gate="closed")
    assert live_organs(closed, OrganismConfig()).organs == []  # closed: no host
    # governed (the default) with no governor process (governor=fixed): nothing opens a gate, no host
    assert live_organs(CortexConfig(backend="engine"), OrganismConfig()).organs == []
    heuristic = OrganismConfig(governor="heuristic")
    governed_default = live_organs(CortexConfig(backend="engine"), heuristic)
    assert governed_default.organs == ["vision"] and governed_default.organ_gate == "governed"
    assert live_organs(CortexConfig(backend="none", vision_gate="open"), OrganismConfig()).organs == []
    seeing = live_organs(CortexConfig(backend="engine", vision_gate="open"), OrganismConfig())
    assert seeing.organs == ["vision"] and seeing.organ_gate == "open"
    governed = live_organs(CortexConfig(backend="engine", vision_gate="governed"),
                           OrganismConfig(organs=["vision"], governor="heuristic"))
    assert governed.organs == ["vision"] and governed.organ_gate == "governed"  # not served twice
    link = make_link(CortexConfig(backend="engine", vision_gate="governed", vision_deadline_s=0.5), live=True)
    assert link is not None
    try:
        organs = link.organs
        assert isinstance(organs, BusOrgans) and organs.deadline_s == 0.5
        assert not organs.gate_open(0, "vision")  # governed: closed until the governor opens it
        assert organs.caller_charges is False  # the host's OrganCharge pays, applied by the world server
    finally:
        link.close()
    with pytest.raises(ValueError, match="runtime.organism.organ_gate='shut': must be open or governed"):
        OrganismConfig(organ_gate="shut")
    with pytest.raises(ValueError, match="cortex.vision_deadline_s=0: must be > 0"):
        CortexConfig(vision_deadline_s=0)


async def test_a_link_made_inside_a_running_event_loop_looks_and_closes() -> None:
    """The in-process host's private loop runs in a helper thread where the caller's thread runs a loop."""
    link = corridor_link("open")
    try:
        world = hand_made_world(CORRIDOR)
        escalate_and_follow(link, world, 1)  # this thread runs the test's event loop
        assert link.pop_stats()["cortex/vision_calls"] == 1
        assert link.organ_states() == {"vision": "READY"}
    finally:
        link.close()
    assert link.organs is not None and link.organs.states() == {"vision": "UNLOADED"}
