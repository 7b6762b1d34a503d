"""The organ host's lifecycle on an injected clock, with the real vision organ loaded in-process.

Load on first request, keep warm, unload after idle, one load for concurrent requests, the slot
policies (evict the idle organ; wait for one to unload), load failures naming the file, gates and
lifeforce charges. Idle time runs on the fake clock; nothing here sleeps to let time pass.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from nervous.lifeforce import LifeforceConfig
from nervous.messages import OrganCharge, OrganEvent, OrganState, VisionReply, VisionRequest
from organs.host.config import OrganHostConfig
from organs.host.lifecycle import OrganError, OrganHost
from organs.host.registry import organ_specs
from organs.vision import SHIPPED_WEIGHTS
from organs.vision.frames import label_grid, render, window_labels, window_pixels
from world.core import GridWorld
from world.stages import stage_config

U, L, R, P = OrganState.UNLOADED, OrganState.LOADING, OrganState.READY, OrganState.PROCESSING


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def window() -> tuple[bytes, np.ndarray]:
    """One rendered window around an NPC (pixels) and its true tile codes."""
    frame = GridWorld(stage_config(4), seed=7).frame(0)
    x, y = int(frame["npc_x"][0]), int(frame["npc_y"][0])
    return window_pixels(render(frame, "night"), x, y).tobytes(), window_labels(label_grid(frame), x, y)


def host_of(events: list[OrganEvent], clock: Clock, **config: object) -> OrganHost:
    settings: dict[str, object] = {"organs": ["vision", "vision2:vision"], "loader": "inproc",
                                   "unload_after_s": 10.0, **config}
    return OrganHost(OrganHostConfig(**settings), clock=clock, on_event=events.append)  # type: ignore[arg-type]


def ask(pixels: bytes, npc: int = 0, deadline_s: float = 10.0) -> VisionRequest:
    return VisionRequest(npc=npc, tick=3, deadline_s=deadline_s, pixels=pixels)


def states(events: list[OrganEvent], organ: str = "vision") -> list[OrganState]:
    return [e.state for e in events if e.organ == organ]


async def test_loads_on_first_request_keeps_warm_and_unloads_after_idle(window) -> None:
    pixels, truth = window
    events: list[OrganEvent] = []
    clock = Clock()
    host = host_of(events, clock)
    assert host.organs["vision"].state == U and events == []
    reply = await host.call("vision", "detect", ask(pixels))
    assert isinstance(reply, VisionReply) and reply.npc == 0 and reply.tick == 3
    codes = np.frombuffer(reply.codes, dtype=np.uint8).reshape(15, 15)
    assert (codes == truth).mean() >= 0.99  # the real organ answered
    assert states(events) == [L, R, P, R]
    assert events[0].reason == "request of npc 0" and events[1].reason.startswith("loaded in")

    clock.t += 9.0  # within unload_after_s: kept warm
    await host.reap()
    await host.call("vision", "detect", ask(pixels))
    assert states(events) == [L, R, P, R, P, R] and host.organs["vision"].loads == 1

    clock.t += 9.9
    await host.reap()
    assert host.organs["vision"].state == R
    clock.t += 0.2  # 10.1 s idle
    await host.reap()
    assert host.organs["vision"].state == U and events[-1].reason == "idle 10.1 s"
    assert host.organs["vision"].loaded is None

    await host.call("vision", "detect", ask(pixels))  # loaded again on the next request
    assert host.organs["vision"].loads == 2 and states(events)[-4:] == [L, R, P, R]
    assert states(events, "vision2") == []  # the other organ was never asked for
    await host.close()
    assert events[-1].state == U and events[-1].reason == "host stopping"


async def test_concurrent_requests_during_a_load_share_it(window) -> None:
    events: list[OrganEvent] = []
    host = host_of(events, Clock())
    replies = await asyncio.gather(*(host.call("vision", "detect", ask(window[0], npc=i)) for i in range(4)))
    assert [r.npc for r in replies] == [0, 1, 2, 3]
    assert states(events).count(L) == 1 and host.organs["vision"].loads == 1
    await host.close()


async def test_evict_policy_unloads_the_least_recently_used_idle_organ(window) -> None:
    events: list[OrganEvent] = []
    clock = Clock()
    host = host_of(events, clock, organs=["vision", "vision2:vision", "vision3:vision"], slots=2,
                   when_full="evict")
    await host.call("vision", "detect", ask(window[0]))
    clock.t += 1
    await host.call("vision2", "detect", ask(window[0]))
    clock.t += 1
    await host.call("vision", "detect", ask(window[0]))  # vision is now the more recently used
    events.clear()
    clock.t += 1
    await host.call("vision3", "detect", ask(window[0]))
    assert [(e.organ, e.state, e.reason) for e in events[:2]] == [
        ("vision2", U, "evicted for vision3"), ("vision3", L, "request of npc 0")]
    assert host.organs["vision"].state == R and host.organs["vision3"].state == R
    assert host.organs["vision2"].state == U
    await host.close()


async def test_wait_policy_waits_for_an_idle_unload_bounded_by_the_deadline(window) -> None:
    events: list[OrganEvent] = []
    clock = Clock()
    host = host_of(events, clock, slots=1, when_full="wait")
    await host.call("vision", "detect", ask(window[0]))
    with pytest.raises(OrganError, match=r"no free slot for vision2 within the request's 0.2 s: 1 slot\(s\) "
                                         r"held by vision \(when_full=wait\)") as err:
        await host.call("vision2", "detect", ask(window[0], deadline_s=0.2))
    assert err.value.field == "deadline_s"
    assert host.organs["vision"].state == R and states(events, "vision2") == []

    waiting = asyncio.create_task(host.call("vision2", "detect", ask(window[0], npc=9, deadline_s=20)))
    await asyncio.sleep(0.2)
    assert not waiting.done() and states(events, "vision2") == []  # still waiting: nothing evicted
    clock.t += 10.0
    await host.reap()  # vision unloads after its idle time, and the waiting request takes the slot
    reply = await asyncio.wait_for(waiting, 20)
    assert reply.npc == 9
    assert host.organs["vision"].state == U and host.organs["vision2"].state == R
    order = [(e.organ, e.state) for e in events if e.state in (U, L)]
    assert order[-2:] == [("vision", U), ("vision2", L)]
    await host.close()


async def test_a_load_failure_is_an_error_naming_the_file_and_the_next_request_retries(
        window, tmp_path: Path) -> None:
    corrupt = tmp_path / "vision-corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a weight file")
    events: list[OrganEvent] = []
    host = host_of(events, Clock(), organs=["vision"], weights={"vision": str(corrupt)})
    for _ in range(2):
        with pytest.raises(OrganError, match=f"vision: vision weights {corrupt}: not a readable weight file"):
            await asyncio.wait_for(host.call("vision", "detect", ask(window[0])), 30)
    assert states(events) == [L, U, L, U]
    assert events[1].reason.startswith("load failed: vision: vision weights")
    assert host.organs["vision"].loaded is None and host.charged == {}
    missing = tmp_path / "missing.pt"
    host = host_of(events, Clock(), organs=["vision"], weights={"vision": str(missing)})
    with pytest.raises(OrganError, match=f"{missing}: no such file"):
        await host.call("vision", "detect", ask(window[0]))


async def test_gates_decide_who_is_served_and_served_calls_cost_lifeforce(window) -> None:
    charges: list[OrganCharge] = []
    config = OrganHostConfig(organs=["vision"], loader="inproc", gate="governed",
                             lifeforce=LifeforceConfig(per_organ_call=0.004))
    host = OrganHost(config, on_charge=charges.append)
    with pytest.raises(OrganError, match="the vision gate of npc 3 is closed") as err:
        await host.call("vision", "detect", ask(window[0], npc=3))
    assert err.value.field == "npc" and host.organs["vision"].state == U  # nothing loaded for it
    host.set_gate(3, "vision", True)
    reply = await host.call("vision", "detect", ask(window[0], npc=3))
    reply = await host.call("vision", "detect", ask(window[0], npc=3))
    assert reply.cost == 0.004 and host.charged[3] == pytest.approx(0.008)
    assert charges == [OrganCharge(npc=3, organ="vision", verb="detect", cost=0.004, tick=3)] * 2
    with pytest.raises(OrganError, match="npc 4 is closed"):
        await host.call("vision", "detect", ask(window[0], npc=4))
    host.set_gate(3, "vision", False)
    with pytest.raises(OrganError, match="npc 3 is closed"):
        await host.call("vision", "detect", ask(window[0], npc=3))
    assert len(charges) == 2  # refused calls cost nothing

    open_host = OrganHost(OrganHostConfig(organs=["vision"], loader="inproc"))  # open until closed
    assert open_host.gate_open(11, "vision")
    open_host.set_gate(11, "vision", False)
    assert not open_host.gate_open(11, "vision") and open_host.gate_open(12, "vision")
    await host.close()


async def test_requests_the_host_cannot_serve_name_the_field(window) -> None:
    host = host_of([], Clock())
    with pytest.raises(OrganError, match="organ 'speech' is not served here") as err:
        host.request_type("speech", "hear")
    assert err.value.field == "organ"
    with pytest.raises(OrganError, match="organ vision has no verb 'see'") as err:
        host.request_type("vision", "see")
    assert err.value.field == "verb"
    wrong_scale = VisionRequest(npc=0, side=3, cell_px=4, pixels=bytes(12 * 12 * 3))
    with pytest.raises(OrganError, match="cell_px=4: the vision organ reads windows of 8 px cells") as err:
        await host.call("vision", "detect", wrong_scale)
    assert err.value.field == "cell_px" and host.organs["vision"].state == U


@pytest.mark.parametrize("config, message", [
    (dict(organs=["vision:sight"]), "unknown organ kind 'sight'"),
    (dict(organs=["host:vision"]), "'host' is reserved"),
    (dict(organs=["vision", "vision"]), "'vision' is named twice"),
    (dict(organs=["vi.sion"]), "subject organ 'vi.sion'"),
    (dict(weights={"speech": "x.pt"}), "organs.weights: 'speech' is not one of the organs served"),
])
def test_bad_organ_lists_are_one_line_errors(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        organ_specs(OrganHostConfig(**config))


@pytest.mark.parametrize("field, value", [("slots", 0), ("when_full", "drop"), ("gate", "shut"),
                                          ("unload_after_s", 0), ("loader", "gpu"), ("organs", [])])
def test_bad_host_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"organs.{field}="):
        OrganHostConfig(**{field: value})  # type: ignore[arg-type]


def test_the_shipped_weights_are_the_default() -> None:
    assert organ_specs(OrganHostConfig())["vision"].weights == str(SHIPPED_WEIGHTS)
